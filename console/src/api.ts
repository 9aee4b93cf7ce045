// The HTTP API under /api/v1, as the console uses it: JSON calls with the
// session cookie (and the CSRF token on changes), and server-sent events.

export interface Cost {
  usd: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens: number;
}

export interface Attempt {
  attempt: number;
  worker: string;
  state: string;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number;
  error?: string;
  sessionId?: string;
  model?: string;
  cost?: Cost;
  /// A verified step's round: what its checks found on this attempt.
  verification?: Verification;
  /// What its repository's setup did before its process ran.
  setup?: SetupReport;
}

/// What a step's setup did on one attempt: its seed, from where ("ran",
/// "worker", "store", "checkout"), how ("overlay", "reflink", "copy"),
/// and how long.
export interface SetupReport {
  seed?: string;
  source: string;
  method?: string;
  millis: number;
  runMillis: number;
  files: number;
  bytes: number;
  failed?: boolean;
  note?: string;
  /// All of it in one line, as the server says it.
  summary: string;
}

/// One round of a verified step's checks, on the commit they ran on.
export interface Verification {
  round: number;
  headCommit: string;
  checks: Check[];
  protectedPaths?: string[];
  testsRemoved?: number;
  skipsAdded?: number;
  /// What the round changed since the round before, as a unified diff.
  roundDiff?: string;
  /// The rubric's grade, when the step has a rubric and its checks passed.
  grade?: Grade;
}

/// A grader's verdict on a round's work against the step's rubric.
export interface Grade {
  verdict: "pass" | "needs_revision";
  reasons: string[];
  model: string;
  cost?: Cost;
  millis: number;
}

export interface Check {
  name: string;
  passed: boolean;
  exitCode?: number;
  trouble?: string;
  millis: number;
  /// The end of its output, secrets masked.
  tail: string;
}

export interface Step {
  id: string;
  runtime: string;
  after?: string[];
  state: string;
  attempt: number;
  worker?: string;
  startedAt?: string;
  finishedAt?: string;
  progress: number;
  progressMessage?: string;
  /// While queued: why no connected worker can run it, and what would.
  queuedReason?: string;
  exitCode?: number;
  output?: unknown;
  error?: string;
  cost?: Cost;
  attempts?: Attempt[];
  approval?: Approval;
  work?: Work;
  /// Its move to a fallback runtime (`runtime` is where it went).
  failover?: Failover;
  /// The step it reviews, when it is a reviewer's (its output is the last
  /// verdict).
  reviewOf?: string;
  /// The runtime `runtimes: auto` chose for it (`runtime` is that one).
  chosen?: Chosen;
}

/// Why `runtimes: auto` chose a step's runtime.
export interface Chosen {
  /// Its runtime as submitted.
  preferred: string;
  /// Why, with each runtime's figures on the repository.
  why: string;
}

/// An agent step's move to a fallback runtime when a provider's limit
/// paused its own.
export interface Failover {
  from: string;
  preferred: string;
  afterAttempt: number;
  reason: string;
  /// The commit of the work it carried.
  head?: string;
  /// What the agent before did, as the next agent was told.
  summary?: string;
}

/// What a step did to its task's repository.
export interface Work {
  branch: string;
  baseCommit: string;
  headCommit: string;
  filesChanged: number;
  insertions: number;
  deletions: number;
  changedPaths: string[];
  committedByTidewright: boolean;
  pushed?: boolean;
  pullRequestUrl?: string;
}

/// A step's gate: who may decide, what they are asked, until when.
export interface Approval {
  message?: string;
  approvers: string[];
  timeoutSeconds?: number;
  deadline?: string;
}

export interface Task {
  id: string;
  tenant: string;
  name: string;
  state: string;
  priority: number;
  labels?: Record<string, string>;
  message?: string;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  expiresAt?: string;
  cost?: Cost;
  traceId?: string;
  prompt?: string;
  steps?: Step[];
  repo?: Repo;
}

/// A task's repository: where, which ref, the commit it resolved to.
export interface Repo {
  url: string;
  ref?: string;
  commit: string;
  push?: boolean;
  pullRequestTitle?: string;
  /** The pull request is followed until it merges or closes. */
  pullRequestFollowed?: boolean;
  /** How tidewright merges it once green: auto, squash, rebase. */
  pullRequestMerge?: string;
  /** How it lands through its base's queue, when it does. */
  land?: { method: string; base?: string; checks: string[] };
}

export interface Agent {
  id: string;
  name: string;
  pool: string;
  capabilities: string[];
  slots: number;
  running: number;
  connectedAt?: string;
  peer: string;
  /** How its steps are isolated: "bubblewrap 0.8.0: …", or "none (--sandbox=off)". */
  isolation: string;
}

export interface Fleet {
  agents: Agent[];
  queue: { capabilities: string[]; queued: number }[];
  /** The build of the control plane that answered. */
  server?: { version: string; commit: string; builtAt?: string };
}

/** A base's landing queue: the task landing now first, then those waiting. */
export interface LandingQueue {
  repoUrl: string;
  base: string;
  tasks: {
    /** Left out for another tenant's task, which shows only its place. */
    taskId?: string;
    taskName?: string;
    tenant?: string;
    landing: boolean;
    since?: string;
  }[];
}

export interface Minute {
  start: string;
  submitted: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  dispatched: number;
  dispatchP50Ms: number;
  dispatchP99Ms: number;
  spend: ({ model: string } & Partial<Cost>)[];
}

export interface AuditRecord {
  seq: number;
  time: string;
  actor: string;
  role: string;
  action: string;
  tenant: string;
  taskId: string;
  outcome: string;
  detail?: string;
}

export interface Session {
  name: string;
  role: string;
  tenants: string[];
  csrfToken?: string;
}

/// One event of a task (or of the fleet, with its position).
export interface TaskEvent {
  taskId: string;
  seq: number;
  position?: number;
  time?: string;
  type: "taskState" | "stepState" | "progress" | "log" | "egress" | "verification" | "setup" | "steered" | "sessionItem" | "unknown";
  state?: string;
  step?: string;
  attempt?: number;
  worker?: string;
  message?: string;
  fraction?: number;
  stream?: string;
  line?: string;
  /// A step's: the step whose touches may overlap its own, which it
  /// waits for ("<task>/<step>" for another task's).
  waitsFor?: string;
  /// A step's: its dependencies' work that would not merge.
  conflict?: Conflict;
  /// A steered event's: who sent the message, and how it went in
  /// ("mid-turn", "after the turn").
  from?: string;
  delivery?: string;
  /// An egress event's: host:port, the verdict, and why it was refused.
  destination?: string;
  allowed?: boolean;
  reason?: string;
  /// A verification event's: the round, and whether its checks passed.
  round?: number;
  passed?: boolean;
  /// A setup event's: what the step's setup did.
  setup?: SetupReport;
}

/// `with`'s work would not merge with that of the steps `after` it.
export interface Conflict {
  with: string;
  after: string[];
  paths: string[];
}

/// What a step's events said that its row does not keep: a wait for
/// another's touches, a conflict among its dependencies' work.
export interface Mark {
  waitsFor?: string;
  conflict?: Conflict;
}

/// A refusal, as the API answers it: the HTTP status and the field named.
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public field?: string,
  ) {
    super(message);
  }
}

let csrfToken = "";

export function rememberCsrf(token: string | undefined) {
  csrfToken = token ?? "";
}

/// What the app does when a call finds no session (it shows the sign-in).
let onSignedOut: () => void = () => {};
export function whenSignedOut(handler: () => void) {
  onSignedOut = handler;
}

export async function call<T>(method: string, path: string, body?: string, contentType = "application/json"): Promise<T> {
  const headers: Record<string, string> = {};
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) headers["Content-Type"] = contentType;
  const response = await fetch(`/api/v1${path}`, { method, headers, body, credentials: "same-origin" });
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let json: any = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    // A proxy's page, not ours: its text says what went wrong.
  }
  if (!response.ok) {
    if (response.status === 401 && path !== "/session") onSignedOut();
    const error = json?.error;
    throw new ApiError(response.status, error?.message ?? (text || response.statusText), error?.field);
  }
  return json as T;
}

export const get = <T>(path: string) => call<T>("GET", path);

/// Follows a server-sent event stream; the browser reconnects by itself
/// and resumes after the last id. Returns what closes it.
export function follow(path: string, onEvent: (event: TaskEvent) => void, onStart?: (position: number) => void): () => void {
  const source = new EventSource(`/api/v1${path}`, { withCredentials: true });
  const kinds = ["taskState", "stepState", "progress", "log", "egress", "verification", "setup", "steered", "sessionItem"];
  for (const kind of kinds) {
    source.addEventListener(kind, (message) => onEvent(JSON.parse((message as MessageEvent).data)));
  }
  source.addEventListener("start", (message) => onStart?.(JSON.parse((message as MessageEvent).data).position));
  return () => source.close();
}

export const terminal = (state: string) => ["succeeded", "failed", "cancelled", "skipped"].includes(state);

export function query(params: Record<string, string | string[] | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one) search.append(name, one);
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export function duration(from?: string, to?: string): string {
  if (!from) return "";
  return millis((to ? Date.parse(to) : Date.now()) - Date.parse(from));
}

/// `850 ms`, `14 s`, `4 m 5 s`, `1 h 2 m`.
export function millis(ms: number): string {
  if (ms < 1000) return `${Math.max(ms, 0)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
}

export const usd = (cost?: Partial<Cost>) => (cost?.usd ? `$${cost.usd.toFixed(cost.usd < 1 ? 4 : 2)}` : "");

export const tokens = (cost?: Partial<Cost>) =>
  (cost?.inputTokens ?? 0) + (cost?.outputTokens ?? 0) + (cost?.cacheReadTokens ?? 0) + (cost?.cacheCreationTokens ?? 0);

// One formatter for every date shown: making one per call is what costs
// (a thousand rows took 800 ms that way).
const localTime = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
export const when = (time?: string) => (time ? localTime.format(new Date(time)) : "");

/// How far a task is: its steps' progress, finished steps counting whole.
export function taskProgress(task: Task): number | undefined {
  if (!task.steps?.length) return undefined;
  const done = task.steps.map((s) => (s.state === "succeeded" || s.state === "skipped" ? 1 : s.progress || 0));
  return done.reduce((a, b) => a + b, 0) / done.length;
}
