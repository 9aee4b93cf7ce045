// The server's task templates: the list, and one template's page with a
// form of its parameters that submits the task it makes.
import { useEffect, useState } from "preact/hooks";

import { ApiError, Session, call, get, query } from "./api";

interface Parameter {
  name: string;
  type: "string" | "integer" | "number" | "boolean";
  description?: string;
  required: boolean;
  default?: string;
  allowed?: string[];
}

interface Template {
  name: string;
  description: string;
  parameters: Parameter[];
  origin: string;
  file: string;
}

function useTemplates(): [Template[] | null, string] {
  const [templates, setTemplates] = useState<Template[] | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    get<{ templates: Template[] }>("/templates").then(
      (list) => setTemplates(list.templates),
      (e) => setError(e.message),
    );
  }, []);
  return [templates, error];
}

export function TemplatesPage({ name, session }: { name?: string; session: Session }) {
  const [templates, error] = useTemplates();
  if (error) return <p class="error">{error}</p>;
  if (!templates) return <p class="loading">Loading…</p>;
  if (name) {
    const template = templates.find((t) => t.name === name);
    if (!template) return <p class="error">No template {name}.</p>;
    return <TemplatePage template={template} session={session} />;
  }
  return (
    <div>
      <h2>Templates</h2>
      <table data-test="templates">
        <thead>
          <tr>
            <th>name</th>
            <th>description</th>
            <th>parameters</th>
            <th>from</th>
          </tr>
        </thead>
        <tbody>
          {templates.map((t) => (
            <tr data-template={t.name}>
              <td>
                <a href={`#/templates/${encodeURIComponent(t.name)}`}>{t.name}</a>
              </td>
              <td>{t.description}</td>
              <td>{t.parameters.map((p) => (p.required ? `${p.name}*` : p.name)).join(", ")}</td>
              <td>{t.origin}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/// One template: its parameters as a form (people who may submit tasks run
/// it; a refusal marks the parameter it names), and its file.
function TemplatePage({ template, session }: { template: Template; session: Session }) {
  const [values, setValues] = useState<Record<string, string>>({});
  const [tenant, setTenant] = useState(session.tenants[0] === "*" ? "" : session.tenants[0] ?? "");
  const [refusal, setRefusal] = useState<ApiError | null>(null);
  const [running, setRunning] = useState(false);
  const canRun = session.role !== "viewer";
  const set = (name: string, value: string) => setValues({ ...values, [name]: value });
  const run = async (e: Event) => {
    e.preventDefault();
    setRunning(true);
    // Left empty: the template's default (or a refusal naming it, when
    // required).
    const parameters = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== ""));
    try {
      const submitted = await call<{ taskId: string }>(
        "POST",
        `/templates/${encodeURIComponent(template.name)}/tasks${query({ tenant: tenant || undefined })}`,
        JSON.stringify({ parameters }),
      );
      location.hash = `#/tasks/${submitted.taskId}`;
    } catch (err) {
      setRefusal(err instanceof ApiError ? err : new ApiError(0, String(err)));
      setRunning(false);
    }
  };
  const invalid = (name: string) => refusal?.field === `parameters.${name}`;
  return (
    <div>
      <h2>
        <a href="#/templates">Templates</a> / {template.name}
      </h2>
      <p>{template.description}</p>
      <form class="template-form" onSubmit={run} data-test="template-form">
        {template.parameters.map((p) => (
          <label class={invalid(p.name) ? "invalid" : ""} data-parameter={p.name}>
            <span class="parameter-name">
              {p.name}
              {p.required && <span title="required">*</span>}
              <span class="parameter-type">{p.type}</span>
            </span>
            {p.allowed?.length ? (
              <select name={p.name} value={values[p.name] ?? ""} onChange={(e) => set(p.name, (e.target as HTMLSelectElement).value)}>
                <option value="">{p.default !== undefined ? `${p.default} (default)` : "—"}</option>
                {p.allowed.map((a) => (
                  <option value={a}>{a}</option>
                ))}
              </select>
            ) : p.type === "boolean" ? (
              <select name={p.name} value={values[p.name] ?? ""} onChange={(e) => set(p.name, (e.target as HTMLSelectElement).value)}>
                <option value="">{p.default !== undefined ? `${p.default} (default)` : "—"}</option>
                <option value="true">true</option>
                <option value="false">false</option>
              </select>
            ) : (
              <input
                name={p.name}
                value={values[p.name] ?? ""}
                placeholder={p.default ?? ""}
                inputMode={p.type === "string" ? undefined : "decimal"}
                onInput={(e) => set(p.name, (e.target as HTMLInputElement).value)}
              />
            )}
            {p.description && <span class="parameter-description">{p.description}</span>}
          </label>
        ))}
        <label>
          <span class="parameter-name">tenant</span>
          <input name="tenant" value={tenant} placeholder="your first" onInput={(e) => setTenant((e.target as HTMLInputElement).value)} />
        </label>
        {canRun ? (
          <div class="actions">
            <button type="submit" disabled={running} data-test="run-template">
              Run
            </button>
          </div>
        ) : (
          <p class="empty">Viewers cannot submit tasks.</p>
        )}
        {refusal && (
          <p class="error" data-test="template-error">
            {refusal.message}
          </p>
        )}
      </form>
      <details>
        <summary>The template's file ({template.origin})</summary>
        <pre class="output" data-test="template-file">
          {template.file}
        </pre>
      </details>
    </div>
  );
}
