//! The client commands: submit, get, logs, cancel, watch.

use std::process::ExitCode;

use anyhow::bail;
use tidewright_client::{Client, Decision, Settings, Submit, v1};

use crate::args::{
    AuditArgs, CancelArgs, Format, GetArgs, GetWhat, LogsArgs, RetryArgs, SubmitArgs, WatchArgs,
};
use crate::watch::Out;
use crate::{output, taskfile, watch};

/// A client of the control plane the settings name.
pub async fn connect(settings: &Settings) -> anyhow::Result<Client> {
    Ok(Client::connect(settings.clone()).await?)
}

/// One readable line for an error: a refused request shows its status code
/// and the server's message, which names the field.
pub fn describe(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<tidewright_client::Error>() {
            return match e {
                tidewright_client::Error::Unreachable { server, .. } if !server.contains(',') => {
                    format!("{e} (is `tidewright up` running?)")
                }
                _ => e.to_string(),
            };
        }
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            return format!(
                "{}: {}",
                tidewright_client::code_name(status.code()),
                status.message()
            );
        }
    }
    format!("{e:#}")
}

pub async fn submit(settings: &Settings, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    // None: the control plane renders its template (--on-server).
    let spec = match (&args.file, &args.template, args.prompt.as_slice()) {
        (Some(file), _, _) => Some(taskfile::load(file)?),
        (None, Some(_), _) if args.templates.on_server => None,
        // Rendered here: a missing or unknown parameter stops the submit
        // before anything is stored.
        (None, Some(name), params) => Some(crate::template::render(
            name,
            params,
            &args.templates.local,
        )?),
        (None, None, [prompt]) => Some(tidewright_client::TaskSpec {
            prompt: prompt.clone(),
            ..tidewright_client::TaskSpec::default()
        }),
        (None, None, []) => {
            bail!("give a task file (-f), a prompt (-p) or a template (--template)")
        }
        (None, None, _) => bail!("-p: give one prompt, or --template NAME with -p key=value"),
    };
    let spec = spec.map(|mut spec| {
        spec.plan |= args.plan || args.plan_only;
        spec
    });
    let planned = spec.as_ref().is_some_and(|spec| spec.plan);
    let client = connect(settings).await?;
    let tenant = args.options.tenant.unwrap_or_default();
    if let (true, Some(spec)) = (args.plan_only, &spec) {
        return show_plan(client.plan(spec, &tenant).await?);
    }
    let own_key = args.options.idempotency_key.is_none();
    let submitted = match (&spec, &args.template) {
        (Some(spec), _) => {
            let mut submit = Submit::new(spec).tenant(tenant);
            submit.idempotency_key = args.options.idempotency_key;
            client.submit(submit).await?
        }
        (None, name) => {
            let name = name.as_deref().unwrap_or_default();
            let mut run = crate::template::server_run(name, &args.prompt)?.tenant(tenant);
            run.idempotency_key = args.options.idempotency_key;
            client.submit_template(run).await?
        }
    };
    let id = submitted.task_id;
    // People read messages on stdout; a program asking for a format gets
    // only that there, and the messages (the live view too) on stderr.
    let say = match args.options.output {
        Format::Table => Out::Stdout,
        _ => Out::Stderr,
    };
    // With a key of its own, an existing task is this command's earlier try.
    if submitted.created || own_key {
        say.line(&format!("task {id} submitted"));
    } else {
        say.line(&format!(
            "task {id} already exists for this idempotency key"
        ));
    }
    if args.options.output == Format::Name {
        // At once, so a script has the id while the task runs.
        println!("{id}");
    }
    let mut task = None;
    if planned {
        let planned = client.get(&id).await?;
        if planned.steps.is_empty() {
            bail!("{}", planned.message);
        }
        let ids: Vec<&str> = planned.steps.iter().map(|s| s.id.as_str()).collect();
        say.line(&format!("planned {} steps: {}", ids.len(), ids.join(", ")));
        task = Some(planned);
    }
    if args.options.watch {
        // The live view says why a step waits, as its events do.
        task = Some(watch::follow(&client, &id, say).await?);
    } else {
        // Said once: a step that no connected worker can run waits for
        // one that can, and the user hears which.
        let now = match task.take() {
            Some(planned) => planned,
            None => client.get(&id).await?,
        };
        for step in now.steps.iter().filter(|s| !s.queued_reason.is_empty()) {
            say.line(&format!("step {} waits: {}", step.id, step.queued_reason));
        }
        task = Some(now);
    }
    let code = match (&task, args.options.watch) {
        (Some(ended), true) => watch::exit_code(ended),
        _ => ExitCode::SUCCESS,
    };
    if let (Format::Json | Format::Yaml, Some(task)) = (args.options.output, &task) {
        output::task(task, args.options.output)?;
    }
    Ok(code)
}

/// Prints a plan as a task file that `tidewright submit -f` takes as it is; an
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
    let planned: tidewright_core::TaskSpec = response.spec.unwrap_or_default().into();
    let runnable = tidewright_core::TaskSpec {
        prompt: String::new(),
        plan: false,
        ..planned
    };
    print!("{}", serde_yaml::to_string(&runnable)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn get(settings: &Settings, args: GetArgs) -> anyhow::Result<ExitCode> {
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
                    s.parse::<tidewright_core::TaskState>()
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
            let filter = v1::ListTasksRequest {
                states,
                labels,
                page_size: limit,
                page_token: String::new(),
                tenants,
                name_prefix: name.unwrap_or_default(),
            };
            let page = connect(settings).await?.list_page(&filter, "").await?;
            output::tasks(&page.tasks, format)?;
        }
        GetWhat::Task { id, output: format } => {
            let task = connect(settings).await?.get(&id).await?;
            output::task(&task, format)?;
        }
        GetWhat::Agents { output: format } => {
            let fleet = connect(settings).await?.fleet().await?;
            output::agents(&fleet.agents, &fleet.gone, fleet.server.as_ref(), format)?;
        }
        GetWhat::Landings {
            tenants,
            output: format,
        } => {
            output::landings(&connect(settings).await?.landings(tenants).await?, format)?;
        }
        GetWhat::Scores {
            repo,
            template,
            limit,
            output: format,
        } => {
            let asked = crate::scores::Asked {
                repo,
                template,
                limit,
                format,
            };
            return crate::scores::scores(&connect(settings).await?, asked).await;
        }
        GetWhat::Servers { output: format } => {
            output::servers(&connect(settings).await?.servers().await?, format)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(settings: &Settings, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let events = connect(settings)
        .await?
        .audit(args.after, args.limit)
        .await?;
    output::audit(&events, args.output)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn logs(settings: &Settings, args: LogsArgs) -> anyhow::Result<ExitCode> {
    use futures::StreamExt;
    let client = connect(settings).await?;
    let task = client.get(&args.task).await?;
    if let Some(step) = &args.step
        && !task.steps.iter().any(|s| &s.id == step)
    {
        bail!("task {} has no step {step:?}", args.task);
    }
    let mut events = client.watch_with(
        &args.task,
        tidewright_client::WatchOptions {
            follow: args.follow,
            ..tidewright_client::WatchOptions::default()
        },
    );
    while let Some(event) = events.next().await {
        if let Some(v1::event::Kind::Log(log)) = event?.kind {
            match &args.step {
                Some(step) if *step != log.step_id => {}
                Some(_) => println!("{}", log.line),
                None => println!("{} | {}", log.step_id, log.line),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(settings: &Settings, args: CancelArgs) -> anyhow::Result<ExitCode> {
    let task = connect(settings).await?.cancel(&args.task).await?;
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

pub async fn retry(settings: &Settings, args: RetryArgs) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    let task = client.retry(&args.task).await?;
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
        let ended = watch::follow(&client, &task.id, Out::Stdout).await?;
        return Ok(watch::exit_code(&ended));
    }
    Ok(ExitCode::SUCCESS)
}

/// Approves or rejects a step awaiting approval, and says what the step
/// does now.
pub async fn decide(
    settings: &Settings,
    task_id: String,
    step_id: String,
    reason: String,
    decision: Decision,
) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    let task = client
        .decide_step(&task_id, &step_id, decision, &reason)
        .await?;
    let state = task
        .steps
        .iter()
        .find(|s| s.id == step_id)
        .map_or("unknown", |s| output::step_state_name(s.state));
    let verb = match decision {
        Decision::Approve => "approved",
        Decision::Reject => "rejected",
    };
    println!(
        "step {step_id} of task {} {verb}: the step is {state}, the task {}",
        task.id,
        output::task_state_name(task.state)
    );
    Ok(ExitCode::SUCCESS)
}

/// `tidewright steer TASK STEP MESSAGE`: says where the message went.
pub async fn steer(settings: &Settings, args: crate::args::SteerArgs) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    let steered = client
        .steer_step((&args.task, &args.step), &args.message, args.follow_up)
        .await?;
    println!(
        "sent to step {} of task {} (attempt {}), {}",
        args.step, args.task, steered.attempt, steered.delivery
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn watch(settings: &Settings, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    let ended = watch::follow(&client, &args.task, Out::Stdout).await?;
    Ok(watch::exit_code(&ended))
}
