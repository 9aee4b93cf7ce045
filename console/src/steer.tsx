// Steering a running agent step from its page: a message into its
// session (POST /tasks/{id}/steps/{step}/steer), into the turn under way
// or, with "after this turn", as the next turn's prompt. The message and
// the agent's reply show in the step's log as its events come.

import { useState } from "preact/hooks";
import { ApiError, Step, call } from "./api";

/// The runtimes whose steps run an agent's session (the server says
/// which of them take a message while they run).
const AGENTS = ["claude-code", "codex", "gemini-cli"];

export const steerable = (step: Step) => step.state === "running" && (AGENTS.includes(step.runtime) || step.runtime.startsWith("agent"));

export function Steer({ taskId, step }: { taskId: string; step: Step }) {
  const [message, setMessage] = useState("");
  const [followUp, setFollowUp] = useState(false);
  const [busy, setBusy] = useState(false);
  const [said, setSaid] = useState("");
  const [error, setError] = useState("");
  const send = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    try {
      const sent = await call<{ attempt: number; delivery: string }>(
        "POST",
        `/tasks/${taskId}/steps/${step.id}/steer`,
        JSON.stringify({ message, followUp }),
      );
      setSaid(`Sent to attempt ${sent.attempt}, ${sent.delivery}.`);
      setError("");
      setMessage("");
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
      setSaid("");
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="steer" onSubmit={send} data-test="steer">
      <h3>Steer the agent</h3>
      <textarea
        value={message}
        onInput={(e) => setMessage((e.target as HTMLTextAreaElement).value)}
        placeholder="A message for the agent, e.g. Use the v2 API instead."
        maxLength={16384}
        rows={3}
        data-test="steer-message"
      />
      <label>
        <input type="checkbox" checked={followUp} onChange={(e) => setFollowUp((e.target as HTMLInputElement).checked)} data-test="steer-follow-up" />{" "}
        after this turn
      </label>
      <button type="submit" disabled={busy || !message.trim()} data-test="steer-send">
        Send
      </button>
      {said && (
        <p class="sent" data-test="steer-sent">
          {said}
        </p>
      )}
      {error && (
        <p class="error" data-test="steer-error">
          {error}
        </p>
      )}
    </form>
  );
}
