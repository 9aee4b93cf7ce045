// Webhooks (admins): the endpoints, a form to register one, and the
// delivery log, newest first, refreshed while the page is open.
import { useEffect, useState } from "preact/hooks";

import { ApiError, call, get, query, when } from "./api";
import { ConfirmButton } from "./confirm";

interface Webhook {
  id: string;
  tenant: string;
  url: string;
  events: string[];
  enabled: boolean;
  disabledReason?: string;
  createdAt?: string;
}

interface Delivery {
  id: string;
  webhookId: string;
  tenant: string;
  taskId: string;
  event: string;
  state: "pending" | "delivered" | "failed";
  attempts: number;
  lastStatus: number;
  lastLatencyMs: number;
  lastError?: string;
  createdAt?: string;
  nextAttemptAt?: string;
  finishedAt?: string;
}

const EVENTS = [
  "task.succeeded",
  "task.failed",
  "task.cancelled",
  "task.paused",
  "step.failed",
  "step.verified",
  "step.verification_failed",
  "step.failed_over",
  "task.landed",
  "task.landing_failed",
  "approval.requested",
  "schedule.fired",
  "schedule.skipped",
];
const DELIVERY_PAGE = 50;
const REFRESH_MS = 5000;

/// A delivery's state as a badge, in the task states' colours.
const STATE_BADGE: Record<Delivery["state"], string> = {
  pending: "running",
  delivered: "succeeded",
  failed: "failed",
};

export function WebhooksPage() {
  const [webhooks, setWebhooks] = useState<Webhook[]>([]);
  const [error, setError] = useState("");
  const [shown, setShown] = useState(""); // the endpoint whose log is shown; "" for all
  const load = () =>
    get<{ webhooks: Webhook[] }>("/webhooks").then(
      (list) => {
        setWebhooks(list.webhooks);
        setError("");
      },
      (e) => setError(e.message),
    );
  useEffect(() => {
    load();
  }, []);
  const remove = async (id: string) => {
    try {
      await call("DELETE", `/webhooks/${encodeURIComponent(id)}`);
      if (shown === id) setShown("");
      await load();
    } catch (e: any) {
      setError(e.message);
    }
  };
  return (
    <div>
      <h2>Webhooks</h2>
      {error && <p class="error">{error}</p>}
      <table data-test="webhooks">
        <thead>
          <tr>
            <th>endpoint</th>
            <th>tenant</th>
            <th>events</th>
            <th>status</th>
            <th>added</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {webhooks.map((w) => (
            <tr data-webhook={w.id}>
              <td>
                {w.url}
                <div class="id">{w.id}</div>
              </td>
              <td>{w.tenant}</td>
              <td>{w.events.join(", ")}</td>
              <td>{w.enabled ? "enabled" : `disabled: ${w.disabledReason ?? ""}`}</td>
              <td>{when(w.createdAt)}</td>
              <td>
                <div class="actions">
                  <button class="link" onClick={() => setShown(w.id)} data-test="show-deliveries">
                    deliveries
                  </button>
                  <ConfirmButton
                    ask="remove"
                    confirm="remove it and its log"
                    askTest="remove-webhook"
                    confirmTest="confirm-remove"
                    onConfirm={() => remove(w.id)}
                  />
                </div>
              </td>
            </tr>
          ))}
          {!webhooks.length && (
            <tr>
              <td colSpan={6} class="empty">
                No endpoint yet.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <AddWebhook onAdded={load} />
      <Deliveries webhookId={shown} onShowAll={() => setShown("")} key={shown} />
    </div>
  );
}

function AddWebhook({ onAdded }: { onAdded: () => void }) {
  const [url, setUrl] = useState("");
  const [events, setEvents] = useState<string[]>(["task.succeeded", "task.failed"]);
  const [secret, setSecret] = useState("");
  const [tenant, setTenant] = useState("");
  const [refusal, setRefusal] = useState<ApiError | null>(null);
  const add = async (e: Event) => {
    e.preventDefault();
    try {
      await call("POST", "/webhooks", JSON.stringify({ url, events, secret, tenant }));
      setUrl("");
      setSecret("");
      setRefusal(null);
      onAdded();
    } catch (err) {
      setRefusal(err instanceof ApiError ? err : new ApiError(0, String(err)));
    }
  };
  const toggle = (event: string) =>
    setEvents(events.includes(event) ? events.filter((e) => e !== event) : [...events, event]);
  const input = (set: (v: string) => void) => (e: Event) => set((e.target as HTMLInputElement).value);
  const invalid = (field: string) => (refusal?.field?.split("[")[0] === field ? "invalid" : "");
  return (
    <form class="webhook-form" onSubmit={add} data-test="add-webhook">
      <h3>Add an endpoint</h3>
      <div class="filters">
        <input name="url" placeholder="https://…" value={url} onInput={input(setUrl)} class={invalid("url")} />
        <input
          name="secret"
          type="password"
          placeholder="secret (whsec_…)"
          autocomplete="new-password"
          value={secret}
          onInput={input(setSecret)}
          class={invalid("secret")}
        />
        <input name="tenant" placeholder="tenant (your first)" value={tenant} onInput={input(setTenant)} class={invalid("tenant")} />
        <button type="submit" disabled={!url || !secret || !events.length}>
          Add
        </button>
      </div>
      <div class={`events ${invalid("events")}`}>
        {EVENTS.map((event) => (
          <label>
            <input type="checkbox" name={event} checked={events.includes(event)} onChange={() => toggle(event)} /> {event}
          </label>
        ))}
      </div>
      {refusal && (
        <p class="error" data-test="webhook-error">
          {refusal.message}
        </p>
      )}
    </form>
  );
}

/// The delivery log, newest first, a page at a time; the first page is
/// read again every few seconds, so pending deliveries move on screen.
function Deliveries({ webhookId, onShowAll }: { webhookId: string; onShowAll: () => void }) {
  const [tokens, setTokens] = useState<string[]>([""]);
  const [page, setPage] = useState<{ deliveries: Delivery[]; nextPageToken?: string }>({ deliveries: [] });
  const [error, setError] = useState("");
  const token = tokens[tokens.length - 1];
  useEffect(() => {
    const load = () =>
      get<{ deliveries: Delivery[]; nextPageToken?: string }>(
        `/webhook-deliveries${query({ webhook: webhookId || undefined, pageSize: String(DELIVERY_PAGE), pageToken: token || undefined })}`,
      ).then(
        (p) => {
          setPage(p);
          setError("");
        },
        (e) => setError(e.message),
      );
    load();
    if (token) return;
    const timer = window.setInterval(load, REFRESH_MS);
    return () => clearInterval(timer);
  }, [token]);
  return (
    <div>
      <h2>
        Deliveries {webhookId ? <>of {webhookId} </> : "to every endpoint"}
        {webhookId && (
          <button class="link follow" onClick={onShowAll}>
            show all
          </button>
        )}
      </h2>
      {error && <p class="error">{error}</p>}
      <table data-test="deliveries">
        <thead>
          <tr>
            <th>created</th>
            <th>event</th>
            <th>task</th>
            <th>state</th>
            <th>tries</th>
            <th>status</th>
            <th>latency</th>
            <th>last error</th>
          </tr>
        </thead>
        <tbody>
          {page.deliveries.map((d) => (
            <tr data-delivery={d.id}>
              <td>
                {when(d.createdAt)}
                <div class="id">{d.id}</div>
              </td>
              <td>{d.event}</td>
              <td>{d.taskId ? <a href={`#/tasks/${d.taskId}`}>{d.taskId}</a> : "–"}</td>
              <td>
                <span class={`badge state-${STATE_BADGE[d.state] ?? "waiting"}`} data-test="delivery-state">
                  {d.state}
                </span>
                {d.state === "pending" && d.nextAttemptAt && <div class="id">next {when(d.nextAttemptAt)}</div>}
              </td>
              <td>{d.attempts}</td>
              <td>{d.lastStatus || "–"}</td>
              <td>{d.attempts ? `${d.lastLatencyMs} ms` : "–"}</td>
              <td>{d.lastError}</td>
            </tr>
          ))}
          {!page.deliveries.length && (
            <tr>
              <td colSpan={8} class="empty">
                No delivery yet.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <div class="pager">
        <button disabled={tokens.length === 1} onClick={() => setTokens(tokens.slice(0, -1))}>
          ← newer
        </button>
        <button disabled={!page.nextPageToken} onClick={() => setTokens([...tokens, page.nextPageToken!])} data-test="older-deliveries">
          older →
        </button>
      </div>
    </div>
  );
}
