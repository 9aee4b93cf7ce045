// tidewright's console: the app shell (sign-in, navigation, the page by route).
// Routes live in the URL's hash (#/tasks/ID), so the server serves one page.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";

import { ApiError, Session, call, get, rememberCsrf, whenSignedOut } from "./api";
import { Overview } from "./overview";
import { TaskList } from "./tasks";
import { TaskPage } from "./task";
import { AgentsPage, AuditPage, StatePage } from "./pages";
import { LandingsPage } from "./landings";
import { CostPage } from "./cost";
import { EvalsPage } from "./evals";
import { RepositoriesPage } from "./repositories";
import { SchedulesPage } from "./schedules";
import { TemplatesPage } from "./templates";
import { SeedsPage } from "./seeds";
import { WebhooksPage } from "./webhooks";
import "./style.css";

/// The route in the hash: its path's parts, and its query.
function useRoute(): [string[], URLSearchParams] {
  const read = (): [string[], URLSearchParams] => {
    const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
    return [path.split("/").filter(Boolean).map(decodeURIComponent), new URLSearchParams(search ?? "")];
  };
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState("");
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const session = await call<Session>("POST", "/session", JSON.stringify({ token }));
      onSignedIn(session);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
  };
  return (
    <form class="sign-in" onSubmit={submit} data-test="sign-in">
      <h1>tidewright</h1>
      <p>Paste a tidewright token or a JWT.</p>
      <textarea
        name="token"
        rows={3}
        value={token}
        onInput={(e) => setToken((e.target as HTMLTextAreaElement).value)}
        autofocus
      />
      <button type="submit" disabled={!token.trim()}>
        Sign in
      </button>
      {error && <p class="error" data-test="sign-in-error">{error}</p>}
    </form>
  );
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [route, params] = useRoute();
  const signedIn = (s: Session) => {
    rememberCsrf(s.csrfToken);
    setSession(s);
  };
  useEffect(() => {
    whenSignedOut(() => setSession(null));
    get<Session>("/session").then(signedIn, () => setSession(null));
  }, []);
  if (session === undefined) return <p class="loading">Loading…</p>;
  if (session === null) return <SignIn onSignedIn={signedIn} />;
  // The pages go first, and their reads with them; the session ends once
  // they are gone, so no read of theirs meets a session already ended.
  const signOut = () => {
    setSession(null);
    setTimeout(() => call("DELETE", "/session").catch(() => {}), 0);
  };
  const [page, id] = route;
  const admin = session.role === "admin";
  const nav = [
    ["", "Overview"],
    ["tasks", "Tasks"],
    ["landings", "Landings"],
    ["evals", "Evals"],
    ["cost", "Cost"],
    ["repositories", "Repositories"],
    ["seeds", "Seeds"],
    ["agents", "Agents"],
    ["templates", "Templates"],
    ["schedules", "Schedules"],
    ["state", "State"],
    ...(admin ? [["webhooks", "Webhooks"], ["audit", "Audit"]] : []),
  ];
  const current = page === "task" ? "tasks" : page ?? "";
  return (
    <>
      <header>
        <a class="brand" href="#/">
          tidewright
        </a>
        <nav>
          {nav.map(([path, label]) => (
            <a href={`#/${path}`} class={current === path ? "current" : ""}>
              {label}
            </a>
          ))}
        </nav>
        <span class="who" data-test="who">
          {session.name} · {session.role}
        </span>
        <button class="link" onClick={signOut} data-test="sign-out">
          Sign out
        </button>
      </header>
      <main>
        {page === "tasks" && !id && <TaskList params={params} key={params.toString()} />}
        {(page === "tasks" || page === "task") && id && <TaskPage id={id} session={session} key={id} />}
        {page === "landings" && <LandingsPage />}
        {page === "evals" && <EvalsPage />}
        {page === "cost" && <CostPage />}
        {page === "repositories" && <RepositoriesPage url={params.get("url") ?? undefined} key={params.toString()} />}
        {page === "seeds" && <SeedsPage repo={params.get("repo") ?? undefined} key={params.toString()} />}
        {page === "agents" && <AgentsPage />}
        {page === "templates" && <TemplatesPage name={id} session={session} key={id ?? ""} />}
        {page === "schedules" && (
          <SchedulesPage name={id} tenant={params.get("tenant") ?? undefined} session={session} key={`${id ?? ""}/${params.get("tenant") ?? ""}`} />
        )}
        {page === "state" && <StatePage session={session} />}
        {page === "webhooks" && admin && <WebhooksPage />}
        {page === "audit" && admin && <AuditPage />}
        {!page && <Overview />}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
