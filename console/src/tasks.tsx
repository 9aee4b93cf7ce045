// The task list: newest first, filtered by state, label, tenant and name,
// paged by the server's page tokens (fast at any size), with its rows kept
// live by the fleet's event stream.
import { useEffect, useRef, useState } from "preact/hooks";

import { Task, duration, follow, get, query, taskProgress, terminal, usd, when } from "./api";
import { useThrottled } from "./hooks";

const PAGE_SIZES = [50, 100, 500, 1000];
const STATES = ["queued", "running", "paused", "succeeded", "failed", "cancelled"];

interface Filters {
  state: string;
  label: string;
  tenant: string;
  name: string;
  pageSize: string;
}

export function TaskList({ params }: { params: URLSearchParams }) {
  const [filters, setFilters] = useState<Filters>({
    state: params.get("state") ?? "",
    label: params.get("label") ?? "",
    tenant: params.get("tenant") ?? "",
    name: params.get("name") ?? "",
    pageSize: params.get("pageSize") ?? String(PAGE_SIZES[0]),
  });
  // The tokens of the pages before this one, to go back.
  const [pages, setPages] = useState<string[]>([""]);
  const [tasks, setTasks] = useState<Task[]>([]);
  const [next, setNext] = useState("");
  const [error, setError] = useState("");
  const shown = useRef<Map<string, Task>>(new Map());
  const token = pages[pages.length - 1];

  const load = async () => {
    try {
      const page = await get<{ tasks: Task[]; nextPageToken?: string }>(
        `/tasks${query({ ...filters, pageToken: token })}`,
      );
      setError("");
      shown.current = new Map(page.tasks.map((t) => [t.id, t]));
      setTasks(page.tasks);
      setNext(page.nextPageToken ?? "");
      // A listing has no steps: the running rows are read whole for
      // their progress.
      page.tasks.filter((t) => t.state === "running").forEach((t) => refresh(t.id));
    } catch (e: any) {
      setError(e.message);
    }
  };

  // One read per row at a time, however many events name it; none once
  // the page is gone.
  const due = useRef<Map<string, number>>(new Map());
  useEffect(() => () => due.current.forEach((timer) => clearTimeout(timer)), []);
  const refresh = (id: string) => {
    if (due.current.has(id)) return;
    const timer = window.setTimeout(async () => {
      due.current.delete(id);
      try {
        const task = await get<Task>(`/tasks/${id}`);
        if (!shown.current.has(id)) return;
        shown.current.set(id, task);
        setTasks([...shown.current.values()]);
      } catch {
        // Gone from view or from the store: the next page load says so.
      }
    }, 250);
    due.current.set(id, timer);
  };

  // New tasks come in bursts: the first page is read again at most once a
  // second.
  const loadSoon = useThrottled(load, 1000);
  useEffect(() => {
    const stop = follow(
      "/events",
      (event) => {
        if (shown.current.has(event.taskId)) refresh(event.taskId);
        else if (event.type === "taskState" && event.state === "queued" && pages.length === 1) loadSoon();
      },
      () => load(),
    );
    return stop;
  }, [filters, token]);

  // Durations of running rows tick.
  const [, tick] = useState(0);
  useEffect(() => {
    const timer = window.setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(timer);
  }, []);

  const filter = (name: keyof Filters) => (e: Event) => {
    setFilters({ ...filters, [name]: (e.target as HTMLInputElement).value });
    setPages([""]);
  };
  return (
    <div class="tasks">
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <select value={filters.state} onChange={filter("state")} data-test="filter-state">
          <option value="">any state</option>
          {STATES.map((s) => (
            <option value={s}>{s}</option>
          ))}
        </select>
        <input placeholder="label key=value" value={filters.label} onChange={filter("label")} data-test="filter-label" />
        <input placeholder="tenant" value={filters.tenant} onChange={filter("tenant")} data-test="filter-tenant" />
        <input placeholder="name starts with" value={filters.name} onChange={filter("name")} data-test="filter-name" />
        <select value={filters.pageSize} onChange={filter("pageSize")} data-test="page-size">
          {PAGE_SIZES.map((n) => (
            <option value={String(n)}>{n} a page</option>
          ))}
        </select>
      </form>
      {error && <p class="error" data-test="error">{error}</p>}
      <table data-test="task-list">
        <thead>
          <tr>
            <th>name</th>
            <th>state</th>
            <th>progress</th>
            <th>tenant</th>
            <th>created</th>
            <th>duration</th>
            <th>cost</th>
          </tr>
        </thead>
        <tbody>
          {tasks.map((task) => {
            const progress = taskProgress(task) ?? (task.state === "succeeded" ? 1 : undefined);
            return (
              <tr data-task={task.id} data-state={task.state}>
                <td>
                  <a href={`#/tasks/${task.id}`}>{task.name || task.id}</a>
                  <div class="id">{task.id}</div>
                </td>
                <td>
                  <span class={`badge state-${task.state}`}>{task.state}</span>
                </td>
                <td>{progress !== undefined && <Progress fraction={progress} />}</td>
                <td>{task.tenant}</td>
                <td>{when(task.createdAt)}</td>
                <td>{duration(task.startedAt, terminal(task.state) ? task.finishedAt : undefined)}</td>
                <td>{usd(task.cost)}</td>
              </tr>
            );
          })}
          {!tasks.length && (
            <tr>
              <td colSpan={7} class="empty">
                No task matches.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <div class="pager">
        <button disabled={pages.length === 1} onClick={() => setPages(pages.slice(0, -1))} data-test="newer">
          ← newer
        </button>
        <button disabled={!next} onClick={() => setPages([...pages, next])} data-test="older">
          older →
        </button>
      </div>
    </div>
  );
}

export function Progress({ fraction }: { fraction: number }) {
  const percent = Math.round(Math.min(Math.max(fraction, 0), 1) * 100);
  return (
    <span class="progress" title={`${percent}%`}>
      <span style={{ width: `${percent}%` }} />
    </span>
  );
}
