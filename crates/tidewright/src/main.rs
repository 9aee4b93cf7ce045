//! The `tidewright` binary: parses the command line, sets up logging and hands off
//! to the command modules. Exit status: 0 on success, 1 when a task failed
//! or a request was refused, 2 for usage errors.

mod args;
mod budget;
mod build;
mod client;
mod context;
mod cost;
mod eval;
mod local;
mod output;
mod schedule;
mod scores;
mod seed;
mod state;
mod taskfile;
mod template;
mod tenant;
mod trigger;
mod watch;
mod webhook;

use std::process::ExitCode;

use clap::Parser;
use tracing::Instrument;

use crate::args::{Cli, Command, Format, OperatorCommand, TemplateCommand};

/// mimalloc, not glibc's malloc: under load the control plane allocates on
/// one thread and frees on another, and glibc's arenas then spent a fifth of
/// the server's CPU searching and merging free chunks (`_int_malloc`,
/// `unlink_chunk`, `malloc_consolidate` at the top of `perf`). Built without
/// transparent huge pages (`no_thp`): with them 10,000 idle worker streams
/// held twice the memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The control plane needs every core; a worker or a client command is
    // mostly waiting on one stream, and one thread spares it the cross-thread
    // wake-ups that cost latency on a small machine.
    let runtime = if matches!(cli.command, Command::Server(_) | Command::Up(_)) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(traced(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", client::describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// Runs the command with logging and tracing set up, and exports the last
/// spans before returning. A client command is one span, the root of the
/// trace its requests continue, or, inside a step (`tidewright state`, an agent's
/// `tidewright mcp`), a child of the step's `TRACEPARENT`; a service's spans are
/// its requests' and steps'.
async fn traced(cli: Cli) -> anyhow::Result<ExitCode> {
    let (service, default_level) = match &cli.command {
        Command::Server(_) | Command::Up(_) => ("tidewright-server", "info"),
        Command::Worker(_) => ("tidewright-worker", "info"),
        Command::Operator(OperatorCommand::Run(_)) => ("tidewright-operator", "info"),
        // Client commands only warn, so their output stays clean for scripts.
        _ => ("tidewright", "warn"),
    };
    let guard = tidewright_telemetry::init(&tidewright_telemetry::Settings {
        service,
        format: cli.log_format,
        default_level,
    })?;
    let result = if service == "tidewright" {
        let span = tracing::info_span!("cli", otel.name = %format!("tidewright {}", command_name(&cli.command)));
        if let Ok(step) = std::env::var("TRACEPARENT") {
            tidewright_telemetry::set_parent(
                &span,
                tidewright_telemetry::parent_from_traceparent(&step),
            );
        }
        run(cli).instrument(span).await
    } else {
        run(cli).await
    };
    guard.shutdown().await;
    result
}

/// The subcommand's name, for its span.
fn command_name(command: &Command) -> String {
    let debug = format!("{command:?}");
    let name = debug.split(['(', ' ', '{']).next().unwrap_or_default();
    name.to_lowercase()
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Server(_) | Command::Up(_) => {}
        Command::Config(command) => return context::command(&cli, command),
        Command::Operator(OperatorCommand::Crd) => {
            print!("{}", tidewright_operator::crds_yaml()?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Version { output } => {
            let build = build::this_build();
            match output {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "version": build.version,
                        "commit": build.commit,
                        // As the HTTP API writes times.
                        "builtAt": tidewright_api::view::rfc3339(
                            &tidewright_api::convert::optional_timestamp(build.built_at)
                        ),
                    })
                ),
                _ => println!("tidewright {}", build.describe()),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            output::man_pages(<Cli as clap::CommandFactory>::command(), dir)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Completion { shell } => {
            // Made whole first: the generator panics on a write error, and
            // a reader may close the pipe early.
            let mut script = Vec::new();
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "tidewright", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let resolved = context::resolve(&cli)?;
    let target = &resolved;
    match cli.command {
        Command::Server(args) => local::server(*args).await,
        Command::Worker(args) => local::worker(*args, resolved.clone()).await,
        Command::Up(args) => local::up(*args).await,
        Command::Submit(args) => client::submit(target, args).await,
        Command::Get(args) => client::get(target, args).await,
        Command::Logs(args) => client::logs(target, args).await,
        Command::Cancel(args) => client::cancel(target, args).await,
        Command::Retry(args) => client::retry(target, args).await,
        Command::Steer(args) => client::steer(target, args).await,
        Command::Approve(args) => match args.step {
            Some(step) => {
                client::decide(
                    target,
                    args.task,
                    step,
                    args.reason,
                    tidewright_client::Decision::Approve,
                )
                .await
            }
            None => budget::approve(target, args.task, args.reason).await,
        },
        Command::Reject(args) => {
            client::decide(
                target,
                args.task,
                args.step,
                args.reason,
                tidewright_client::Decision::Reject,
            )
            .await
        }
        Command::Budget(command) => budget::budget(target, command).await,
        Command::Tenant(command) => tenant::tenant(target, command).await,
        Command::Cost(args) => cost::cost(target, args).await,
        Command::Webhook(command) => webhook::webhook(target, command).await,
        Command::Seed(command) => seed::seed(target, command).await,
        Command::Schedule(command) => schedule::schedule(target, command).await,
        Command::Trigger(command) => trigger::trigger(target, command).await,
        Command::Template(TemplateCommand::Run(run)) => {
            client::submit(target, template::submit_args(run)).await
        }
        Command::Template(command) => template::template(target, command).await,
        Command::Watch(args) => client::watch(target, args).await,
        Command::Audit(args) => client::audit(target, args).await,
        Command::Eval(args) => eval::eval(&client::connect(target).await?, args).await,
        Command::State(command) => state::state(target, command).await,
        Command::Publish(args) => state::publish(target, args).await,
        Command::Subscribe(args) => state::subscribe(target, args).await,
        Command::Mcp(args) => state::mcp(target, args).await,
        Command::Operator(OperatorCommand::Run(args)) => {
            local::operator(*args, resolved.clone()).await
        }
        Command::Config(_)
        | Command::Operator(OperatorCommand::Crd)
        | Command::Version { .. }
        | Command::Man { .. }
        | Command::Completion { .. } => Ok(ExitCode::SUCCESS),
    }
}
