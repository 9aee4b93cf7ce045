// The smaller pages: agents and the control plane's replicas, the audit
// log (admins), and shared state, read-only.
import { useEffect, useState } from "preact/hooks";

import { AuditRecord, Fleet, Session, get, query, when } from "./api";

interface Server {
  name: string;
  address: string;
  leading: boolean;
  epoch: number;
  leadingSince?: string;
  seenAt?: string;
}

export function AgentsPage() {
  const [fleet, setFleet] = useState<Fleet>({ agents: [], queue: [] });
  const [servers, setServers] = useState<Server[]>([]);
  useEffect(() => {
    const load = () => {
      get<Fleet>("/agents").then(setFleet, () => {});
      get<Server[]>("/servers").then(setServers, () => {});
    };
    load();
    const timer = window.setInterval(load, 5000);
    return () => clearInterval(timer);
  }, []);
  return (
    <div>
      <h2>Agents</h2>
      <table data-test="agents">
        <thead>
          <tr>
            <th>name</th>
            <th>pool</th>
            <th>capabilities</th>
            <th>running</th>
            <th>slots</th>
            <th>connected</th>
            <th>from</th>
          </tr>
        </thead>
        <tbody>
          {fleet.agents.map((a) => (
            <tr>
              <td>{a.name}</td>
              <td>{a.pool}</td>
              <td>{a.capabilities.join(", ")}</td>
              <td>{a.running}</td>
              <td>{a.slots}</td>
              <td>{when(a.connectedAt)}</td>
              <td>{a.peer}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Control plane</h2>
      <table data-test="servers">
        <thead>
          <tr>
            <th>name</th>
            <th>address</th>
            <th>role</th>
            <th>epoch</th>
            <th>leading since</th>
            <th>seen</th>
          </tr>
        </thead>
        <tbody>
          {servers.map((s) => (
            <tr>
              <td>{s.name}</td>
              <td>{s.address}</td>
              <td>{s.leading ? "leader" : "standby"}</td>
              <td>{s.epoch}</td>
              <td>{when(s.leadingSince)}</td>
              <td>{when(s.seenAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const AUDIT_PAGE = 100;

/// The audit log, oldest first, a page at a time after a sequence number.
export function AuditPage() {
  const [after, setAfter] = useState<number[]>([0]);
  const [records, setRecords] = useState<AuditRecord[]>([]);
  const [error, setError] = useState("");
  const from = after[after.length - 1];
  useEffect(() => {
    get<{ records: AuditRecord[] }>(`/audit${query({ after: String(from), pageSize: String(AUDIT_PAGE) })}`).then(
      (page) => setRecords(page.records),
      (e) => setError(e.message),
    );
  }, [from]);
  return (
    <div>
      <h2>Audit log</h2>
      {error && <p class="error">{error}</p>}
      <table data-test="audit">
        <thead>
          <tr>
            <th>#</th>
            <th>time</th>
            <th>who</th>
            <th>action</th>
            <th>tenant</th>
            <th>task</th>
            <th>outcome</th>
            <th>detail</th>
          </tr>
        </thead>
        <tbody>
          {records.map((r) => (
            <tr>
              <td>{r.seq}</td>
              <td>{when(r.time)}</td>
              <td>
                {r.actor} ({r.role})
              </td>
              <td>{r.action}</td>
              <td>{r.tenant}</td>
              <td>{r.taskId && <a href={`#/tasks/${r.taskId}`}>{r.taskId}</a>}</td>
              <td>{r.outcome}</td>
              <td>{r.detail}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div class="pager">
        <button disabled={after.length === 1} onClick={() => setAfter(after.slice(0, -1))}>
          ← earlier
        </button>
        <button
          disabled={records.length < AUDIT_PAGE}
          onClick={() => setAfter([...after, records[records.length - 1].seq])}
        >
          later →
        </button>
      </div>
    </div>
  );
}

interface StateValue {
  tenant: string;
  scope: string;
  key: string;
  value: unknown;
  version: number;
  updatedAt?: string;
  expiresAt?: string;
}

/// A scope's shared state, read-only: its values in key order, a page at
/// a time.
export function StatePage({ session }: { session: Session }) {
  const [tenant, setTenant] = useState(session.tenants[0] === "*" ? "default" : session.tenants[0] ?? "");
  const [scope, setScope] = useState("");
  const [values, setValues] = useState<StateValue[] | null>(null);
  const [next, setNext] = useState("");
  const [error, setError] = useState("");
  const load = async (after: string) => {
    try {
      const page = await get<{ values: StateValue[]; nextAfter?: string }>(
        `/state/${encodeURIComponent(scope)}${query({ tenant, after })}`,
      );
      setValues(after ? [...(values ?? []), ...page.values] : page.values);
      setNext(page.nextAfter ?? "");
      setError("");
    } catch (err: any) {
      setValues(null);
      setError(err.message);
    }
  };
  const input = (set: (v: string) => void) => (e: Event) => set((e.target as HTMLInputElement).value);
  return (
    <div>
      <h2>Shared state</h2>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          load("");
        }}
        data-test="state-form"
      >
        <input placeholder="tenant" value={tenant} onInput={input(setTenant)} name="tenant" />
        <input placeholder="scope (a task id, or a shared name)" value={scope} onInput={input(setScope)} name="scope" />
        <button type="submit" disabled={!scope}>
          Show
        </button>
      </form>
      {error && <p class="error" data-test="error">{error}</p>}
      {values && (
        <table data-test="state-values">
          <thead>
            <tr>
              <th>key</th>
              <th>version</th>
              <th>updated</th>
              <th>expires</th>
              <th>value</th>
            </tr>
          </thead>
          <tbody>
            {values.map((v) => (
              <tr data-key={v.key}>
                <td>{v.key}</td>
                <td>{v.version}</td>
                <td>{when(v.updatedAt)}</td>
                <td>{when(v.expiresAt)}</td>
                <td>
                  <pre class="output">{JSON.stringify(v.value, null, 2)}</pre>
                </td>
              </tr>
            ))}
            {!values.length && (
              <tr>
                <td colSpan={5} class="empty">
                  No value in this scope.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {next && (
        <div class="pager">
          <button onClick={() => load(next)}>more</button>
        </div>
      )}
    </div>
  );
}
