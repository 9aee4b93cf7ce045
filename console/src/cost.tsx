// What agents cost over time (GET /cost): spend per day as a chart drawn
// by uPlot, one line per value of the dimension chosen (the dearest five,
// the rest together), a table of that dimension, and each tenant's
// month-end forecast against its monthly budget (GET /budgets).
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { Cost, get, tokens, usd } from "./api";

interface CostRow {
  values: string[];
  cost: Cost;
  attempts: number;
}

interface CostReport {
  by: string[];
  since: string;
  until: string;
  rows: CostRow[];
  total: Cost;
  attempts: number;
}

interface TenantSpending {
  tenant: string;
  budget: { usdPerMonth?: number };
}

const DIMENSIONS = ["repo", "runtime", "model", "tenant", "template"];
const PERIODS: [string, string][] = [
  ["", "this month"],
  ["7d", "7 days"],
  ["30d", "30 days"],
  ["90d", "90 days"],
  ["400d", "400 days"],
];
const SHOWN = 5;
const palette = (i: number) => ["#3a8dde", "#e08a2e", "#2e9d5b", "#a45ee5", "#d64545", "#888"][i % 6];
const DAY = 86_400_000;
/// Dollars as people read them: cents, or four places below a dollar.
const money = (v: number) => `$${v.toFixed(Math.abs(v) < 1 ? 4 : 2)}`;

/// Each day from `since` to `until` (YYYY-MM-DD, UTC), as seconds.
function days(since: string, until: string): number[] {
  const out = [];
  for (let t = Date.parse(`${since}T00:00:00Z`); t <= Date.parse(`${until}T00:00:00Z`); t += DAY) out.push(t / 1000);
  return out;
}

/// A month's end as this month so far says it will be: what was spent,
/// per day elapsed (today as far as it has gone), times the month's days.
export function forecast(spent: number, now: Date): number {
  const first = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  const next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
  const elapsed = Math.max((now.getTime() - first) / DAY, 1 / 24);
  return (spent / elapsed) * ((next - first) / DAY);
}

function DailyChart({ report, dimension }: { report: CostReport; dimension: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const x = days(report.since, report.until);
    const totals = new Map<string, number>();
    for (const r of report.rows) totals.set(r.values[1], (totals.get(r.values[1]) ?? 0) + r.cost.usd);
    const top = [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([k]) => k);
    const shown = top.slice(0, SHOWN);
    const labels = top.length > SHOWN ? [...shown, "the rest"] : shown;
    const values = labels.map(() => x.map(() => 0));
    for (const r of report.rows) {
      const day = x.indexOf(Date.parse(`${r.values[0]}T00:00:00Z`) / 1000);
      const at = shown.indexOf(r.values[1]);
      const series = at >= 0 ? at : labels.length - 1;
      if (day >= 0 && series >= 0) values[series][day] += r.cost.usd;
    }
    const plot = new uPlot(
      {
        width: Math.max(box.current!.clientWidth, 320),
        height: 220,
        series: [
          {},
          ...labels.map((label, i) => ({
            label: label || "(none)",
            stroke: palette(i),
            width: 2,
            value: (_: uPlot, v: number | null) => (v == null ? "" : `$${v.toFixed(2)}`),
          })),
        ],
        axes: [{ stroke: "currentColor" }, { stroke: "currentColor", size: 70, values: (_: uPlot, ticks: number[]) => ticks.map((t) => `$${t}`) }],
      },
      [x, ...values],
      box.current!,
    );
    return () => plot.destroy();
  }, [report, dimension]);
  return (
    <figure class="chart" data-test="cost-chart">
      <figcaption>Spend per day (UTC), by {dimension}</figcaption>
      <div ref={box} />
    </figure>
  );
}

function Forecasts({ month, budgets }: { month: CostReport; budgets: TenantSpending[] }) {
  const now = new Date();
  const spent = new Map(month.rows.map((r) => [r.values[0], r.cost.usd]));
  const tenants = [...new Set([...spent.keys(), ...budgets.filter((b) => b.budget.usdPerMonth).map((b) => b.tenant)])].sort();
  if (!tenants.length) return <p class="empty">Nothing spent this month.</p>;
  return (
    <table data-test="cost-forecast">
      <thead>
        <tr>
          <th>tenant</th>
          <th>this month so far</th>
          <th>month-end forecast</th>
          <th>monthly budget</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {tenants.map((tenant) => {
          const so_far = spent.get(tenant) ?? 0;
          const ahead = forecast(so_far, now);
          const budget = budgets.find((b) => b.tenant === tenant)?.budget.usdPerMonth;
          const over = budget !== undefined && ahead > budget;
          return (
            <tr data-test="forecast-row" data-tenant={tenant} class={over ? "over" : ""}>
              <td>{tenant}</td>
              <td>{money(so_far)}</td>
              <td data-test="forecast">{money(ahead)}</td>
              <td>{budget === undefined ? "—" : money(budget)}</td>
              <td data-test="forecast-verdict">
                {budget === undefined ? "" : over ? `over by ${money(ahead - budget)}` : `within, ${money(budget - ahead)} to spare`}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export function CostPage() {
  const [since, setSince] = useState("");
  const [dimension, setDimension] = useState("repo");
  const [daily, setDaily] = useState<CostReport | null>(null);
  const [month, setMonth] = useState<CostReport | null>(null);
  const [budgets, setBudgets] = useState<TenantSpending[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    const range = since ? `&since=${since}` : "";
    get<CostReport>(`/cost?by=day&by=${dimension}${range}`).then(
      (r) => {
        setDaily(r);
        setError("");
      },
      (e) => setError(e.message),
    );
  }, [since, dimension]);
  useEffect(() => {
    get<CostReport>("/cost?by=tenant").then(setMonth, (e) => setError(e.message));
    get<{ tenants: TenantSpending[] }>("/budgets").then((b) => setBudgets(b.tenants), () => setBudgets([]));
  }, []);
  const rows = new Map<string, CostRow>();
  for (const r of daily?.rows ?? []) {
    const key = r.values[1];
    const row = rows.get(key) ?? { values: [key], cost: { usd: 0, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 }, attempts: 0 };
    row.cost.usd += r.cost.usd;
    row.cost.inputTokens += r.cost.inputTokens;
    row.cost.outputTokens += r.cost.outputTokens;
    row.cost.cacheReadTokens += r.cost.cacheReadTokens;
    row.cost.cacheCreationTokens += r.cost.cacheCreationTokens;
    row.attempts += r.attempts;
    rows.set(key, row);
  }
  const table = [...rows.values()].sort((a, b) => b.cost.usd - a.cost.usd);
  return (
    <div class="cost">
      <h1>Cost</h1>
      <div class="filters">
        <label>
          over{" "}
          <select value={since} onChange={(e) => setSince((e.target as HTMLSelectElement).value)} data-test="cost-since">
            {PERIODS.map(([value, label]) => (
              <option value={value}>{label}</option>
            ))}
          </select>
        </label>{" "}
        <label>
          by{" "}
          <select value={dimension} onChange={(e) => setDimension((e.target as HTMLSelectElement).value)} data-test="cost-by">
            {DIMENSIONS.map((d) => (
              <option value={d}>{d}</option>
            ))}
          </select>
        </label>
      </div>
      {error && <p class="error" data-test="error">{error}</p>}
      {daily && (
        <>
          <p data-test="cost-total">
            {daily.since} to {daily.until} (UTC): <strong>{usd(daily.total) || "$0"}</strong>, {tokens(daily.total)} tokens ({daily.total.cacheReadTokens} cache reads,{" "}
            {daily.total.cacheCreationTokens} cache writes), {daily.attempts} attempts
          </p>
          <DailyChart report={daily} dimension={dimension} />
          <table data-test="cost-table">
            <thead>
              <tr>
                <th>{dimension}</th>
                <th>cost</th>
                <th>tokens</th>
                <th>cache reads</th>
                <th>cache writes</th>
                <th>attempts</th>
              </tr>
            </thead>
            <tbody>
              {table.map((r) => (
                <tr data-test="cost-row" data-key={r.values[0]}>
                  <td>{r.values[0] || "—"}</td>
                  <td>{money(r.cost.usd)}</td>
                  <td>{tokens(r.cost)}</td>
                  <td>{r.cost.cacheReadTokens}</td>
                  <td>{r.cost.cacheCreationTokens}</td>
                  <td>{r.attempts}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      <h2>This month against the budgets</h2>
      {month && <Forecasts month={month} budgets={budgets} />}
    </div>
  );
}
