// A page per repository: its landing queues, the pull requests its tasks
// opened (followed or not, merged or not), its recent landings, and the
// rounds of fixes each took; read from the newest tasks (GET /tasks, the
// repository's own read whole) and the queues (GET /landings), again every
// 2 s. Without a repository, the list of
// those the newest tasks work on.
import { useEffect, useState } from "preact/hooks";

import { LandingQueue, Step, Task, duration, get } from "./api";

/** How many of the newest tasks the page reads; of a repository's, how
 * many it reads whole. */
const NEWEST = 200;
const WHOLE = 50;

/** The deliver step's attempts that ended in a verdict sent back to an
 * agent: a failed landing, or a failed look at a followed pull request. */
function fixRounds(deliver: Step): number {
  const verdicts = (deliver.attempts ?? []).filter(
    (a) =>
      a.state === "failed" &&
      (a.error?.startsWith("landing on ") || a.error?.startsWith("pull request ")) &&
      a.verification?.checks.some((c) => !c.passed),
  ).length;
  const lastEnded = deliver.state === "failed" ? 1 : 0;
  return Math.max(0, verdicts - lastEnded);
}

function deliverOf(task: Task): Step | undefined {
  return task.steps?.find((s) => s.id === "deliver");
}

function output(step: Step): Record<string, unknown> {
  return (step.output ?? {}) as Record<string, unknown>;
}

function short(commit: unknown): string {
  return typeof commit === "string" ? commit.slice(0, 12) : "";
}

export function RepositoriesPage({ url }: { url?: string }) {
  const [tasks, setTasks] = useState<Task[] | undefined>(undefined);
  const [queues, setQueues] = useState<LandingQueue[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    // The list has each task's repository, not its steps: a repository's
    // own newest tasks are read whole.
    const whole = async (listed: Task[]) =>
      url
        ? Promise.all(
            listed
              .filter((t) => t.repo?.url === url)
              .slice(0, WHOLE)
              .map((t) => get<Task>(`/tasks/${encodeURIComponent(t.id)}`)),
          )
        : listed;
    const load = () =>
      Promise.all([
        get<{ tasks: Task[] }>(`/tasks?pageSize=${NEWEST}`).then((page) => whole(page.tasks)),
        get<{ queues: LandingQueue[] }>("/landings"),
      ]).then(
        ([listed, landings]) => {
          setTasks(listed);
          setQueues(landings.queues);
          setError("");
        },
        (e) => setError(String(e.message)),
      );
    load();
    const timer = window.setInterval(load, 2000);
    return () => clearInterval(timer);
  }, [url]);
  if (error) return <p class="error">{error}</p>;
  if (!tasks) return <p class="loading">Loading…</p>;
  const onRepo = tasks.filter((t) => t.repo);
  if (!url) {
    const urls = [...new Set(onRepo.map((t) => t.repo!.url))].sort();
    return (
      <div>
        <h2>Repositories</h2>
        {urls.length === 0 && <p data-test="no-repositories">No recent task works on a repository.</p>}
        <ul>
          {urls.map((u) => (
            <li data-test="repository">
              <a href={`#/repositories?url=${encodeURIComponent(u)}`}>{u}</a> ·{" "}
              {onRepo.filter((t) => t.repo!.url === u).length} task(s)
            </li>
          ))}
        </ul>
      </div>
    );
  }
  const mine = onRepo.filter((t) => t.repo!.url === url);
  const pulls = mine
    .map((t) => ({ task: t, deliver: deliverOf(t) }))
    .filter(({ deliver }) => deliver?.work?.pullRequestUrl);
  const landed = mine
    .map((t) => ({ task: t, deliver: deliverOf(t) }))
    .filter(({ deliver, task }) => {
      if (!deliver) return false;
      const out = output(deliver);
      const failed = deliver.state === "failed" && (task.repo?.land || task.repo?.pullRequestFollowed);
      return (deliver.state === "succeeded" && (out.landed || out.merged)) || failed;
    })
    .slice(0, 20);
  const ownQueues = queues.filter((q) => q.repoUrl === url);
  return (
    <div>
      <h2 data-test="repository-url">{url}</h2>
      <section data-test="repository-queue">
        <h3>Landing queue</h3>
        {ownQueues.length === 0 && <p>No task is landing or waiting to land.</p>}
        {ownQueues.map((q) => (
          <p>
            <span class="base">{q.base}</span>:{" "}
            {q.tasks.map((t, i) => (
              <span>
                {i > 0 && ", "}
                {i + 1}. {t.taskId ? <a href={`#/tasks/${t.taskId}`}>{t.taskName ?? t.taskId}</a> : "another tenant's"}{" "}
                ({t.landing ? "landing" : "waiting"}, {duration(t.since)})
              </span>
            ))}
          </p>
        ))}
      </section>
      <section>
        <h3>Pull requests</h3>
        <table>
          <thead>
            <tr>
              <th>pull request</th>
              <th>task</th>
              <th>state</th>
              <th>fix rounds</th>
            </tr>
          </thead>
          <tbody>
            {pulls.map(({ task, deliver }) => {
              const merged = output(deliver!).merged;
              const state = merged
                ? `merged at ${short(merged)}`
                : deliver!.state === "running"
                  ? task.repo?.pullRequestMerge
                    ? `open, followed; merged by tidewright (${task.repo.pullRequestMerge}) once green`
                    : "open, followed"
                  : deliver!.state === "failed"
                    ? `not merged: ${deliver!.error ?? ""}`
                    : "open";
              return (
                <tr data-test="pull-request">
                  <td>
                    <a href={deliver!.work!.pullRequestUrl}>{deliver!.work!.pullRequestUrl}</a>
                  </td>
                  <td>
                    <a href={`#/tasks/${task.id}`}>{task.name}</a>
                  </td>
                  <td>{state}</td>
                  <td>{fixRounds(deliver!)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </section>
      <section>
        <h3>Recent landings</h3>
        <table>
          <thead>
            <tr>
              <th>task</th>
              <th>outcome</th>
              <th>commit</th>
              <th>fix rounds</th>
              <th>took</th>
            </tr>
          </thead>
          <tbody>
            {landed.map(({ task, deliver }) => {
              const out = output(deliver!);
              const commit = out.landed ?? out.merged;
              return (
                <tr data-test="landing-outcome">
                  <td>
                    <a href={`#/tasks/${task.id}`}>{task.name}</a>
                  </td>
                  <td>{deliver!.state === "succeeded" ? (out.merged ? "merged" : "landed") : `failed: ${deliver!.error ?? ""}`}</td>
                  <td>{short(commit)}</td>
                  <td>{fixRounds(deliver!)}</td>
                  <td>{duration(task.createdAt, task.finishedAt)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </section>
    </div>
  );
}
