//! The client itself: one connection to the control plane (to the replica
//! that leads, found among several and followed through a failover), its
//! stubs with the caller's token, and the task calls; the other calls add
//! their methods in `decisions`, `schedules`, `state` and `webhooks`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tidewright_api::client::Bearer;
use tidewright_api::leader::Replicas;
use tidewright_api::v1::agent_service_client::AgentServiceClient;
use tidewright_api::v1::state_service_client::StateServiceClient;
use tidewright_api::v1::task_service_client::TaskServiceClient;

use tidewright_core::TaskSpec;

use tidewright_api::v1;

use crate::config::{Overrides, Settings};
use crate::error::{self, Error};
use crate::stubs::{AgentStub, StateStub, TaskStub};
use crate::watch::{self, WatchOptions};

/// A task's events, as [`Client::watch`] yields them.
pub type EventStream = BoxStream<'static, Result<v1::Event, Error>>;

/// Tasks, a page at a time, as [`Client::list`] yields them.
pub type TaskStream = BoxStream<'static, Result<v1::Task, Error>>;

/// Calls `method` of the `stub` with `request`, again while the control
/// plane answers UNAVAILABLE (see `Client::retrying`): for calls that are
/// safe to repeat.
macro_rules! retried {
    ($client:expr, $stub:ident, $method:ident, $request:expr) => {{
        let request = $request;
        $client
            .retrying(|| {
                let mut stub = $client.$stub.clone();
                let request = request.clone();
                async move { stub.$method(request).await }
            })
            .await
    }};
}

/// The request for one task, under the caller's key or a fresh one.
pub(crate) fn submit_request(task: Submit) -> v1::SubmitTaskRequest {
    v1::SubmitTaskRequest {
        spec: Some(task.spec),
        idempotency_key: task
            .idempotency_key
            .unwrap_or_else(|| ulid::Ulid::new().to_string()),
        tenant: task.tenant,
    }
}

/// How long a client looks for the replica that leads, among several.
const FIND_LEADER: Duration = Duration::from_secs(10);

/// How long a call the control plane could not answer (a failover: the
/// leader died, a standby is taking over) is tried again, by default.
pub const RETRY_UNAVAILABLE: Duration = Duration::from_secs(30);

/// Parses a task file: YAML in the shape of the `Task` resource's spec. A
/// mistake names its field and line.
pub fn parse_task(text: &str) -> Result<TaskSpec, Error> {
    if text.trim().is_empty() {
        return Err(Error::Config("the task file is empty".into()));
    }
    serde_yaml::from_str(text).map_err(|e| Error::Config(e.to_string()))
}

/// Reads and parses a task file.
pub fn load_task(path: &Path) -> Result<TaskSpec, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
    parse_task(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// A task to submit, with its idempotency key and tenant.
#[derive(Debug, Clone, Default)]
pub struct Submit {
    pub spec: v1::TaskSpec,
    /// The same key returns the same task, however often it is sent. `None`
    /// gets a fresh key, so the client's own retries still make one task.
    pub idempotency_key: Option<String>,
    /// The tenant; `""` for the token's first.
    pub tenant: String,
}

impl Submit {
    pub fn new(spec: impl Into<Submit>) -> Submit {
        spec.into()
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Submit {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn tenant(mut self, tenant: impl Into<String>) -> Submit {
        self.tenant = tenant.into();
        self
    }
}

impl From<TaskSpec> for Submit {
    fn from(spec: TaskSpec) -> Submit {
        Submit::from(v1::TaskSpec::from(&spec))
    }
}

impl From<&TaskSpec> for Submit {
    fn from(spec: &TaskSpec) -> Submit {
        Submit::from(v1::TaskSpec::from(spec))
    }
}

impl From<v1::TaskSpec> for Submit {
    fn from(spec: v1::TaskSpec) -> Submit {
        Submit {
            spec,
            ..Submit::default()
        }
    }
}

/// A server's template to run: its name, parameters, idempotency key and
/// tenant, as [`Client::submit_template`] takes them.
#[derive(Debug, Clone, Default)]
pub struct TemplateRun {
    pub name: String,
    /// Each value as text (`-p key=value`); the server checks its type.
    pub parameters: HashMap<String, String>,
    /// As [`Submit::idempotency_key`].
    pub idempotency_key: Option<String>,
    pub tenant: String,
}

impl TemplateRun {
    pub fn new(name: impl Into<String>) -> TemplateRun {
        TemplateRun {
            name: name.into(),
            ..TemplateRun::default()
        }
    }

    pub fn parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> TemplateRun {
        self.parameters.insert(name.into(), value.into());
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> TemplateRun {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn tenant(mut self, tenant: impl Into<String>) -> TemplateRun {
        self.tenant = tenant.into();
        self
    }
}

/// What a submit answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub task_id: String,
    /// False when the key matched a task made before.
    pub created: bool,
    /// The key the task was submitted under (the caller's, or a fresh one).
    pub idempotency_key: String,
}

/// A connection to the control plane (to the replica that leads, among
/// several), carrying the caller's token. Cheap to clone; clones share
/// the connection.
#[derive(Clone)]
pub struct Client {
    // The other calls' modules (`decisions`, `state`, …) use the stubs.
    pub(crate) tasks: TaskStub,
    pub(crate) state: StateStub,
    pub(crate) agents: AgentStub,
    replicas: Replicas,
    retry_for: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.replicas.current())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects as `settings` say; with several replicas, to the one that
    /// leads.
    pub async fn connect(settings: Settings) -> Result<Client, Error> {
        let bearer = Bearer::new(settings.token.as_deref())?;
        let replicas = Replicas::new(&settings.server, &settings.tls)?;
        replicas.find_leader(FIND_LEADER).await;
        replicas.connect().await.map_err(|e| Error::Unreachable {
            server: if replicas.len() > 1 {
                settings.server.clone()
            } else {
                replicas.current()
            },
            reason: tidewright_api::client::innermost_cause(&e),
        })?;
        Ok(Client {
            tasks: TaskServiceClient::with_interceptor(replicas.clone(), bearer.clone()),
            state: StateServiceClient::with_interceptor(replicas.clone(), bearer.clone()),
            agents: AgentServiceClient::with_interceptor(replicas.clone(), bearer),
            replicas,
            retry_for: RETRY_UNAVAILABLE,
        })
    }

    /// Connects as the CLI would with `overrides`: they, then the config
    /// file's context, then the defaults.
    pub async fn from_config(overrides: &Overrides) -> Result<Client, Error> {
        Client::connect(Settings::resolve(overrides)?).await
    }

    /// Connects as the CLI would with only its `TIDEWRIGHT_*` variables set.
    pub async fn from_env() -> Result<Client, Error> {
        Client::from_config(&Overrides::from_env()).await
    }

    /// How long calls that are safe to repeat are tried again while the
    /// control plane answers UNAVAILABLE; zero for never.
    pub fn retry_unavailable_for(mut self, patience: Duration) -> Client {
        self.retry_for = patience;
        self
    }

    /// The replica this client talks to now.
    pub fn server(&self) -> String {
        self.replicas.current()
    }

    /// The generated stubs, for calls this crate does not wrap.
    pub fn task_stub(&self) -> TaskStub {
        self.tasks.clone()
    }

    pub fn state_stub(&self) -> StateStub {
        self.state.clone()
    }

    pub fn agent_stub(&self) -> AgentStub {
        self.agents.clone()
    }

    /// Runs `call` again while it fails as UNAVAILABLE, with back-off;
    /// only for calls that are safe to repeat.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(100);
        loop {
            match call().await.map_err(error::as_reached) {
                Err(status)
                    if status.code() == tonic::Code::Unavailable
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                answered => return Ok(answered?.into_inner()),
            }
        }
    }

    /// Submits a task. Without a key of the caller's, a fresh one is
    /// made, so a submit whose answer was lost (the leader died after
    /// committing) is sent again, to the next leader, and still makes one
    /// task.
    pub async fn submit(&self, task: impl Into<Submit>) -> Result<Submitted, Error> {
        let request = submit_request(task.into());
        let idempotency_key = request.idempotency_key.clone();
        let answer = retried!(self, tasks, submit_task, request)?;
        Ok(Submitted {
            task_id: answer.task_id,
            created: answer.created,
            idempotency_key,
        })
    }

    /// Submits several tasks in one call (`SubmitTasks`): all are made, or
    /// none, and a refusal names its task's index (`tasks[2].spec.name`).
    /// One call for many tasks is how a program reaches the control plane's
    /// batched rate; the answers are in the order of `tasks`. Each task
    /// gets its own key as in [`Client::submit`], so a batch sent again
    /// after a lost answer makes each task once. The control plane takes
    /// at most 1,000 tasks a call, and refuses more naming `tasks`.
    pub async fn submit_many<T: Into<Submit>>(
        &self,
        tasks: impl IntoIterator<Item = T>,
    ) -> Result<Vec<Submitted>, Error> {
        let request = v1::SubmitTasksRequest {
            tasks: tasks
                .into_iter()
                .map(|task| submit_request(task.into()))
                .collect(),
        };
        let keys: Vec<String> = request
            .tasks
            .iter()
            .map(|t| t.idempotency_key.clone())
            .collect();
        let answer = retried!(self, tasks, submit_tasks, request)?;
        Ok(answer
            .tasks
            .into_iter()
            .zip(keys)
            .map(|(answer, idempotency_key)| Submitted {
                task_id: answer.task_id,
                created: answer.created,
                idempotency_key,
            })
            .collect())
    }

    /// The task templates the server offers: its built-in set and its
    /// `--templates-dir`.
    pub async fn templates(&self) -> Result<Vec<v1::TaskTemplate>, Error> {
        let answer = retried!(self, tasks, list_templates, v1::ListTemplatesRequest {})?;
        Ok(answer.templates)
    }

    /// Has the server render one of its templates and submit the task it
    /// makes. An unknown, missing or mistyped parameter is refused naming
    /// it (`parameters.NAME`), before anything is stored; the idempotency
    /// key works as [`Client::submit`]'s.
    pub async fn submit_template(&self, run: TemplateRun) -> Result<Submitted, Error> {
        let idempotency_key = run
            .idempotency_key
            .unwrap_or_else(|| ulid::Ulid::new().to_string());
        let request = v1::SubmitTemplateRequest {
            name: run.name,
            parameters: run.parameters,
            idempotency_key: idempotency_key.clone(),
            tenant: run.tenant,
        };
        let answer = retried!(self, tasks, submit_template, request)?;
        Ok(Submitted {
            task_id: answer.task_id,
            created: answer.created,
            idempotency_key,
        })
    }

    /// Submits a task and waits for it to end; answers the ended task.
    pub async fn submit_and_wait(&self, task: impl Into<Submit>) -> Result<v1::Task, Error> {
        let submitted = self.submit(task).await?;
        self.wait(&submitted.task_id).await
    }

    /// Waits for a task to end (succeed, fail or be cancelled), through
    /// broken connections, and answers it whole. Bound it with
    /// `tokio::time::timeout` to wait for less.
    pub async fn wait(&self, task_id: &str) -> Result<v1::Task, Error> {
        let mut events = self.watch(task_id);
        while let Some(event) = events.next().await {
            event?;
        }
        self.get(task_id).await
    }

    /// A task's events, from its first, live until it ends. The stream
    /// resumes after a broken connection from the last sequence number it
    /// handed out, so nothing is missed or seen twice; it ends after the
    /// task's final event, or with [`Error::StreamLost`] when the control
    /// plane stays out of reach for a minute.
    pub fn watch(&self, task_id: &str) -> EventStream {
        self.watch_with(task_id, WatchOptions::default())
    }

    /// [`Client::watch`], starting after a sequence number, or only over
    /// the stored events.
    pub fn watch_with(&self, task_id: &str, options: WatchOptions) -> EventStream {
        watch::events(self.tasks.clone(), task_id, options).boxed()
    }

    /// One task, whole, with its steps.
    pub async fn get(&self, task_id: &str) -> Result<v1::Task, Error> {
        let request = v1::GetTaskRequest {
            task_id: task_id.to_string(),
        };
        retried!(self, tasks, get_task, request)
    }

    /// Cancels a task: running steps are stopped. Cancelling an ended task
    /// answers it as it ended.
    pub async fn cancel(&self, task_id: &str) -> Result<v1::Task, Error> {
        let request = v1::CancelTaskRequest {
            task_id: task_id.to_string(),
        };
        retried!(self, tasks, cancel_task, request)
    }

    /// Runs a failed or cancelled task's unfinished steps again; the steps
    /// that succeeded keep their results. Not repeated on UNAVAILABLE: a
    /// second retry of a task already running again is refused.
    pub async fn retry(&self, task_id: &str) -> Result<v1::Task, Error> {
        let request = v1::RetryTaskRequest {
            task_id: task_id.to_string(),
        };
        Ok(self.tasks.clone().retry_task(request).await?.into_inner())
    }

    /// One page of tasks, newest first; `page_token` comes from the
    /// previous page (`""` for the first).
    pub async fn list_page(
        &self,
        filter: &v1::ListTasksRequest,
        page_token: &str,
    ) -> Result<v1::ListTasksResponse, Error> {
        let request = v1::ListTasksRequest {
            page_token: page_token.to_string(),
            ..filter.clone()
        };
        retried!(self, tasks, list_tasks, request)
    }

    /// Every task `filter` selects, newest first, fetched a page
    /// (`filter.page_size`) at a time as the stream is read. Steps are
    /// omitted; [`Client::get`] has them.
    pub fn list(&self, filter: v1::ListTasksRequest) -> TaskStream {
        struct Pages {
            client: Client,
            filter: v1::ListTasksRequest,
            /// `None` once the last page is read.
            next: Option<String>,
            page: std::vec::IntoIter<v1::Task>,
        }
        let pages = Pages {
            client: self.clone(),
            filter,
            next: Some(String::new()),
            page: Vec::new().into_iter(),
        };
        futures::stream::unfold(pages, |mut pages| async move {
            loop {
                if let Some(task) = pages.page.next() {
                    return Some((Ok(task), pages));
                }
                let token = pages.next.take()?;
                match pages.client.list_page(&pages.filter, &token).await {
                    Ok(page) => {
                        pages.next = Some(page.next_page_token).filter(|t| !t.is_empty());
                        pages.page = page.tasks.into_iter();
                    }
                    Err(e) => return Some((Err(e), pages)),
                }
            }
        })
        .boxed()
    }

    /// Asks the planner to turn a prompt into steps, without running them.
    pub async fn plan(&self, spec: &TaskSpec, tenant: &str) -> Result<v1::PlanTaskResponse, Error> {
        let request = v1::PlanTaskRequest {
            spec: Some(v1::TaskSpec::from(spec)),
            tenant: tenant.to_string(),
        };
        Ok(self.tasks.clone().plan_task(request).await?.into_inner())
    }

    /// The audit log, after a sequence number.
    pub async fn audit(
        &self,
        after_seq: u64,
        page_size: u32,
    ) -> Result<Vec<v1::AuditEvent>, Error> {
        let request = v1::ListAuditRequest {
            after_seq,
            page_size,
        };
        let answer = retried!(self, tasks, list_audit, request)?;
        Ok(answer.events)
    }

    /// Each base's landing queue holding a task of `tenants` (all the
    /// caller may see when none), in order.
    pub async fn landings(&self, tenants: Vec<String>) -> Result<Vec<v1::LandingQueue>, Error> {
        let request = v1::ListLandingsRequest { tenants };
        let answer = retried!(self, tasks, list_landings, request)?;
        Ok(answer.queues)
    }

    /// The connected workers.
    pub async fn agents(&self) -> Result<Vec<v1::Agent>, Error> {
        Ok(self.fleet().await?.agents)
    }

    /// The connected workers, the queue, and the workers that left lately.
    pub async fn fleet(&self) -> Result<v1::ListAgentsResponse, Error> {
        retried!(self, agents, list_agents, v1::ListAgentsRequest {})
    }

    /// The control plane's replicas, and which one leads.
    pub async fn servers(&self) -> Result<Vec<v1::ControlPlaneServer>, Error> {
        let answer = retried!(self, agents, list_servers, v1::ListServersRequest {})?;
        Ok(answer.servers)
    }
}
