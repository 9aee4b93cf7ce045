// A step's work on its task's repository: its branch, head and diff stat,
// and its diff, drawn by diff2html from the unified diff the control plane
// keeps with the step's branch.
import { useEffect, useState } from "preact/hooks";
import { html } from "diff2html";
import "diff2html/bundles/css/diff2html.min.css";

import { Step, Task, Work, get } from "./api";

/// The deliver step's work: the task's branch, pushed or not, and its pull
/// request.
export function delivered(task: Task): Work | undefined {
  return task.steps?.find((s) => s.runtime === "deliver")?.work;
}

export function Changes({ task, step }: { task: Task; step: Step }) {
  const work = step.work;
  const [diff, setDiff] = useState<string | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    setDiff(null);
    setError("");
    if (!work) return;
    get<{ diff: string }>(`/tasks/${task.id}/steps/${encodeURIComponent(step.id)}/diff`).then(
      (d) => setDiff(d.diff),
      (e) => setError(e.message),
    );
  }, [task.id, step.id, work?.headCommit]);
  if (!work) return null;
  return (
    <section class="changes" data-test="changes">
      <h3>Changes</h3>
      <p data-test="work">
        <code>{work.branch}</code> at <code>{work.headCommit.slice(0, 12)}</code>: {work.filesChanged} files, +
        {work.insertions} −{work.deletions}
        {work.committedByTidewright ? " (tidewright committed what it left)" : ""}
      </p>
      {error && <p class="error">{error}</p>}
      {diff === null && !error && <p class="loading">Loading the diff…</p>}
      {diff === "" && <p class="empty">No changes of its own.</p>}
      {diff && (
        // diff2html escapes the diff's text into its markup.
        <div
          class="diff"
          data-test="diff"
          dangerouslySetInnerHTML={{ __html: html(diff, { drawFileList: true, outputFormat: "line-by-line", matching: "lines" }) }}
        />
      )}
    </section>
  );
}
