// A task's family: the task a step of which submitted it (its parent),
// and the tasks its steps submitted (its children), each with its state
// and cost, read again while any runs. Each child opens onto the tasks its
// own steps submitted, so the whole tree unfolds on one page.
import { useEffect, useRef, useState } from "preact/hooks";

import { Task, get, query, terminal, usd } from "./api";

const PARENT = "tidewright.dev/parent";
const PARENT_STEP = "tidewright.dev/parent-step";
const REFRESH_MS = 2000;

export function ParentLink({ task }: { task: Task }) {
  const parent = task.labels?.[PARENT];
  if (!parent) return null;
  return (
    <>
      <dt>parent</dt>
      <dd data-test="parent">
        <a href={`#/tasks/${parent}`}>{parent}</a>, submitted by its step {task.labels?.[PARENT_STEP] ?? "?"}
      </dd>
    </>
  );
}

export function Children({ task }: { task: Task }) {
  return <Level parent={task.id} parentEnded={terminal(task.state)} depth={0} />;
}

/// The tasks `parent`'s steps submitted, each of which opens onto its own:
/// read again while `parent` or any of them runs.
function Level({ parent, parentEnded, depth }: { parent: string; parentEnded: boolean; depth: number }) {
  const [children, setChildren] = useState<Task[] | null>(null);
  const [open, setOpen] = useState<Record<string, boolean>>({});
  const [error, setError] = useState("");
  // The latest list, for the timer (its closure keeps the first).
  const latest = useRef<Task[]>([]);
  useEffect(() => {
    const load = () =>
      get<{ tasks: Task[] }>(`/tasks${query({ label: `${PARENT}=${parent}`, pageSize: "1000" })}`).then(
        (page) => {
          latest.current = page.tasks;
          setChildren(page.tasks);
          setError("");
        },
        (e) => setError(e.message),
      );
    load();
    const timer = window.setInterval(() => {
      // Children stop changing once the task and they have all ended.
      if (parentEnded && latest.current.every((c) => terminal(c.state))) return;
      load();
    }, REFRESH_MS);
    return () => clearInterval(timer);
  }, [parent, parentEnded]);
  if (children === null && !error) return null;
  if (!children?.length && !error) {
    return depth === 0 ? null : <p class="empty" data-test="no-children">Its steps submitted no task.</p>;
  }
  const table = (
    <table data-test={depth === 0 ? "children" : "grandchildren"} data-parent={parent}>
      <thead>
        <tr>
          <th></th>
          <th>task</th>
          <th>by step</th>
          <th>state</th>
          <th>cost</th>
        </tr>
      </thead>
      <tbody>
        {(children ?? []).map((c) => [
          <tr data-child={c.id}>
            <td>
              <button
                class="link"
                data-expand={c.id}
                title={open[c.id] ? "hide the tasks it submitted" : "show the tasks it submitted"}
                onClick={() => setOpen({ ...open, [c.id]: !open[c.id] })}
              >
                {open[c.id] ? "▾" : "▸"}
              </button>
            </td>
            <td>
              <a href={`#/tasks/${c.id}`}>{c.name || c.id}</a>
              <div class="id">{c.id}</div>
            </td>
            <td>{c.labels?.[PARENT_STEP]}</td>
            <td>
              <span class={`badge state-${c.state}`}>{c.state}</span>
            </td>
            <td>{usd(c.cost) || "—"}</td>
          </tr>,
          open[c.id] && (
            <tr data-subtree={c.id}>
              <td></td>
              <td colSpan={4}>
                <Level parent={c.id} parentEnded={terminal(c.state)} depth={depth + 1} />
              </td>
            </tr>
          ),
        ])}
      </tbody>
    </table>
  );
  return depth === 0 ? (
    <div>
      <h2>Tasks its steps submitted</h2>
      {error && <p class="error">{error}</p>}
      {table}
    </div>
  ) : (
    <div>
      {error && <p class="error">{error}</p>}
      {table}
    </div>
  );
}
