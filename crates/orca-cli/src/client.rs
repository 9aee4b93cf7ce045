//! The client commands: submit, get, logs, cancel, watch.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use orca_api::client::{Bearer, ClientTls};
use orca_api::leader::Replicas;
use orca_api::v1;
use orca_api::v1::agent_service_client::AgentServiceClient;
use orca_api::v1::task_service_client::TaskServiceClient;
use tonic::service::interceptor::InterceptedService;

use crate::args::{
    AuditArgs, CancelArgs, Format, GetArgs, GetWhat, LogsArgs, RetryArgs, SubmitArgs, WatchArgs,
};
use crate::watch::Out;
use crate::{output, taskfile, watch};

/// How long a command looks for the replica that leads, among several.
const FIND_LEADER: Duration = Duration::from_secs(10);

/// A channel to the control plane: with several replicas (`--server
/// a,b,c`), to the one that leads, and to the next leader on failover.
pub async fn channel(target: &Target) -> anyhow::Result<Replicas> {
    let replicas = Replicas::new(&target.server, &target.tls)?;
    replicas.find_leader(FIND_LEADER).await;
    replicas.connect().await.with_context(|| {
        if replicas.len() > 1 {
            format!(
                "cannot reach any of the control plane's replicas at {}",
                target.server
            )
        } else {
            format!(
                "cannot reach the control plane at {} (is `orca up` running?)",
                replicas.current()
            )
        }
    })?;
    Ok(replicas)
}

/// Where the client commands go, and the token they carry.
pub struct Target {
    pub server: String,
    pub bearer: Bearer,
    pub tls: ClientTls,
}

pub type Tasks = TaskServiceClient<InterceptedService<Replicas, Bearer>>;

pub async fn tasks(target: &Target) -> anyhow::Result<Tasks> {
    Ok(TaskServiceClient::with_interceptor(
        channel(target).await?,
        target.bearer.clone(),
    ))
}

/// One readable line for an error: a refused request shows its status code
/// and the server's message, which names the field.
pub fn describe(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            let code = match status.code() {
                tonic::Code::InvalidArgument => "invalid argument",
                tonic::Code::NotFound => "not found",
                tonic::Code::Unavailable => "unavailable",
                tonic::Code::PermissionDenied => "permission denied",
                tonic::Code::Unauthenticated => "unauthenticated",
                tonic::Code::ResourceExhausted => "resource exhausted",
                tonic::Code::FailedPrecondition => "failed precondition",
                tonic::Code::Aborted => "conflict",
                tonic::Code::DataLoss => "data loss",
                _ => "request failed",
            };
            return format!("{code}: {}", status.message());
        }
    }
    format!("{e:#}")
}

pub async fn submit(target: &Target, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let mut spec = match (&args.file, &args.prompt) {
        (Some(file), _) => taskfile::load(file)?,
        (None, Some(prompt)) => orca_core::TaskSpec {
            prompt: prompt.clone(),
            ..orca_core::TaskSpec::default()
        },
        (None, None) => bail!("give a task file (-f) or a prompt (-p)"),
    };
    spec.plan |= args.plan || args.plan_only;
    let mut client = tasks(target).await?;
    if args.plan_only {
        let response = client
            .plan_task(v1::PlanTaskRequest {
                spec: Some(v1::TaskSpec::from(&spec)),
                tenant: args.tenant.unwrap_or_default(),
            })
            .await?
            .into_inner();
        return show_plan(response);
    }
    // A submit whose answer is lost (the leader died after committing) is
    // sent again, to the next leader, under the same key: it is made once.
    let (idempotency_key, own_key) = match args.idempotency_key {
        Some(key) => (key, false),
        None => (ulid::Ulid::new().to_string(), true),
    };
    let request = v1::SubmitTaskRequest {
        spec: Some(v1::TaskSpec::from(&spec)),
        idempotency_key,
        tenant: args.tenant.unwrap_or_default(),
    };
    let response = retry_unavailable(|| {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.submit_task(request).await }
    })
    .await?
    .into_inner();
    let id = response.task_id;
    // People read messages on stdout; a program asking for a format gets
    // only that there, and the messages (the live view too) on stderr.
    let say = match args.output {
        Format::Table => Out::Stdout,
        _ => Out::Stderr,
    };
    // With a key of its own, an existing task is this command's earlier try.
    if response.created || own_key {
        say.line(&format!("task {id} submitted"));
    } else {
        say.line(&format!(
            "task {id} already exists for this idempotency key"
        ));
    }
    if args.output == Format::Name {
        // At once, so a script has the id while the task runs.
        println!("{id}");
    }
    let mut task = None;
    if spec.plan {
        let planned = get_task(&mut client, &id).await?;
        if planned.steps.is_empty() {
            bail!("{}", planned.message);
        }
        let ids: Vec<&str> = planned.steps.iter().map(|s| s.id.as_str()).collect();
        say.line(&format!("planned {} steps: {}", ids.len(), ids.join(", ")));
        task = Some(planned);
    }
    if args.watch {
        task = Some(watch::follow(&mut client, &id, say).await?);
    }
    let code = match (&task, args.watch) {
        (Some(ended), true) => watch::exit_code(ended),
        _ => ExitCode::SUCCESS,
    };
    if matches!(args.output, Format::Json | Format::Yaml) {
        let task = match task {
            Some(task) => task,
            None => get_task(&mut client, &id).await?,
        };
        output::task(&task, args.output)?;
    }
    Ok(code)
}

/// How long a command retries a call the control plane could not answer
/// (a failover: the leader died, a standby is taking over).
const RETRY_UNAVAILABLE: Duration = Duration::from_secs(30);

/// Runs `call` again while it fails as UNAVAILABLE, with back-off, for up
/// to [`RETRY_UNAVAILABLE`]; only for calls that are safe to repeat.
pub async fn retry_unavailable<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_UNAVAILABLE;
    let mut pause = Duration::from_millis(100);
    loop {
        match call().await {
            Err(status)
                if status.code() == tonic::Code::Unavailable
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            answered => return answered,
        }
    }
}

/// One task, whole.
pub async fn get_task(client: &mut Tasks, id: &str) -> anyhow::Result<v1::Task> {
    Ok(client
        .get_task(v1::GetTaskRequest {
            task_id: id.to_string(),
        })
        .await?
        .into_inner())
}

/// Prints a plan as a task file that `orca submit -f` takes as it is; an
/// unusable plan is printed as the model answered it, and fails.
fn show_plan(response: v1::PlanTaskResponse) -> anyhow::Result<ExitCode> {
    if !response.problem.is_empty() {
        let answer: serde_json::Value =
            serde_json::from_str(&response.plan_json).unwrap_or(serde_json::Value::Null);
        eprintln!(
            "the model's plan:\n{}",
            serde_json::to_string_pretty(&answer).unwrap_or(response.plan_json)
        );
        bail!("the plan cannot run: {}", response.problem);
    }
    let planned: orca_core::TaskSpec = response.spec.unwrap_or_default().into();
    let runnable = orca_core::TaskSpec {
        prompt: String::new(),
        plan: false,
        ..planned
    };
    print!("{}", serde_yaml::to_string(&runnable)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn get(target: &Target, args: GetArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        GetWhat::Tasks {
            states,
            labels,
            tenants,
            name,
            limit,
            output: format,
        } => {
            let states = states
                .iter()
                .map(|s| {
                    s.parse::<orca_core::TaskState>()
                        .map(|state| v1::TaskState::from(state) as i32)
                        .map_err(|_| anyhow::anyhow!("--state {s:?}: use one of queued, running, succeeded, failed, cancelled"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let labels = labels
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                    _ => bail!("--label {l:?}: use key=value"),
                })
                .collect::<anyhow::Result<_>>()?;
            let response = tasks(target)
                .await?
                .list_tasks(v1::ListTasksRequest {
                    states,
                    labels,
                    page_size: limit,
                    page_token: String::new(),
                    tenants,
                    name_prefix: name.unwrap_or_default(),
                })
                .await?
                .into_inner();
            output::tasks(&response.tasks, format)?;
        }
        GetWhat::Task { id, output: format } => {
            let task = get_task(&mut tasks(target).await?, &id).await?;
            output::task(&task, format)?;
        }
        GetWhat::Agents { output: format } => {
            let response =
                AgentServiceClient::with_interceptor(channel(target).await?, target.bearer.clone())
                    .list_agents(v1::ListAgentsRequest {})
                    .await?
                    .into_inner();
            output::agents(&response.agents, format)?;
        }
        GetWhat::Servers { output: format } => {
            let response =
                AgentServiceClient::with_interceptor(channel(target).await?, target.bearer.clone())
                    .list_servers(v1::ListServersRequest {})
                    .await?
                    .into_inner();
            output::servers(&response.servers, format)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(target: &Target, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let response = tasks(target)
        .await?
        .list_audit(v1::ListAuditRequest {
            after_seq: args.after,
            page_size: args.limit,
        })
        .await?
        .into_inner();
    output::audit(&response.events, args.output)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn logs(target: &Target, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let mut client = tasks(target).await?;
    let task = get_task(&mut client, &args.task).await?;
    if let Some(step) = &args.step
        && !task.steps.iter().any(|s| &s.id == step)
    {
        bail!("task {} has no step {step:?}", args.task);
    }
    let mut events = client
        .watch_task(v1::WatchTaskRequest {
            task_id: args.task,
            after_seq: 0,
            follow: args.follow,
        })
        .await?
        .into_inner();
    while let Some(event) = events.message().await? {
        if let Some(v1::event::Kind::Log(log)) = event.kind {
            match &args.step {
                Some(step) if *step != log.step_id => {}
                Some(_) => println!("{}", log.line),
                None => println!("{} | {}", log.step_id, log.line),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(target: &Target, args: CancelArgs) -> anyhow::Result<ExitCode> {
    let task = tasks(target)
        .await?
        .cancel_task(v1::CancelTaskRequest { task_id: args.task })
        .await?
        .into_inner();
    let state = output::task_state_name(task.state);
    match v1::TaskState::try_from(task.state) {
        Ok(v1::TaskState::Cancelled) => println!("task {} cancelled", task.id),
        Ok(v1::TaskState::Succeeded | v1::TaskState::Failed) => {
            println!("task {} had already finished: {state}", task.id)
        }
        _ => println!(
            "task {} is cancelling: running steps are being stopped",
            task.id
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn retry(target: &Target, args: RetryArgs) -> anyhow::Result<ExitCode> {
    let mut client = tasks(target).await?;
    let task = client
        .retry_task(v1::RetryTaskRequest {
            task_id: args.task.clone(),
        })
        .await?
        .into_inner();
    let again = task
        .steps
        .iter()
        .filter(|s| s.state != v1::StepState::Succeeded as i32)
        .count();
    println!(
        "task {} retrying: {again} step(s) run again, the rest keep their results",
        task.id
    );
    if args.watch {
        let ended = watch::follow(&mut client, &task.id, Out::Stdout).await?;
        return Ok(watch::exit_code(&ended));
    }
    Ok(ExitCode::SUCCESS)
}

/// Approves (`approve`) or rejects a step awaiting approval, and says what
/// the step does now.
pub async fn decide(
    target: &Target,
    task_id: String,
    step_id: String,
    reason: String,
    approve: bool,
) -> anyhow::Result<ExitCode> {
    let mut client = tasks(target).await?;
    let request = v1::DecideStepRequest {
        task_id,
        step_id: step_id.clone(),
        reason,
    };
    let task = if approve {
        client.approve_step(request).await?
    } else {
        client.reject_step(request).await?
    }
    .into_inner();
    let state = task
        .steps
        .iter()
        .find(|s| s.id == step_id)
        .map_or("unknown", |s| output::step_state_name(s.state));
    let verb = if approve { "approved" } else { "rejected" };
    println!(
        "step {step_id} of task {} {verb}: the step is {state}, the task {}",
        task.id,
        output::task_state_name(task.state)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn watch(target: &Target, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let mut client = tasks(target).await?;
    let ended = watch::follow(&mut client, &args.task, Out::Stdout).await?;
    Ok(watch::exit_code(&ended))
}
