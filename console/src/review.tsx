// A reviewer's step (`review:` on the step it reviews): its last verdict,
// approved or changes requested, with its comments on lines beside the
// reviewed step's diff, and each round's verdict in order.
import { Step, Task } from "./api";
import { Changes } from "./changes";

/// What a reviewer answered (its step's output).
interface Verdict {
  verdict: "approve" | "request_changes";
  summary?: string;
  comments?: { path: string; line: number; body: string }[];
}

export function Review({ task, step }: { task: Task; step: Step }) {
  if (!step.reviewOf) return null;
  const reviewed = task.steps?.find((s) => s.id === step.reviewOf);
  const verdict = step.output as Verdict | undefined;
  const rounds = (step.attempts ?? []).filter((a) => a.error?.startsWith("changes requested"));
  return (
    <section class="review" data-test="review">
      <h3>
        Review of step {step.reviewOf} by <code>{step.runtime}</code>{" "}
        {verdict?.verdict && (
          <span class={`badge state-${verdict.verdict === "approve" ? "succeeded" : "failed"}`} data-test="verdict">
            {verdict.verdict === "approve" ? "approved" : "changes requested"}
          </span>
        )}
      </h3>
      {verdict?.summary && <p data-test="review-summary">{verdict.summary}</p>}
      {!!verdict?.comments?.length && (
        <ul class="comments" data-test="comments">
          {verdict.comments.map((c) => (
            <li data-test="comment">
              <code>
                {c.path}:{c.line}
              </code>{" "}
              {c.body}
            </li>
          ))}
        </ul>
      )}
      {rounds.length > 0 && (
        <details data-test="rounds">
          <summary>{rounds.length} round(s) of changes requested before</summary>
          <ol>
            {rounds.map((a) => (
              <li>{a.error}</li>
            ))}
          </ol>
        </details>
      )}
      {reviewed && <Changes task={task} step={reviewed} />}
    </section>
  );
}
