// A step run as several attempts (`attempts:`): the attempts side by side,
// each with its runtime, how it ended, its rounds, its cost and time, and
// its diff; the one the step chose marked, and why it was chosen.
import { Step, Task, duration, usd } from "./api";
import { Changes } from "./changes";

/// The attempts of the step that chose among them (`fix.1`, `fix.2`, …),
/// in order; none for any other step.
export function attemptsOf(task: Task, step: Step): Step[] {
  if (step.runtime !== "choose") return [];
  const prefix = `${step.id}.`;
  return (task.steps ?? []).filter((s) => s.id.startsWith(prefix) && /^\d+$/.test(s.id.slice(prefix.length)));
}

export function Attempts({ task, step }: { task: Task; step: Step }) {
  const attempts = attemptsOf(task, step);
  if (!attempts.length) return null;
  const chosen = step.state === "succeeded" ? step.work?.headCommit : undefined;
  return (
    <section class="rivals" data-test="rivals">
      <h3>Its attempts, side by side</h3>
      {step.progressMessage && <p data-test="choice">{step.progressMessage}</p>}
      <div class="rival-grid" style={{ display: "grid", gridTemplateColumns: `repeat(${attempts.length}, minmax(0, 1fr))`, gap: "1em" }}>
        {attempts.map((a) => {
          const won = chosen !== undefined && a.work?.headCommit === chosen;
          const rounds = (a.attempts ?? []).filter((t) => t.verification).length;
          return (
            <div class={`rival${won ? " won" : ""}`} data-test="rival" data-step={a.id}>
              <h4>
                {a.id} <code>{a.runtime}</code> <span class={`badge state-${a.state}`}>{a.state}</span>{" "}
                {won && (
                  <span class="badge state-succeeded" data-test="chosen">
                    chosen
                  </span>
                )}
              </h4>
              <dl class="facts">
                <dt>rounds</dt>
                <dd>{rounds || "—"}</dd>
                <dt>cost</dt>
                <dd>{usd(a.cost) || "—"}</dd>
                <dt>ran</dt>
                <dd>{duration(a.startedAt, a.finishedAt) || "—"}</dd>
              </dl>
              {a.error && <p class="error">{a.error}</p>}
              <Changes task={task} step={a} />
            </div>
          );
        })}
      </div>
    </section>
  );
}
