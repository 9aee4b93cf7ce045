// The landing queues: for each repository and base, the task landing now,
// then those waiting their turn, live (GET /landings, every 2 s).
import { useEffect, useState } from "preact/hooks";

import { LandingQueue, duration, get } from "./api";

export function LandingsPage() {
  const [queues, setQueues] = useState<LandingQueue[] | undefined>(undefined);
  const [error, setError] = useState("");
  useEffect(() => {
    const load = () =>
      get<{ queues: LandingQueue[] }>("/landings").then(
        (answer) => {
          setQueues(answer.queues);
          setError("");
        },
        (e) => setError(String(e.message)),
      );
    load();
    const timer = window.setInterval(load, 2000);
    return () => clearInterval(timer);
  }, []);
  return (
    <div>
      <h2>Landings</h2>
      {error && <p class="error">{error}</p>}
      {queues?.length === 0 && <p data-test="no-landings">No task is landing or waiting to land.</p>}
      {queues?.map((q) => (
        <section data-test="landing-queue">
          <h3>
            {q.repoUrl} · <span class="base">{q.base}</span>
          </h3>
          <table>
            <thead>
              <tr>
                <th>place</th>
                <th>task</th>
                <th>name</th>
                <th>tenant</th>
                <th>state</th>
                <th>for</th>
              </tr>
            </thead>
            <tbody>
              {q.tasks.map((t, i) => (
                <tr data-test="landing" class={t.landing ? "landing" : "waiting"}>
                  <td>{i + 1}</td>
                  <td>{t.taskId ? <a href={`#/tasks/${t.taskId}`}>{t.taskId}</a> : "another tenant's"}</td>
                  <td>{t.taskName}</td>
                  <td>{t.tenant}</td>
                  <td>{t.landing ? "landing" : "waiting"}</td>
                  <td>{duration(t.since)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      ))}
    </div>
  );
}
