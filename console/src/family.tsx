// A task's family: the task a step of which submitted it (its parent),
// and the tasks its steps submitted (its children), each with its state
// and cost, read again while any runs. A child's page shows its own
// children: the tree, a level per page.
import { useEffect, useRef, useState } from "preact/hooks";

import { Task, get, query, terminal, usd } from "./api";

const PARENT = "orca.dev/parent";
const PARENT_STEP = "orca.dev/parent-step";
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
  const [children, setChildren] = useState<Task[]>([]);
  const [error, setError] = useState("");
  // The latest list, for the timer (its closure keeps the first).
  const latest = useRef<Task[]>([]);
  useEffect(() => {
    const load = () =>
      get<{ tasks: Task[] }>(`/tasks${query({ label: `${PARENT}=${task.id}`, pageSize: "1000" })}`).then(
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
      if (terminal(task.state) && latest.current.every((c) => terminal(c.state))) return;
      load();
    }, REFRESH_MS);
    return () => clearInterval(timer);
  }, [task.id, task.state]);
  if (!children.length && !error) return null;
  return (
    <div>
      <h2>Tasks its steps submitted</h2>
      {error && <p class="error">{error}</p>}
      <table data-test="children">
        <thead>
          <tr>
            <th>task</th>
            <th>by step</th>
            <th>state</th>
            <th>cost</th>
          </tr>
        </thead>
        <tbody>
          {children.map((c) => (
            <tr data-child={c.id}>
              <td>
                <a href={`#/tasks/${c.id}`}>{c.name || c.id}</a>
                <div class="id">{c.id}</div>
              </td>
              <td>{c.labels?.[PARENT_STEP]}</td>
              <td>
                <span class={`badge state-${c.state}`}>{c.state}</span>
              </td>
              <td>{usd(c.cost) || "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
