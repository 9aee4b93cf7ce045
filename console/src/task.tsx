// One task: its DAG laid out by dagre, each node live; a step's panel with
// its log tail, attempts, output and ids; cancel and retry; approve or
// reject the steps waiting at their gates.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import dagre from "@dagrejs/dagre";

import { ApiError, Mark, Session, Step, Task, TaskEvent, call, duration, follow, millis, get, terminal, tokens, usd, when } from "./api";
import { Progress } from "./tasks";
import { html } from "diff2html";
import { Changes, delivered } from "./changes";
import { Attempts } from "./attempts";
import { Review } from "./review";
import { useThrottled } from "./hooks";
import { Children, ParentLink } from "./family";
import { Steer, steerable } from "./steer";
import { ReplayPanel } from "./replay";

/// Lines kept per step; the page shows the newest and more on request.
const KEPT_LINES = 5000;
const SHOWN_LINES = 300;

interface LogLine {
  seq: number;
  attempt: number;
  stream: string;
  line: string;
}

export function TaskPage({ id, session }: { id: string; session: Session }) {
  const [task, setTask] = useState<Task | null>(null);
  const [error, setError] = useState("");
  const [selected, setSelected] = useState<string | null>(null);
  // Log lines per step, in a ref: thousands arrive, the page redraws once
  // per frame.
  const logs = useRef<Map<string, LogLine[]>>(new Map());
  const [logVersion, setLogVersion] = useState(0);
  const frame = useRef<number | null>(null);
  const lastSeq = useRef(0);
  const [following, setFollowing] = useState(0);
  // Per step, what its events said of touches and conflicts.
  const [marks, setMarks] = useState<Map<string, Mark>>(new Map());

  const load = () =>
    get<Task>(`/tasks/${id}`).then(
      (t) => {
        setTask(t);
        setError("");
      },
      (e) => setError(e.message),
    );
  const loadSoon = useThrottled(load, 300);

  useEffect(() => {
    load();
  }, [id]);

  useEffect(() => {
    const onEvent = (event: TaskEvent) => {
      lastSeq.current = event.seq;
      // An item of an agent's session: its replay reads the session again.
      if (event.type === "sessionItem") {
        if (frame.current === null) {
          frame.current = requestAnimationFrame(() => {
            frame.current = null;
            setLogVersion((v) => v + 1);
          });
        }
        return;
      }
      const told = ["log", "egress", "verification", "setup", "steered"].includes(event.type);
      if (told && event.step) {
        const lines = logs.current.get(event.step) ?? [];
        // A connection the step asked of its egress proxy, a verified
        // step's round and its setup, read as lines of their own streams
        // among the step's output.
        const line =
          event.type === "egress"
            ? `egress ${event.allowed ? "allowed" : "refused"} ${event.destination ?? ""}${event.reason ? `: ${event.reason}` : ""}`
            : event.type === "verification"
              ? (event.message ?? "")
              : event.type === "setup"
                ? `setup: ${event.setup?.summary ?? ""}`
                : event.type === "steered"
                  ? `steered by ${event.from ?? ""} (${event.delivery ?? ""}): ${event.message ?? ""}`
                  : (event.line ?? "");
        const stream = event.type === "log" ? (event.stream ?? "stdout") : event.type;
        lines.push({ seq: event.seq, attempt: event.attempt ?? 0, stream, line });
        if (lines.length > KEPT_LINES) lines.splice(0, lines.length - KEPT_LINES);
        logs.current.set(event.step, lines);
        if (frame.current === null) {
          frame.current = requestAnimationFrame(() => {
            frame.current = null;
            setLogVersion((v) => v + 1);
          });
        }
        // A setup is its attempt's too: the task is read again for it.
        if (event.type !== "setup") return;
      }
      if (event.type === "progress") {
        setTask((t) =>
          t && {
            ...t,
            steps: t.steps?.map((s) =>
              s.id === event.step ? { ...s, progress: event.fraction ?? s.progress, progressMessage: event.message } : s,
            ),
          },
        );
        return;
      }
      if (event.type === "stepState" && event.step) {
        const id = event.step;
        setMarks((before) => {
          const next = new Map(before);
          const mark = { ...(before.get(id) ?? {}) };
          // A wait lasts until the step's next event; a conflict is kept.
          mark.waitsFor = event.waitsFor;
          if (event.conflict) mark.conflict = event.conflict;
          next.set(id, mark);
          return next;
        });
      }
      loadSoon();
      // The last event of a finished task: the server ends the stream, and
      // a reconnect would find nothing; a retry follows again.
      if (event.type === "taskState" && event.state && terminal(event.state)) stop();
    };
    const stop = follow(`/tasks/${id}/events?after=${lastSeq.current}`, onEvent);
    return stop;
  }, [id, following]);

  if (error && !task) return <p class="error" data-test="error">{error}</p>;
  if (!task) return <p class="loading">Loading…</p>;
  const steps = task.steps ?? [];
  const step = steps.find((s) => s.id === selected);
  const canChange = session.role !== "viewer";
  const act = async (action: "cancel" | "retry") => {
    try {
      setTask(await call<Task>("POST", `/tasks/${id}/${action}`));
      setError("");
      if (action === "retry") setFollowing((n) => n + 1);
    } catch (e) {
      setError(e instanceof ApiError ? `${e.message}` : String(e));
    }
  };
  return (
    <div class="task">
      <div class="task-head">
        <h1>
          {task.name || task.id} <span class={`badge state-${task.state}`} data-test="task-state">{task.state}</span>
        </h1>
        <div class="actions">
          {canChange && !terminal(task.state) && (
            <button onClick={() => act("cancel")} data-test="cancel">
              Cancel
            </button>
          )}
          {canChange && (task.state === "failed" || task.state === "cancelled") && (
            <button onClick={() => act("retry")} data-test="retry">
              Retry
            </button>
          )}
        </div>
      </div>
      {error && <p class="error" data-test="error">{error}</p>}
      <dl class="facts">
        <dt>id</dt>
        <dd>{task.id}</dd>
        <dt>tenant</dt>
        <dd>{task.tenant}</dd>
        <ParentLink task={task} />
        {task.labels && (
          <>
            <dt>labels</dt>
            <dd>
              {Object.entries(task.labels)
                .map(([k, v]) => `${k}=${v}`)
                .join(", ")}
            </dd>
          </>
        )}
        <dt>created</dt>
        <dd>{when(task.createdAt)}</dd>
        <dt>duration</dt>
        <dd>{duration(task.startedAt, terminal(task.state) ? task.finishedAt : undefined)}</dd>
        {task.expiresAt && (
          <>
            <dt>expires</dt>
            <dd data-test="task-expires">{when(task.expiresAt)}</dd>
          </>
        )}
        <dt>cost</dt>
        <dd data-test="task-cost">
          {usd(task.cost) || "—"} {task.cost ? `(${tokens(task.cost)} tokens)` : ""}
        </dd>
        {task.traceId && (
          <>
            <dt>trace id</dt>
            <dd>{task.traceId}</dd>
          </>
        )}
        {task.message && (
          <>
            <dt>message</dt>
            <dd>{task.message}</dd>
          </>
        )}
        {task.repo && (
          <>
            <dt>repository</dt>
            <dd data-test="repo">
              {task.repo.url} at {task.repo.ref || "its default branch"}, commit <code>{task.repo.commit.slice(0, 12)}</code>
            </dd>
          </>
        )}
        {delivered(task) && (
          <>
            <dt>branch</dt>
            <dd data-test="branch">
              <code>{delivered(task)!.branch}</code> at <code>{delivered(task)!.headCommit.slice(0, 12)}</code>
              {delivered(task)!.pushed ? ", pushed" : ""}
            </dd>
          </>
        )}
        {delivered(task)?.pullRequestUrl && (
          <>
            <dt>pull request</dt>
            <dd>
              <a href={delivered(task)!.pullRequestUrl} data-test="pull-request">
                {delivered(task)!.pullRequestUrl}
              </a>
            </dd>
          </>
        )}
      </dl>
      {steps
        .filter((s) => s.state === "awaiting_approval" && s.approval)
        .map((s) => (
          <Gate
            key={s.id}
            step={s}
            session={session}
            onDecided={(t) => {
              setTask(t);
              setError("");
            }}
            onError={setError}
            taskId={task.id}
          />
        ))}
      <Graph steps={steps} marks={marks} selected={selected} onSelect={setSelected} />
      {step && (
        <StepPanel step={step} task={task} mark={marks.get(step.id)} lines={logs.current.get(step.id) ?? []} version={logVersion} canChange={canChange} />
      )}
      <Children task={task} />
    </div>
  );
}

/// A step waiting for approval: what is asked, of whom, until when; and,
/// for a caller among its approvers, the decision with a reason.
function Gate({
  step,
  session,
  taskId,
  onDecided,
  onError,
}: {
  step: Step;
  session: Session;
  taskId: string;
  onDecided: (task: Task) => void;
  onError: (message: string) => void;
}) {
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const approval = step.approval!;
  const mayDecide = approval.approvers.some((a) => a === session.name || a === session.role);
  const decide = async (verdict: "approve" | "reject") => {
    setBusy(true);
    try {
      const path = `/tasks/${taskId}/steps/${encodeURIComponent(step.id)}/${verdict}`;
      onDecided(await call<Task>("POST", path, JSON.stringify({ reason })));
    } catch (e) {
      onError(e instanceof ApiError ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="gate" data-test="gate" data-step={step.id}>
      <p>
        <strong>{step.id}</strong> waits for approval by {approval.approvers.join(" or ")}
        {approval.deadline ? `, until ${when(approval.deadline)}` : ""}.
      </p>
      {approval.message && <p class="asked">{approval.message}</p>}
      {mayDecide ? (
        <div class="actions">
          <input
            placeholder="reason (required to reject)"
            value={reason}
            onInput={(e) => setReason((e.target as HTMLInputElement).value)}
            data-test="gate-reason"
          />
          <button disabled={busy} onClick={() => decide("approve")} data-test="approve">
            Approve
          </button>
          <button disabled={busy || !reason.trim()} onClick={() => decide("reject")} data-test="reject">
            Reject
          </button>
        </div>
      ) : (
        <p class="empty" data-test="gate-not-yours">
          You ({session.name}, {session.role}) are not among its approvers.
        </p>
      )}
    </section>
  );
}

const NODE_WIDTH = 170;
const NODE_HEIGHT = 52;

/// The waits a step's events said: for a sibling whose touches may
/// overlap its own, while it is queued.
const waiting = (step: Step, mark?: Mark) => (step.state === "queued" ? mark?.waitsFor : undefined);

/// The steps as a graph, left to right, laid out by dagre; a step that
/// waits for another's touches is dashed, with a dashed line to that one,
/// and one whose dependencies' work conflicted is marked so.
function Graph({
  steps,
  marks,
  selected,
  onSelect,
}: {
  steps: Step[];
  marks: Map<string, Mark>;
  selected: string | null;
  onSelect: (id: string) => void;
}) {
  const shape = steps.map((s) => `${s.id}<${(s.after ?? []).join(",")}`).join(";");
  const layout = useMemo(() => {
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 60, marginx: 10, marginy: 10 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const s of steps) g.setNode(s.id, { width: NODE_WIDTH, height: NODE_HEIGHT });
    for (const s of steps) for (const before of s.after ?? []) g.setEdge(before, s.id);
    dagre.layout(g);
    const nodes = new Map(g.nodes().map((n) => [n, g.node(n)]));
    const edges = g.edges().map((e) => g.edge(e).points);
    return { nodes, edges, width: g.graph().width ?? 0, height: g.graph().height ?? 0 };
  }, [shape]);
  return (
    <div class="graph">
      <svg width={layout.width} height={layout.height} data-test="dag">
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">
            <path d="M0,0 L10,5 L0,10 z" class="arrow" />
          </marker>
        </defs>
        {layout.edges.map((points) => (
          <path class="edge" d={points.map((p, i) => `${i ? "L" : "M"}${p.x},${p.y}`).join(" ")} marker-end="url(#arrow)" />
        ))}
        {steps.map((s) => {
          const holder = layout.nodes.get(waiting(s, marks.get(s.id)) ?? "");
          const node = layout.nodes.get(s.id);
          if (!holder || !node) return null;
          return <path class="edge-waits" d={`M${holder.x},${holder.y} L${node.x},${node.y}`} data-waits={`${s.id}<${waiting(s, marks.get(s.id))}`} />;
        })}
        {steps.map((s) => {
          const node = layout.nodes.get(s.id);
          if (!node) return null;
          const x = node.x - NODE_WIDTH / 2;
          const y = node.y - NODE_HEIGHT / 2;
          const fraction = s.state === "succeeded" ? 1 : s.progress || 0;
          const waitsFor = waiting(s, marks.get(s.id));
          const conflict = marks.get(s.id)?.conflict;
          return (
            <g
              class={`node state-${s.state} ${selected === s.id ? "selected" : ""} ${waitsFor ? "waits" : ""} ${conflict ? "conflicted" : ""}`}
              transform={`translate(${x},${y})`}
              onClick={() => onSelect(s.id)}
              data-step={s.id}
              data-state={s.state}
              data-waits-for={waitsFor}
              data-conflict={conflict ? conflict.with : undefined}
            >
              <rect width={NODE_WIDTH} height={NODE_HEIGHT} rx="6" />
              <text x="10" y="20" class="node-id">
                {s.id}
              </text>
              <text x="10" y="38" class="node-state">
                {s.state}
                {s.attempt > 1 ? ` · attempt ${s.attempt}` : ""} ·{" "}
                {waitsFor ? `waits for ${waitsFor}` : conflict ? "conflict" : s.runtime}
              </text>
              <rect class="node-progress" x="0" y={NODE_HEIGHT - 4} height="4" width={NODE_WIDTH * fraction} rx="2" />
            </g>
          );
        })}
      </svg>
    </div>
  );
}

function StepPanel({
  step,
  task,
  mark,
  lines,
  version,
  canChange,
}: {
  step: Step;
  task: Task;
  mark?: Mark;
  lines: LogLine[];
  version: number;
  canChange: boolean;
}) {
  const [shown, setShown] = useState(SHOWN_LINES);
  const [followTail, setFollowTail] = useState(true);
  const tail = useRef<HTMLPreElement>(null);
  useEffect(() => {
    if (followTail && tail.current) tail.current.scrollTop = tail.current.scrollHeight;
  }, [version, followTail, step.id]);
  const visible = lines.slice(-shown);
  const hidden = lines.length - visible.length;
  const session = [...(step.attempts ?? [])].reverse().find((a) => a.sessionId)?.sessionId;
  return (
    <section class="step-panel" data-test="step-panel">
      <h2>
        {step.id} <span class={`badge state-${step.state}`}>{step.state}</span>
      </h2>
      {step.progress > 0 && step.state === "running" && (
        <p>
          <Progress fraction={step.progress} /> {step.progressMessage}
        </p>
      )}
      {step.error && <p class="error">{step.error}</p>}
      {step.chosen && (
        <p class="runtime-chosen" data-test="runtime-chosen">
          Runs on <code>{step.runtime}</code>: {step.chosen.why}
        </p>
      )}
      {step.failover && (
        <div class="failover" data-test="failover">
          <p>
            Failed over from <code>{step.failover.from}</code> to <code>{step.runtime}</code> after attempt{" "}
            {step.failover.afterAttempt}
            {step.failover.head ? `, with its work at ${step.failover.head.slice(0, 12)}` : ""}: {step.failover.reason}
          </p>
          {step.failover.summary && (
            <details>
              <summary>What the agent before did, as the next was told</summary>
              <pre>{step.failover.summary}</pre>
            </details>
          )}
        </div>
      )}
      {step.queuedReason && (
        <p class="waits" data-test="queued-reason">
          Waits: {step.queuedReason}
        </p>
      )}
      {waiting(step, mark) && (
        <p class="waits" data-test="waits">
          Waits for step {waiting(step, mark)}: the paths they touch may overlap.
        </p>
      )}
      {mark?.conflict && (
        <p class="conflict" data-test="conflict">
          The work of step {mark.conflict.with} conflicted with that of {mark.conflict.after.join(", ")} in{" "}
          {mark.conflict.paths.map((p) => (
            <code>{p} </code>
          ))}
        </p>
      )}
      <dl class="facts">
        <dt>session id</dt>
        <dd data-test="session-id">{session ?? "—"}</dd>
        <dt>trace id</dt>
        <dd>{task.traceId || "—"}</dd>
        <dt>cost</dt>
        <dd>{usd(step.cost) || "—"}</dd>
      </dl>
      <Changes task={task} step={step} />
      <Attempts task={task} step={step} />
      <Review task={task} step={step} />
      <h3>Attempts</h3>
      <table data-test="attempts">
        <thead>
          <tr>
            <th>#</th>
            <th>worker</th>
            <th>state</th>
            <th>started</th>
            <th>ran</th>
            <th>reason</th>
            <th>model</th>
            <th>cost</th>
            <th>setup</th>
          </tr>
        </thead>
        <tbody>
          {(step.attempts ?? []).map((a) => (
            <tr>
              <td>{a.attempt}</td>
              <td>{a.worker}</td>
              <td>
                <span class={`badge state-${a.state}`}>{a.state}</span>
              </td>
              <td>{when(a.startedAt)}</td>
              <td>{duration(a.startedAt, a.finishedAt)}</td>
              <td>{a.error ?? (a.exitCode !== undefined ? `exit ${a.exitCode}` : "")}</td>
              <td>{a.model}</td>
              <td>{usd(a.cost)}</td>
              <td data-test="attempt-setup" title={a.setup?.summary}>
                {a.setup ? `${a.setup.failed ? "failed" : `${a.setup.source} ${a.setup.method ?? ""}`} ${millis(a.setup.millis)}` : ""}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <Rounds step={step} />
      <ReplayPanel task={task} step={step} version={version} />
      <h3>
        Log{" "}
        <label class="follow">
          <input type="checkbox" checked={followTail} onChange={(e) => setFollowTail((e.target as HTMLInputElement).checked)} /> follow
        </label>
      </h3>
      {hidden > 0 && (
        <button class="link" onClick={() => setShown(shown + SHOWN_LINES)} data-test="load-more">
          Show {Math.min(hidden, SHOWN_LINES)} earlier lines ({hidden} not shown)
        </button>
      )}
      <pre class="log" ref={tail} data-test="log">
        {visible.map((l) => (
          <div class={`line ${l.stream} ${l.line.startsWith("tool: ") ? "tool" : ""}`} key={l.seq}>
            {l.line.startsWith("tool: ") ? <ToolCall line={l.line} /> : l.line}
          </div>
        ))}
        {!lines.length && <span class="empty">No log lines.</span>}
      </pre>
      {canChange && steerable(step) && <Steer taskId={task.id} step={step} />}
      {step.output !== undefined && (
        <>
          <h3>Output</h3>
          <pre class="output" data-test="output">
            {JSON.stringify(step.output, null, 2)}
          </pre>
        </>
      )}
    </section>
  );
}

/// A verified step's rounds, newest first: each one's checks on the commit
/// they ran on, the grader's verdict on its rubric, what was flagged, and
/// the end of each failing check's output and the grader's reasons.
function Rounds({ step }: { step: Step }) {
  const rounds = (step.attempts ?? []).filter((a) => a.verification).reverse();
  if (!rounds.length) return null;
  return (
    <section class="rounds" data-test="rounds">
      <h3>Verify rounds</h3>
      {rounds.map((a) => {
        const v = a.verification!;
        const flagged = [
          v.protectedPaths?.length ? `changed protected paths: ${v.protectedPaths.join(", ")}` : "",
          v.testsRemoved ? `${v.testsRemoved} tests removed` : "",
          v.skipsAdded ? `${v.skipsAdded} skips added` : "",
        ].filter((f) => f);
        return (
          <details class="round" data-test="round" open={a === rounds[0]}>
            <summary>
              Round {v.round} (attempt {a.attempt}) on <code>{v.headCommit.slice(0, 12)}</code>:{" "}
              {v.checks.map((c) => (
                <span class={`badge state-${c.passed ? "succeeded" : "failed"}`}>
                  {c.name} {c.passed ? "passed" : c.exitCode !== undefined ? `failed (exit ${c.exitCode})` : "failed"}
                </span>
              ))}
              {v.grade && (
                <span class={`badge state-${v.grade.verdict === "pass" ? "succeeded" : "failed"}`} data-test="grade">
                  rubric {v.grade.verdict === "pass" ? "passed" : "needs revision"}
                </span>
              )}
              {flagged.map((f) => (
                <span class="flag"> {f}</span>
              ))}
            </summary>
            {v.checks
              .filter((c) => !c.passed)
              .map((c) => (
                <>
                  <p>
                    {c.name}: {c.trouble || `exit ${c.exitCode}`}, {c.millis} ms. The end of its output:
                  </p>
                  <pre class="log" data-test="check-tail">
                    {c.tail}
                  </pre>
                </>
              ))}
            {v.grade && (
              <>
                <p>
                  The grader ({v.grade.model}, {v.grade.millis} ms
                  {v.grade.cost ? `, $${v.grade.cost.usd.toFixed(4)}` : ""}) found it{" "}
                  {v.grade.verdict === "pass" ? "meets the rubric" : "needs revision"}:
                </p>
                <ul class="reasons" data-test="grade-reasons">
                  {v.grade.reasons.map((r) => (
                    <li>{r}</li>
                  ))}
                </ul>
              </>
            )}
            {v.roundDiff && (
              <>
                <p>What this round changed since the round before:</p>
                {/* diff2html escapes the diff's text into its markup. */}
                <div
                  class="diff"
                  data-test="round-diff"
                  dangerouslySetInnerHTML={{ __html: html(v.roundDiff, { drawFileList: false, outputFormat: "line-by-line", matching: "lines" }) }}
                />
              </>
            )}
          </details>
        );
      })}
    </section>
  );
}

/// A Claude tool call, as the worker writes it: `tool: NAME key=value`.
function ToolCall({ line }: { line: string }) {
  const rest = line.slice("tool: ".length);
  const space = rest.indexOf(" ");
  const name = space < 0 ? rest : rest.slice(0, space);
  const what = space < 0 ? "" : rest.slice(space + 1);
  return (
    <>
      <span class="tool-name" data-test="tool-call">
        {name}
      </span>{" "}
      {what}
    </>
  );
}
