//! `AgentService`: the workers' Connect stream, the agent listing, and
//! what a worker keeps on the control plane for a step's next attempt
//! (checkpoints and branches, see `tidewright_engine::service::kept`) and
//! for every other worker (seeds, see `tidewright_engine::service::seeds`).

use std::pin::Pin;
use std::sync::Arc;

use tidewright_api::convert::micros;
use tidewright_api::v1;
use tidewright_api::v1::worker_message::Kind;
use tidewright_core::{Limits, LogStream};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use tidewright_core::AttemptKey;
use tidewright_engine::{AttemptEnd, EngineHandle, RateLimited, StepResult, ToWorker, WorkerInfo};

use crate::auth::step_token::StepTokens;
use crate::auth::{Action, require};
use crate::error::Error;
use crate::grpc::service;
use crate::wire;
use tidewright_engine::Error as Refusal;
use tidewright_engine::service::{Fleet, Kept, Seeds};

const MAX_NAME_BYTES: usize = 253;
const MAX_SLOTS: u32 = 1024;

/// AgentService: the engine a worker's stream talks to, and the services
/// of its listings and of what steps keep.
pub struct AgentApi {
    pub engine: EngineHandle,
    pub limits: Limits,
    /// mTLS: a worker must have presented a client certificate, which the
    /// TLS layer has already checked against the client CA.
    pub require_client_certificate: bool,
    /// The fleet's listings.
    pub fleet: Fleet,
    /// What steps keep: checkpoints and branches.
    pub kept: Kept,
    /// Repositories' setups, kept for every worker.
    pub seeds: Seeds,
    /// Signs each assignment's step token on its way to the worker.
    pub step_tokens: Arc<StepTokens>,
}

/// The one place the engine's messages to a worker become the wire's. An
/// assignment gets its step token here, on the worker's stream rather than
/// the engine's thread, which every task waits on; without one the step
/// still runs, only its state calls fail. A step whose rubric is graded is
/// told the control plane's grader model.
fn to_wire(message: ToWorker, step_tokens: &StepTokens, grader: &str) -> v1::ServerMessage {
    use v1::server_message::Kind;
    let kind = match message {
        ToWorker::Registered {
            worker_id,
            heartbeat_interval,
        } => Kind::Registered(v1::Registered {
            worker_id: worker_id.to_string(),
            heartbeat_interval_ms: u32::try_from(heartbeat_interval.as_millis())
                .unwrap_or(u32::MAX),
        }),
        ToWorker::Assign(assignment) => {
            let tidewright_engine::Assignment {
                attempt,
                step,
                inputs_json,
                task_name,
                resume,
                traceparent,
                tenant,
                timeout,
                repo,
                dependency_heads,
                task_egress,
                land_riders,
                land_fix,
            } = *assignment;
            let step_token = step_tokens
                .mint(&attempt, &tenant, timeout)
                .unwrap_or_else(|e| {
                    tracing::error!(task = %attempt.task_id, step = %attempt.step_id, error = %e, "no step token");
                    String::new()
                });
            Kind::Assignment(v1::Assignment {
                attempt: Some(attempt.into()),
                step: Some(v1::StepSpec::from(&step)),
                inputs_json,
                task_name,
                resume: resume.map(|r| v1::Resume {
                    attempt: r.attempt,
                    session_id: r.session_id,
                    session_usd: r.session_usd,
                    last_attempt: r.last_attempt,
                    message: r.message,
                    round_base: r.round_base,
                }),
                step_token,
                traceparent,
                repo: repo.as_ref().map(v1::RepoSpec::from),
                dependency_heads: dependency_heads
                    .into_iter()
                    .map(|h| v1::StepHead {
                        step_id: h.step,
                        head_commit: h.head,
                        asked: h.asked,
                    })
                    .collect(),
                land_riders: land_riders.into_iter().map(Into::into).collect(),
                land_fix,
                tenant: tenant.clone(),
                grader_model: if step.graded() {
                    grader.to_string()
                } else {
                    String::new()
                },
                task_egress: task_egress.as_ref().map(v1::Egress::from),
            })
        }
        ToWorker::Cancel {
            attempt,
            reason,
            resumable,
        } => Kind::Cancel(v1::CancelStep {
            attempt: Some(attempt.into()),
            reason,
            resumable,
        }),
        ToWorker::Look { attempt, why } => Kind::Look(v1::LookNow {
            attempt: Some(attempt.into()),
            why,
        }),
        ToWorker::Steer {
            attempt,
            message,
            from,
            follow_up,
        } => Kind::Steer(v1::SteerAttempt {
            attempt: Some(attempt.into()),
            message,
            from,
            follow_up,
        }),
        ToWorker::DrainTaken => Kind::DrainTaken(v1::DrainTaken {}),
    };
    v1::ServerMessage { kind: Some(kind) }
}

fn attempt_key(field: &str, attempt: Option<v1::AttemptRef>) -> Result<AttemptKey, Error> {
    Ok(attempt
        .ok_or_else(|| Error::invalid(field, "required"))?
        .into())
}

fn worker_info(
    register: v1::Register,
    peer: String,
    limits: &Limits,
) -> Result<(WorkerInfo, Vec<AttemptKey>), Error> {
    if register.name.is_empty() || register.name.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(
            "register.name",
            format!("must be 1 to {MAX_NAME_BYTES} bytes"),
        ));
    }
    if register.pool.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(
            "register.pool",
            format!("is longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    if register.slots == 0 || register.slots > MAX_SLOTS {
        return Err(Error::invalid(
            "register.slots",
            format!("must be 1 to {MAX_SLOTS}"),
        ));
    }
    for (i, capability) in register.capabilities.iter().enumerate() {
        tidewright_core::validate::validate_capability(capability, limits)
            .map_err(|message| Error::invalid(format!("register.capabilities[{i}]"), message))?;
    }
    let running = register
        .running
        .into_iter()
        .map(|a| attempt_key("register.running", Some(a)))
        .collect::<Result<_, _>>()?;
    Ok((
        WorkerInfo {
            name: register.name,
            pool: register.pool,
            capabilities: tidewright_core::queue::capabilities(&register.capabilities),
            slots: register.slots,
            peer,
            max_concurrent_agents: register.max_concurrent_agents,
            isolation: register.isolation,
        },
        running,
    ))
}

/// Turns one message of a registered worker into an engine command.
async fn forward(
    engine: &EngineHandle,
    limits: &Limits,
    worker: u64,
    message: v1::WorkerMessage,
) -> Result<(), Error> {
    match message.kind {
        None => Err(Error::Protocol("an empty message".into())),
        Some(Kind::Register(_)) => Err(Error::Protocol("register may be sent only once".into())),
        Some(Kind::Credits(c)) => Ok(engine.credits(worker, c.credits).await?),
        Some(Kind::Heartbeat(_)) => Ok(engine.heartbeat(worker).await?),
        Some(Kind::Drain(_)) => Ok(engine.drain(worker).await?),
        Some(Kind::Release(release)) => {
            let attempts = release
                .attempts
                .into_iter()
                .map(|a| attempt_key("release.attempts", Some(a)))
                .collect::<Result<_, _>>()?;
            let reason = if release.reason.is_empty() {
                "handed back by its worker".to_string()
            } else {
                release.reason
            };
            Ok(engine.release(worker, attempts, reason).await?)
        }
        Some(Kind::Egress(e)) => {
            let attempt = attempt_key("egress.attempt", e.attempt)?;
            // Host names and reasons are short; cut like a log line.
            let egress = tidewright_engine::EgressReport {
                destination: cap_line(e.destination, limits.max_log_line_bytes),
                allowed: e.allowed,
                reason: cap_line(e.reason, limits.max_log_line_bytes),
            };
            Ok(engine.egress(worker, attempt, egress).await?)
        }
        Some(Kind::Setup(s)) => {
            let attempt = attempt_key("setup.attempt", s.attempt)?;
            let mut setup = tidewright_core::setup::SetupReport::from(s.setup.unwrap_or_default());
            // Keys, methods and notes are short; cut like a log line.
            for text in [&mut setup.seed, &mut setup.method, &mut setup.note] {
                *text = cap_line(std::mem::take(text), limits.max_log_line_bytes);
            }
            Ok(engine.setup(worker, attempt, setup).await?)
        }
        Some(Kind::Progress(p)) => {
            let attempt = attempt_key("progress.attempt", p.attempt)?;
            Ok(engine
                .progress(worker, attempt, p.fraction, p.message)
                .await?)
        }
        Some(Kind::Logs(logs)) => {
            let attempt = attempt_key("logs.attempt", logs.attempt)?;
            let lines = logs
                .lines
                .into_iter()
                .map(|l| {
                    let stream = v1::LogStream::try_from(l.stream).unwrap_or(v1::LogStream::Stdout);
                    (
                        LogStream::from(stream),
                        cap_line(l.line, limits.max_log_line_bytes),
                    )
                })
                .collect();
            Ok(engine.logs(worker, attempt, lines).await?)
        }
        Some(Kind::SessionItems(said)) => {
            let attempt = attempt_key("session_items.attempt", said.attempt)?;
            if said.items.len() > MAX_SESSION_ITEMS {
                return Err(Error::invalid(
                    "session_items.items",
                    format!(
                        "holds {}; at most {MAX_SESSION_ITEMS} a message",
                        said.items.len()
                    ),
                ));
            }
            if !said.usd.is_finite() || said.usd < 0.0 {
                return Err(Error::invalid(
                    "session_items.usd",
                    format!("is {}; a cost is a finite amount, 0 or more", said.usd),
                ));
            }
            let items = said
                .items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    tidewright_core::session_item::SessionItem::try_from(item)
                        .map(|item| item.map_texts(tidewright_core::session_item::cut))
                        .map_err(|e| Error::invalid(format!("session_items.items[{i}].kind"), e))
                })
                .collect::<Result<_, _>>()?;
            Ok(engine
                .session_items(worker, attempt, items, said.usd)
                .await?)
        }
        Some(Kind::Session(session)) => {
            let attempt = attempt_key("session.attempt", session.attempt)?;
            // Ids and model names are short; a longer one is a broken worker.
            for (field, value) in [
                ("session.session_id", &session.session_id),
                ("session.model", &session.model),
            ] {
                if value.len() > MAX_SESSION_FIELD_BYTES {
                    return Err(Error::Protocol(format!(
                        "{field} is {} bytes; at most {MAX_SESSION_FIELD_BYTES}",
                        value.len()
                    )));
                }
            }
            Ok(engine
                .session(worker, attempt, session.session_id, session.model)
                .await?)
        }
        Some(Kind::Spend(spend)) => {
            let attempt = attempt_key("spend.attempt", spend.attempt)?;
            let cost = spend
                .cost
                .as_ref()
                .map(tidewright_core::Cost::from)
                .ok_or_else(|| Error::Protocol("spend.cost is required".into()))?;
            Ok(engine.spend(worker, attempt, cost).await?)
        }
        Some(Kind::Result(r)) => {
            let attempt = attempt_key("result.attempt", r.attempt)?;
            // An outcome this server does not know is a failure.
            let mut outcome = match v1::Outcome::try_from(r.outcome) {
                Ok(v1::Outcome::Succeeded) => AttemptEnd::Succeeded,
                Ok(v1::Outcome::Cancelled) => AttemptEnd::Cancelled,
                _ => AttemptEnd::Failed,
            };
            let (mut output_json, mut error) = (r.output_json, r.error);
            if output_json.len() > limits.max_output_bytes {
                outcome = AttemptEnd::Failed;
                error = format!(
                    "the step's output is {} bytes; the limit (max-output-bytes) is {}",
                    output_json.len(),
                    limits.max_output_bytes
                );
                output_json.clear();
            }
            let report = StepResult {
                attempt,
                outcome,
                output_json,
                error,
                exit_code: r.exit_code,
                started_at: r.started_at.as_ref().map(micros),
                cost: r.cost.as_ref().map(tidewright_core::Cost::from),
                stalled: r.stalled,
                rate_limited: r.rate_limit.as_ref().map(|limit| {
                    let mut signal = limit.signal.trim().to_string();
                    tidewright_core::truncate_at_char_boundary(&mut signal, MAX_SIGNAL_BYTES);
                    RateLimited {
                        reset: limit.reset_at.as_ref().map(micros),
                        signal,
                    }
                }),
                work: r.work.clone().map(bounded_work),
                conflict: r
                    .conflict
                    .clone()
                    .map(|c| tidewright_core::repo::MergeConflict {
                        with: c.with,
                        after: c.after,
                        paths: c.paths.into_iter().take(MAX_CHANGED_PATHS).collect(),
                    }),
                verification: r.verification.clone().map(bounded_verification),
                handover: bounded_handover(&r.handover),
            };
            Ok(engine.report(worker, report).await?)
        }
    }
}

/// A handover summary as the task's spec keeps it: at most
/// [`tidewright_core::failover::MAX_SUMMARY_BYTES`], whatever a worker sent.
fn bounded_handover(summary: &str) -> String {
    let mut summary = summary.to_string();
    tidewright_core::truncate_at_char_boundary(
        &mut summary,
        tidewright_core::failover::MAX_SUMMARY_BYTES,
    );
    summary
}

/// The most changed paths a step's work keeps: a step that rewrote a whole
/// tree is told by its counts, not by a list the store must hold.
const MAX_CHANGED_PATHS: usize = 5000;
const MAX_PATH_BYTES: usize = 4096;
/// The most of a verified step's round's own diff it keeps (the worker's
/// cap).
const MAX_ROUND_DIFF_BYTES: usize = 256 * 1024;

/// A worker's account of a verified step's round, held to what the store
/// keeps: the checks the step names, each output's tail, the paths.
fn bounded_verification(found: v1::Verification) -> tidewright_core::Verification {
    let mut found = tidewright_core::Verification::from(found);
    found.checks.truncate(tidewright_core::verify::MAX_CHECKS);
    for check in &mut found.checks {
        tidewright_core::truncate_at_char_boundary(&mut check.name, 63);
        check.tail = tidewright_core::verify::tail(&check.tail);
        tidewright_core::truncate_at_char_boundary(&mut check.trouble, 1024);
    }
    found.protected.truncate(MAX_CHANGED_PATHS);
    for path in &mut found.protected {
        tidewright_core::truncate_at_char_boundary(path, MAX_PATH_BYTES);
    }
    // A commit id, or nothing: the next round's worker puts it on git's
    // command line.
    if !tidewright_core::repo::valid_commit(&found.head_commit) {
        found.head_commit.clear();
    }
    tidewright_core::truncate_at_char_boundary(&mut found.round_diff, MAX_ROUND_DIFF_BYTES);
    found
}

/// A worker's account of a step's work, held to what the store keeps.
fn bounded_work(work: v1::StepWork) -> tidewright_core::StepWork {
    let mut work = tidewright_core::StepWork::from(work);
    work.changed_paths.truncate(MAX_CHANGED_PATHS);
    for path in &mut work.changed_paths {
        tidewright_core::truncate_at_char_boundary(path, MAX_PATH_BYTES);
    }
    for commit in [&mut work.base_commit, &mut work.head_commit] {
        tidewright_core::truncate_at_char_boundary(commit, 64);
    }
    tidewright_core::truncate_at_char_boundary(&mut work.branch, 512);
    work
}

/// The longest limit signal a worker may report; longer ones are cut.
const MAX_SIGNAL_BYTES: usize = 200;

/// The longest session id or model name a worker may report.
const MAX_SESSION_FIELD_BYTES: usize = 256;
/// The most session items one message may carry: a worker sends those of
/// one line of its CLI's stream.
const MAX_SESSION_ITEMS: usize = 256;

/// A log line within `limit` bytes: a longer one is cut at a character
/// boundary and says so, so the log shows that text is missing.
fn cap_line(mut line: String, limit: usize) -> String {
    if line.len() <= limit {
        return line;
    }
    let over = line.len() - limit;
    tidewright_core::truncate_at_char_boundary(&mut line, limit);
    line.push_str(&format!(
        " [cut: {over} bytes over the max-log-line-bytes limit of {limit}]"
    ));
    line
}

type ServerStream = Pin<Box<dyn Stream<Item = Result<v1::ServerMessage, Status>> + Send>>;
type SeedStream = Pin<Box<dyn Stream<Item = Result<v1::SeedDownload, Status>> + Send>>;

service! {
    impl v1::agent_service_server::AgentService for AgentApi {
        unary {
            list_agents(ListAgentsRequest) -> ListAgentsResponse =
                |_| Ok(()), [fleet.list_agents], wire::agent_listing;
            put_checkpoint(Checkpoint) -> PutCheckpointResponse =
                |r| Ok(wire::put_checkpoint(r)), [kept.put_checkpoint],
                |()| v1::PutCheckpointResponse {};
            get_checkpoint(GetCheckpointRequest) -> Checkpoint =
                |r| Ok(wire::get_checkpoint(r)), [kept.get_checkpoint], wire::checkpoint;
            put_branch(StepBranch) -> PutBranchResponse =
                |r| Ok(wire::put_branch(r)), [kept.put_branch], |()| v1::PutBranchResponse {};
            get_branch(GetBranchRequest) -> StepBranch =
                |r| Ok(wire::get_branch(r)), [kept.get_branch], wire::branch;
            list_servers(ListServersRequest) -> ListServersResponse =
                |_| Ok(()), [fleet.list_servers], wire::servers;
            list_seeds(ListSeedsRequest) -> ListSeedsResponse =
                |r| Ok(wire::list_seeds(r)), [seeds.list_seeds], wire::seeds;
            delete_seed(DeleteSeedRequest) -> StoredSeed =
                |r| Ok(wire::delete_seed(r)), [seeds.delete_seed], wire::stored_seed;
        }

        type ConnectStream = ServerStream;
        type GetSeedStream = SeedStream;

        async fn put_seed(
            &self,
            request: Request<Streaming<v1::SeedUpload>>,
        ) -> Result<Response<v1::StoredSeed>, Status> {
            use v1::seed_upload::Kind;
            let (metadata, extensions, mut inbound) = request.into_parts();
            let header = match inbound.message().await? {
                Some(v1::SeedUpload {
                    kind: Some(Kind::Header(header)),
                }) => header,
                _ => return Err(Error::invalid("header", "the first message must be the seed's header").into()),
            };
            let call = crate::grpc::grpc_call(Request::from_parts(metadata, extensions, wire::put_seed(header)));
            let mut upload = self.seeds.put_seed(call).await.map_err(Error::from)?;
            loop {
                match inbound.message().await? {
                    Some(v1::SeedUpload { kind: Some(Kind::Data(chunk)) }) => {
                        upload.write(&chunk).await.map_err(Error::from)?;
                    }
                    Some(v1::SeedUpload { kind: Some(Kind::Sha256(sha256)) }) => {
                        let kept = upload.finish(&sha256).await.map_err(Error::from)?;
                        return Ok(Response::new(wire::stored_seed(kept)));
                    }
                    Some(_) => return Err(Error::invalid("header", "only the first message may be the header").into()),
                    None => return Err(Error::invalid("sha256", "the stream ended before the seed's sha256").into()),
                }
            }
        }

        async fn get_seed(
            &self,
            request: Request<v1::GetSeedRequest>,
        ) -> Result<Response<SeedStream>, Status> {
            use v1::seed_download::Kind;
            let call = crate::grpc::grpc_call(request).try_map(|r| Ok::<_, Error>(wire::get_seed(r)))?;
            let (entry, download) = self.seeds.get_seed(call).await.map_err(Error::from)?;
            let first = v1::SeedDownload {
                kind: Some(Kind::Seed(entry.map(wire::stored_seed).unwrap_or_default())),
            };
            // A few chunks ahead of the worker; a worker that goes away
            // closes the channel, and the read stops.
            let (chunks, outgoing) = mpsc::channel(4);
            let _ = chunks.send(Ok(first)).await;
            if let Some(mut download) = download {
                tokio::spawn(async move {
                    loop {
                        let next = match download.next().await {
                            Ok(Some(chunk)) => Ok(v1::SeedDownload { kind: Some(Kind::Data(chunk)) }),
                            Ok(None) => return,
                            Err(e) => Err(Status::from(Error::from(e))),
                        };
                        let failed = next.is_err();
                        if chunks.send(next).await.is_err() || failed {
                            return;
                        }
                    }
                });
            }
            Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(outgoing))))
        }

        async fn connect(
            &self,
            request: Request<Streaming<v1::WorkerMessage>>,
        ) -> Result<Response<Self::ConnectStream>, Status> {
            let identity = require(&request, Action::ConnectWorker)?;
            if self.require_client_certificate
                && request.peer_certs().is_none_or(|certs| certs.is_empty())
            {
                return Err(Error::Service(Refusal::Unauthenticated(format!(
                    "{}: workers must present a client certificate signed by the control plane's client CA",
                    identity.name
                )))
                .into());
            }
            let peer = request
                .remote_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let mut inbound = request.into_inner();
            let register = match inbound.message().await? {
                Some(v1::WorkerMessage {
                    kind: Some(Kind::Register(register)),
                }) => register,
                Some(_) => {
                    return Err(Error::Protocol("the first message must be register".into()).into());
                }
                None => return Err(Error::Protocol("the stream ended before register".into()).into()),
            };
            let (info, running) = worker_info(register, peer, &self.limits)?;
            let (outbox, mut from_engine) = mpsc::unbounded_channel();
            let (wire, outgoing) = mpsc::unbounded_channel();
            // Only the engine holds the outbox strongly, and only this pump the
            // wire's sender: when the engine drops a worker (or shuts down) the
            // response stream ends.
            let errors = wire.downgrade();
            let step_tokens = self.step_tokens.clone();
            let grader = self.limits.grader.clone().unwrap_or_default();
            tokio::spawn(async move {
                while let Some(message) = from_engine.recv().await {
                    if wire.send(Ok(to_wire(message, &step_tokens, &grader))).is_err() {
                        break;
                    }
                }
            });
            let worker = self
                .engine
                .register(info, running, outbox)
                .await
                .map_err(Error::from)?;
            let engine = self.engine.clone();
            let limits = self.limits.clone();
            tokio::spawn(async move {
                loop {
                    match inbound.message().await {
                        Ok(Some(message)) => {
                            if let Err(e) = forward(&engine, &limits, worker, message).await {
                                if let Some(outbox) = errors.upgrade() {
                                    let _ = outbox.send(Err(Status::from(e)));
                                }
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(worker, %status, "worker stream broke");
                            break;
                        }
                    }
                }
                let _ = engine.disconnected(worker).await;
            });
            Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
                outgoing,
            ))))
        }
    }
}
