// Session replay on a step's page: the agent's session as a timeline
// (GET /tasks/{id}/steps/{step}/replay), turn by turn: what it was told,
// what it said, each tool call with its input and output, and around them
// the step's states, verify rounds (with what each changed), steering and
// failovers, with the cost so far. A live step's is read again as its
// events come. It exports as JSON and as one self-contained HTML file.

import { useEffect, useState } from "preact/hooks";
import { html } from "diff2html";
import { Step, Task, get } from "./api";
import { useThrottled } from "./hooks";

/// The runtimes whose steps run an agent's session.
const AGENTS = ["claude-code", "codex", "gemini-cli", "qwen-code"];
export const hasSession = (step: Step) => AGENTS.includes(step.runtime) || step.runtime.startsWith("agent");

interface Entry {
  time: string;
  attempt: number;
  turn: number;
  usd: number;
  kind: "prompt" | "text" | "call" | "state" | "verification" | "steered" | "failedOver";
  text?: string;
  id?: string;
  tool?: string;
  input?: string;
  output?: string;
  error?: boolean;
  state?: string;
  worker?: string;
  message?: string;
  round?: number;
  passed?: boolean;
  from?: string;
  to?: string;
  delivery?: string;
  reason?: string;
}

interface Replay {
  taskId: string;
  entries: Entry[];
  diff: string;
}

/// `{"command":"ls"}` laid out on lines when it is JSON.
function pretty(input: string): string {
  try {
    return JSON.stringify(JSON.parse(input), null, 2);
  } catch {
    return input;
  }
}

function What({ e, step }: { e: Entry; step: Step }) {
  switch (e.kind) {
    case "prompt":
      return (
        <>
          <b>told</b>
          <pre>{e.text}</pre>
        </>
      );
    case "text":
      return (
        <>
          <b>said</b>
          <pre>{e.text}</pre>
        </>
      );
    case "call":
      return (
        <>
          <b>
            called <code data-test="replay-tool">{e.tool}</code>
          </b>
          <details>
            <summary>input</summary>
            <pre data-test="replay-input">{pretty(e.input ?? "")}</pre>
          </details>
          {e.output === undefined ? (
            <p class="empty">no output yet</p>
          ) : (
            <details open>
              <summary>{e.error ? "output (failed)" : "output"}</summary>
              <pre data-test="replay-output">{e.output}</pre>
            </details>
          )}
        </>
      );
    case "state":
      return (
        <span>
          step {e.state}
          {e.worker ? ` on ${e.worker}` : ""}
          {e.message ? `: ${e.message}` : ""}
        </span>
      );
    case "verification": {
      // What the round changed since the round before, as its attempt keeps it.
      const diff = step.attempts?.find((a) => a.verification?.round === e.round)?.verification?.roundDiff;
      return (
        <>
          <span>
            <b>verify round {e.round}</b> {e.passed ? "passed" : "failed"}: {e.message}
          </span>
          {diff && (
            <details>
              <summary>what the round changed</summary>
              {/* diff2html escapes the diff's text into its markup. */}
              <div
                class="diff"
                data-test="replay-round-diff"
                dangerouslySetInnerHTML={{ __html: html(diff, { drawFileList: false, outputFormat: "line-by-line", matching: "lines" }) }}
              />
            </details>
          )}
        </>
      );
    }
    case "steered":
      return (
        <>
          <b>
            steered by {e.from} ({e.delivery})
          </b>
          <pre>{e.message}</pre>
        </>
      );
    case "failedOver":
      return (
        <span>
          failed over from {e.from} to {e.to}: {e.reason}
        </span>
      );
  }
}

export function ReplayPanel({ task, step, version }: { task: Task; step: Step; version: number }) {
  const [open, setOpen] = useState(false);
  const [replay, setReplay] = useState<Replay | null>(null);
  const [error, setError] = useState("");
  const path = `/tasks/${task.id}/steps/${step.id}/replay`;
  const load = () =>
    get<Replay>(path).then(
      (r) => {
        setReplay(r);
        setError("");
      },
      (e) => setError(e.message),
    );
  const loadSoon = useThrottled(load, 500);
  useEffect(() => {
    if (open) load();
  }, [open, task.id, step.id]);
  // A live step's session grows as its events come.
  useEffect(() => {
    if (open) loadSoon();
  }, [version, step.state]);
  if (!hasSession(step)) return null;
  let last = "";
  return (
    <section class="replay" data-test="replay">
      <h3>
        Session replay{" "}
        <button class="link" onClick={() => setOpen(!open)} data-test="replay-toggle">
          {open ? "hide" : "show"}
        </button>{" "}
        <a href={`/api/v1${path}?format=html`} target="_blank" rel="noopener" data-test="replay-export-html">
          HTML
        </a>{" "}
        <a href={`/api/v1${path}`} download={`replay-${task.id}-${step.id}.json`} data-test="replay-export-json">
          JSON
        </a>
      </h3>
      {error && <p class="error">{error}</p>}
      {open && replay && !replay.entries.length && <p class="empty">Nothing in its session yet.</p>}
      {open &&
        replay?.entries.map((e) => {
          const turn = `${e.attempt}/${e.turn}`;
          const head = turn !== last && e.turn > 0;
          last = turn;
          return (
            <>
              {head && (
                <h4 class="turn" data-test="replay-turn">
                  attempt {e.attempt}, turn {e.turn}
                </h4>
              )}
              <div class={`entry ${e.kind}${e.error || e.passed === false ? " failed" : ""}`} data-test="replay-entry" data-kind={e.kind}>
                <div class="meta">
                  {new Date(e.time).toLocaleTimeString()} · ${e.usd.toFixed(4)} so far
                </div>
                <What e={e} step={step} />
              </div>
            </>
          );
        })}
    </section>
  );
}
