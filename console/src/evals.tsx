// The evals run on the user's own history (`tidewright eval`): each run,
// newest first, with each runtime's pass rate at each attempt count as a
// bar chart and a table (tasks, passed, cost, median time). Read from the
// tasks kept (each labelled with its run).
import { useEffect, useState } from "preact/hooks";

import { Task, get, usd } from "./api";

const EVALS = "tidewright.dev/evals";
const RUN = "tidewright.dev/eval";
const RUNTIME = "tidewright.dev/eval-runtime";
const ATTEMPTS = "tidewright.dev/eval-attempts";

interface Figures {
  key: string;
  tasks: number;
  passed: number;
  usd: number;
  millis: number[];
  running: number;
}

/// Each run's figures by runtime and attempts, newest run first.
function runs(tasks: Task[]): [string, Figures[]][] {
  const byRun = new Map<string, Map<string, Figures>>();
  for (const t of tasks) {
    const labels = t.labels ?? {};
    const run = labels[RUN];
    if (!run) continue;
    const key = `${labels[RUNTIME]} ×${labels[ATTEMPTS]}`;
    const rows = byRun.get(run) ?? new Map<string, Figures>();
    const row = rows.get(key) ?? { key, tasks: 0, passed: 0, usd: 0, millis: [], running: 0 };
    row.tasks += 1;
    if (t.state === "succeeded") row.passed += 1;
    if (t.state === "queued" || t.state === "running") row.running += 1;
    row.usd += t.cost?.usd ?? 0;
    if (t.createdAt && t.finishedAt) row.millis.push(Date.parse(t.finishedAt) - Date.parse(t.createdAt));
    rows.set(key, row);
    byRun.set(run, rows);
  }
  return [...byRun.entries()]
    .sort(([a], [b]) => (a < b ? 1 : -1))
    .map(([run, rows]) => [run, [...rows.values()].sort((a, b) => (a.key < b.key ? -1 : 1))]);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
}

/// Pass rates as horizontal bars, one per runtime and attempt count.
function Chart({ rows }: { rows: Figures[] }) {
  const bar = 22;
  const width = 420;
  return (
    <svg class="eval-chart" data-test="eval-chart" width={width + 160} height={rows.length * (bar + 6)}>
      {rows.map((r, i) => {
        const rate = r.tasks ? r.passed / r.tasks : 0;
        return (
          <g transform={`translate(0, ${i * (bar + 6)})`} data-test="eval-bar" data-key={r.key}>
            <text x={0} y={bar * 0.7}>
              {r.key}
            </text>
            <rect x={140} width={width} height={bar} class="track" />
            <rect x={140} width={width * rate} height={bar} class="rate" />
            <text x={146 + width * rate} y={bar * 0.7}>
              {Math.round(rate * 100)}%
            </text>
          </g>
        );
      })}
    </svg>
  );
}

export function EvalsPage() {
  const [tasks, setTasks] = useState<Task[] | undefined>(undefined);
  const [error, setError] = useState("");
  useEffect(() => {
    const load = () =>
      get<{ tasks: Task[] }>(`/tasks?label=${encodeURIComponent(`${EVALS}=true`)}&pageSize=1000`).then(
        (page) => {
          setTasks(page.tasks);
          setError("");
        },
        (e) => setError(String(e.message)),
      );
    load();
    const timer = window.setInterval(load, 5000);
    return () => clearInterval(timer);
  }, []);
  const shown = runs(tasks ?? []);
  return (
    <div>
      <h2>Evals</h2>
      {error && <p class="error">{error}</p>}
      {tasks && shown.length === 0 && (
        <p data-test="no-evals">
          No eval has run: <code>tidewright eval --repo URL --runtimes claude-code,codex</code>
        </p>
      )}
      {shown.map(([run, rows]) => (
        <section data-test="eval-run" data-run={run}>
          <h3>Run {run}</h3>
          <Chart rows={rows} />
          <table>
            <thead>
              <tr>
                <th>runtime × attempts</th>
                <th>tasks</th>
                <th>passed</th>
                <th>pass rate</th>
                <th>cost</th>
                <th>median time</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr data-test="eval-row">
                  <td>{r.key}</td>
                  <td>{r.tasks}{r.running ? ` (${r.running} running)` : ""}</td>
                  <td>{r.passed}</td>
                  <td>{r.tasks ? Math.round((r.passed / r.tasks) * 100) : 0}%</td>
                  <td>{usd({ usd: r.usd }) || "—"}</td>
                  <td>{(median(r.millis) / 1000).toFixed(1)}s</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      ))}
    </div>
  );
}
