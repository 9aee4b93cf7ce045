// The overview: workers and their slots, the queue per capability set,
// tasks per state, and the last hour's charts, kept live by the fleet's
// event stream.
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { Fleet, Minute, follow, get } from "./api";
import { useThrottled } from "./hooks";

type Counts = Record<string, number>;

export function Overview() {
  const [counts, setCounts] = useState<Counts>({});
  const [fleet, setFleet] = useState<Fleet>({ agents: [], queue: [] });
  const [minutes, setMinutes] = useState<Minute[]>([]);
  const [error, setError] = useState("");
  const loadCounts = () => get<Counts>("/task-counts").then(setCounts, (e) => setError(String(e.message)));
  const loadFleet = () => get<Fleet>("/agents").then(setFleet, () => {});
  const loadActivity = () => get<{ minutes: Minute[] }>("/activity").then((a) => setMinutes(a.minutes), () => {});
  const countsSoon = useThrottled(loadCounts, 500);
  const fleetSoon = useThrottled(loadFleet, 1000);
  const activitySoon = useThrottled(loadActivity, 2000);
  useEffect(() => {
    // Loaded once the stream has started, so nothing falls between.
    const stop = follow(
      "/events",
      (event) => {
        if (event.type === "taskState") {
          countsSoon();
          activitySoon();
        }
        if (event.type === "stepState") fleetSoon();
      },
      () => {
        loadCounts();
        loadFleet();
        loadActivity();
      },
    );
    // Workers come and go without task events; the minute turns.
    const timer = window.setInterval(() => {
      loadFleet();
      loadActivity();
    }, 10000);
    return () => {
      stop();
      clearInterval(timer);
    };
  }, []);
  const slots = fleet.agents.reduce((n, a) => n + a.slots, 0);
  const busy = fleet.agents.reduce((n, a) => n + a.running, 0);
  const x = minutes.map((m) => Date.parse(m.start) / 1000);
  const models = [...new Set(minutes.flatMap((m) => m.spend.map((s) => s.model)))].sort();
  const spendOf = (model: string, pick: (s: Minute["spend"][number]) => number) =>
    minutes.map((m) => m.spend.filter((s) => s.model === model).reduce((n, s) => n + pick(s), 0));
  return (
    <div class="overview">
      {error && <p class="error">{error}</p>}
      <section class="cards">
        {["queued", "running", "paused", "succeeded", "failed", "cancelled"].map((state) => (
          <a class={`card state-${state}`} href={`#/tasks?state=${state}`} data-test={`count-${state}`}>
            <span class="figure">{counts[state] ?? 0}</span>
            <span class="label">{state}</span>
          </a>
        ))}
        <div class="card" data-test="slots">
          <span class="figure">
            {busy}/{slots}
          </span>
          <span class="label">slots busy on {fleet.agents.length} workers</span>
        </div>
      </section>
      <section class="charts">
        <Chart
          title="Tasks finished per minute"
          x={x}
          series={[
            { label: "succeeded", values: minutes.map((m) => m.succeeded), color: "#2e9d5b" },
            { label: "failed", values: minutes.map((m) => m.failed), color: "#d64545" },
            { label: "submitted", values: minutes.map((m) => m.submitted), color: "#7a7aff" },
          ]}
        />
        <Chart
          title="Dispatch latency (ms)"
          x={x}
          series={[
            { label: "p50", values: minutes.map((m) => m.dispatchP50Ms), color: "#3a8dde" },
            { label: "p99", values: minutes.map((m) => m.dispatchP99Ms), color: "#e08a2e" },
          ]}
        />
        <Chart
          title="Spend per minute (USD) by model"
          x={x}
          series={models.map((model, i) => ({ label: model, values: spendOf(model, (s) => s.usd ?? 0), color: palette(i) }))}
        />
        <Chart
          title="Tokens per minute by model"
          x={x}
          series={models.map((model, i) => ({
            label: model,
            values: spendOf(model, (s) => (s.inputTokens ?? 0) + (s.outputTokens ?? 0) + (s.cacheReadTokens ?? 0) + (s.cacheCreationTokens ?? 0)),
            color: palette(i),
          }))}
        />
      </section>
      <section class="split">
        <div>
          <h2>Workers</h2>
          <table data-test="workers">
            <thead>
              <tr>
                <th>name</th>
                <th>pool</th>
                <th>capabilities</th>
                <th>slots busy / free</th>
                <th>isolation</th>
              </tr>
            </thead>
            <tbody>
              {fleet.agents.map((a) => (
                <tr>
                  <td>{a.name}</td>
                  <td>{a.pool}</td>
                  <td>{a.capabilities.join(", ")}</td>
                  <td>
                    {a.running} / {a.slots - a.running}
                  </td>
                  <td
                    data-test="isolation"
                    class={a.isolation.startsWith("none") ? "unsandboxed" : undefined}
                    title={a.isolation}
                  >
                    {a.isolation.split(":")[0] || "-"}
                  </td>
                </tr>
              ))}
              {!fleet.agents.length && (
                <tr>
                  <td colSpan={5} class="empty">
                    No worker is connected.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
        <div>
          <h2>Queue</h2>
          <table data-test="queue">
            <thead>
              <tr>
                <th>needs</th>
                <th>steps waiting</th>
              </tr>
            </thead>
            <tbody>
              {fleet.queue.map((q) => (
                <tr>
                  <td>{q.capabilities.join(", ") || "(nothing)"}</td>
                  <td>{q.queued}</td>
                </tr>
              ))}
              {!fleet.queue.length && (
                <tr>
                  <td colSpan={2} class="empty">
                    Nothing waits.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      </section>
      {fleet.server && (
        <p class="build" data-test="server-build" title={fleet.server.commit}>
          Control plane: tidewright {fleet.server.version} (commit {fleet.server.commit.slice(0, 12)}
          {fleet.server.builtAt ? `, built ${fleet.server.builtAt.slice(0, 10)}` : ""})
        </p>
      )}
    </div>
  );
}

const palette = (i: number) => ["#3a8dde", "#e08a2e", "#2e9d5b", "#a45ee5", "#d64545", "#888"][i % 6];

interface Series {
  label: string;
  values: number[];
  color: string;
}

/// A line chart of per-minute series, drawn by uPlot.
function Chart({ title, x, series }: { title: string; x: number[]; series: Series[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = series.map((s) => s.label).join("\u0000");
  useEffect(() => {
    const width = Math.max(box.current!.clientWidth, 280);
    plot.current = new uPlot(
      {
        width,
        height: 180,
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: false } }))],
        axes: [{ stroke: "currentColor" }, { stroke: "currentColor", size: 60 }],
        legend: { live: false },
      },
      [x, ...series.map((s) => s.values)],
      box.current!,
    );
    const resized = () => plot.current?.setSize({ width: Math.max(box.current!.clientWidth, 280), height: 180 });
    addEventListener("resize", resized);
    return () => {
      removeEventListener("resize", resized);
      plot.current?.destroy();
    };
  }, [shape]);
  useEffect(() => {
    plot.current?.setData([x, ...series.map((s) => s.values)]);
  }, [x, series]);
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} />
      {!series.length && <p class="empty">Nothing yet.</p>}
    </figure>
  );
}
