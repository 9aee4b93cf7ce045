// Schedules: the list (next tick, last run), one schedule's page with its
// history and its actions (run now, suspend or resume, delete), and a form
// that creates one from a schedule file. Read again every few seconds, so
// the ticks move on screen.
import { useEffect, useState } from "preact/hooks";

import { ApiError, Session, call, get, query, when } from "./api";

interface Run {
  tick?: string;
  lastTick?: string;
  ticks: number;
  taskId: string;
  skipped: string;
}

interface Schedule {
  name: string;
  tenant: string;
  cron: string;
  timezone: string;
  task?: { name?: string; steps?: { id: string }[] };
  template?: { name: string; params: Record<string, string> };
  concurrencyPolicy: string;
  missed: string;
  startingDeadlineSeconds: number;
  suspended: boolean;
  createdAt?: string;
  nextTick?: string;
  history: Run[];
}

const REFRESH_MS = 2000;

const EXAMPLE = `name: nightly-deps
cron: "0 3 * * 1-5"
timezone: Europe/Rome
concurrencyPolicy: Forbid   # Allow | Forbid | Replace
task:                       # or template: {name: triage, params: {...}}
  steps:
    - id: bump
      shell: {command: [sh, -c, "echo bump"]}
`;

function useSchedules(): [Schedule[] | null, string, () => void] {
  const [schedules, setSchedules] = useState<Schedule[] | null>(null);
  const [error, setError] = useState("");
  const load = () =>
    get<{ schedules: Schedule[] }>("/schedules").then(
      (list) => {
        setSchedules(list.schedules);
        setError("");
      },
      (e) => setError(e.message),
    );
  useEffect(() => {
    load();
    const timer = window.setInterval(load, REFRESH_MS);
    return () => clearInterval(timer);
  }, []);
  return [schedules, error, load];
}

/// A run as one line: the task it submitted, or why it was skipped.
function RunCell({ run }: { run?: Run }) {
  if (!run) return <span class="empty">–</span>;
  if (run.taskId) return <a href={`#/tasks/${run.taskId}`}>{run.taskId}</a>;
  const many = run.ticks > 1 ? ` (${run.ticks} ticks)` : run.ticks === 0 ? " (many ticks)" : "";
  return (
    <span class="badge state-skipped" title={run.skipped}>
      skipped{many}
    </span>
  );
}

export function SchedulesPage({ name, tenant, session }: { name?: string; tenant?: string; session: Session }) {
  const [schedules, error, load] = useSchedules();
  // A read that failed keeps what the last one showed, said above it.
  if (!schedules) return error ? <p class="error">{error}</p> : <p class="loading">Loading…</p>;
  const failed = error && <p class="error" data-test="schedules-error">{error}</p>;
  if (name) {
    const found = schedules.find((s) => s.name === name && (!tenant || s.tenant === tenant));
    if (!found) return <p class="error">No schedule {name}.</p>;
    return (
      <>
        {failed}
        <SchedulePage schedule={found} session={session} onChanged={load} />
      </>
    );
  }
  return (
    <div>
      <h2>Schedules</h2>
      {failed}
      <table data-test="schedules">
        <thead>
          <tr>
            <th>name</th>
            <th>tenant</th>
            <th>cron</th>
            <th>next tick</th>
            <th>last run</th>
            <th>overlap</th>
          </tr>
        </thead>
        <tbody>
          {schedules.map((s) => (
            <tr data-schedule={s.name}>
              <td>
                <a href={`#/schedules/${encodeURIComponent(s.name)}${query({ tenant: s.tenant })}`}>{s.name}</a>
              </td>
              <td>{s.tenant}</td>
              <td>
                <code>{s.cron}</code> <span class="id">{s.timezone}</span>
              </td>
              <td data-test="next-tick">{s.suspended ? <span class="badge state-paused">suspended</span> : when(s.nextTick)}</td>
              <td>
                <RunCell run={s.history[s.history.length - 1]} />
              </td>
              <td>{s.concurrencyPolicy}</td>
            </tr>
          ))}
          {!schedules.length && (
            <tr>
              <td colSpan={6} class="empty">
                No schedule yet.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      {session.role !== "viewer" && <CreateSchedule onCreated={load} />}
    </div>
  );
}

/// One schedule: what it submits and when, its last runs, newest first,
/// and its actions for those who may change it.
function SchedulePage({ schedule, session, onChanged }: { schedule: Schedule; session: Session; onChanged: () => void }) {
  const [error, setError] = useState("");
  const [asked, setAsked] = useState(false);
  const path = `/schedules/${encodeURIComponent(schedule.name)}${query({ tenant: schedule.tenant })}`;
  const act = async (action: string, method = "POST") => {
    try {
      const answer = await call<{ taskId?: string }>(method, action ? path.replace("?", `/${action}?`) : path);
      setError("");
      if (action === "trigger" && answer?.taskId) location.hash = `#/tasks/${answer.taskId}`;
      else if (method === "DELETE") location.hash = "#/schedules";
      else onChanged();
    } catch (e: any) {
      setError(e.message);
    }
  };
  const canChange = session.role !== "viewer";
  const what = schedule.template
    ? `template ${schedule.template.name}`
    : `task ${schedule.task?.name || schedule.name} (${(schedule.task?.steps ?? []).map((s) => s.id).join(", ")})`;
  return (
    <div>
      <h2>
        <a href="#/schedules">Schedules</a> / {schedule.name}
      </h2>
      <dl class="facts" data-test="schedule-facts">
        <dt>tenant</dt>
        <dd>{schedule.tenant}</dd>
        <dt>cron</dt>
        <dd>
          <code>{schedule.cron}</code> in {schedule.timezone}
        </dd>
        <dt>submits</dt>
        <dd>{what}</dd>
        <dt>policy</dt>
        <dd>
          overlap {schedule.concurrencyPolicy}, missed ticks {schedule.missed}, deadline {schedule.startingDeadlineSeconds}s
        </dd>
        <dt>next tick</dt>
        <dd data-test="next-tick">{schedule.suspended ? "suspended" : when(schedule.nextTick)}</dd>
      </dl>
      {canChange && (
        <div class="actions">
          <button onClick={() => act("trigger")} data-test="trigger">
            Run now
          </button>
          <button onClick={() => act(schedule.suspended ? "resume" : "suspend")} data-test="suspend">
            {schedule.suspended ? "Resume" : "Suspend"}
          </button>
          {asked ? (
            <span>
              <button onClick={() => act("", "DELETE")} data-test="confirm-delete">
                delete it (its tasks stay)
              </button>{" "}
              <button class="link" onClick={() => setAsked(false)}>
                keep
              </button>
            </span>
          ) : (
            <button class="link" onClick={() => setAsked(true)} data-test="delete">
              delete
            </button>
          )}
        </div>
      )}
      {error && <p class="error">{error}</p>}
      <h3>Last runs</h3>
      <table data-test="history">
        <thead>
          <tr>
            <th>tick</th>
            <th>task</th>
            <th>why skipped</th>
          </tr>
        </thead>
        <tbody>
          {[...schedule.history].reverse().map((run) => (
            <tr data-tick={run.tick}>
              <td>
                {when(run.tick)}
                {run.lastTick && run.lastTick !== run.tick && <> – {when(run.lastTick)}</>}
              </td>
              <td>
                <RunCell run={run} />
              </td>
              <td>{run.skipped}</td>
            </tr>
          ))}
          {!schedule.history.length && (
            <tr>
              <td colSpan={3} class="empty">
                No tick yet.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

/// A schedule file (YAML or JSON), sent as it is: a refusal names the
/// field, as the CLI's does.
function CreateSchedule({ onCreated }: { onCreated: () => void }) {
  const [file, setFile] = useState(EXAMPLE);
  const [tenant, setTenant] = useState("");
  const [refusal, setRefusal] = useState<ApiError | null>(null);
  const create = async (e: Event) => {
    e.preventDefault();
    try {
      await call("POST", `/schedules${query({ tenant: tenant || undefined })}`, file, "application/yaml");
      setRefusal(null);
      onCreated();
    } catch (err) {
      setRefusal(err instanceof ApiError ? err : new ApiError(0, String(err)));
    }
  };
  return (
    <form class="schedule-form" onSubmit={create} data-test="create-schedule">
      <h3>Create a schedule</h3>
      <textarea name="file" rows={10} value={file} onInput={(e) => setFile((e.target as HTMLTextAreaElement).value)} />
      <div class="filters">
        <input name="tenant" placeholder="tenant (your first)" value={tenant} onInput={(e) => setTenant((e.target as HTMLInputElement).value)} />
        <button type="submit" disabled={!file.trim()}>
          Create
        </button>
      </div>
      {refusal && (
        <p class="error" data-test="schedule-error" data-field={refusal.field}>
          {refusal.message}
        </p>
      )}
    </form>
  );
}
