//! Conversions between proto messages and tidewright-core's domain types. Specs
//! convert without loss in both directions; validation is tidewright-core's job.

use prost_types::Timestamp;
use tidewright_core as core;

use crate::{Error, v1};

pub fn timestamp(micros: core::Micros) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// `None` for 0, which the store uses for "not yet".
pub fn optional_timestamp(micros: core::Micros) -> Option<Timestamp> {
    (micros != 0).then(|| timestamp(micros))
}

pub fn micros(ts: &Timestamp) -> core::Micros {
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000
}

pub use tidewright_core::calendar::now_micros;

/// `From` both ways between a core type and its message whose fields are
/// the same by name: one list of the fields, not a copy per way.
macro_rules! same_fields {
    ($core:ty, $wire:ty { $($field:ident),+ $(,)? }) => {
        impl From<$wire> for $core {
            fn from(from: $wire) -> Self {
                Self { $($field: from.$field),+ }
            }
        }

        impl From<$core> for $wire {
            fn from(from: $core) -> Self {
                Self { $($field: from.$field),+ }
            }
        }
    };
}

impl From<v1::TaskSpec> for core::TaskSpec {
    fn from(spec: v1::TaskSpec) -> Self {
        core::TaskSpec {
            name: spec.name,
            labels: spec.labels.into_iter().collect(),
            priority: spec.priority,
            steps: spec.steps.into_iter().map(Into::into).collect(),
            prompt: spec.prompt,
            plan: spec.plan,
            budget: spec.budget.map(|b| core::Budget {
                usd: b.usd,
                tokens: b.tokens,
                approvers: b.approvers,
            }),
            repo: spec.repo.map(Into::into),
            egress: spec.egress.map(Into::into),
            retention_seconds: spec.retention_seconds,
            failback: spec.failback,
        }
    }
}

impl From<v1::Egress> for core::Egress {
    fn from(egress: v1::Egress) -> Self {
        core::Egress {
            allow: egress.allow,
        }
    }
}

impl From<&core::Egress> for v1::Egress {
    fn from(egress: &core::Egress) -> Self {
        v1::Egress {
            allow: egress.allow.clone(),
        }
    }
}

impl From<v1::RepoSpec> for core::RepoSpec {
    fn from(r: v1::RepoSpec) -> Self {
        core::RepoSpec {
            url: r.url,
            git_ref: r.r#ref,
            commit: r.commit,
            credentials_secret: r.credentials_secret,
            push: r.push,
            push_steps: r.push_steps,
            pull_request: r.pull_request.map(|p| core::repo::PullRequestSpec {
                title: p.title,
                body: p.body,
                base: p.base,
                forge: Some(p.forge)
                    .filter(|f| !f.is_empty())
                    .map(|f| core::repo::Forge::parse(&f)),
                api_url: p.api_url,
                follow: p.follow,
                merge: Some(p.merge)
                    .filter(|m| !m.is_empty())
                    .map(|m| core::repo::MergeMethod::parse(&m)),
                max_fixes: p.max_fixes,
                owner: p.owner,
                poll_seconds: p.poll_seconds,
            }),
            exclusive: Some(r.exclusive)
                .filter(|e| !e.is_empty())
                .map(|e| core::repo::Exclusive::parse(&e)),
            land: r.land.map(|l| core::repo::LandSpec {
                method: core::repo::LandMethod::parse(&l.method),
                base: l.base,
                checks: l.checks.into_iter().map(Into::into).collect(),
                batch: l.batch,
                max_fixes: l.max_fixes,
            }),
        }
    }
}

impl From<core::repo::LandRider> for v1::LandRider {
    fn from(r: core::repo::LandRider) -> Self {
        v1::LandRider {
            task_id: r.task_id,
            task_name: r.task_name,
            attempt: r.attempt,
            step: r.step,
            head: r.head,
            push: r.push,
        }
    }
}

impl From<v1::LandRider> for core::repo::LandRider {
    fn from(r: v1::LandRider) -> Self {
        core::repo::LandRider {
            task_id: r.task_id,
            task_name: r.task_name,
            attempt: r.attempt,
            step: r.step,
            head: r.head,
            push: r.push,
        }
    }
}

impl From<&core::RepoSpec> for v1::RepoSpec {
    fn from(r: &core::RepoSpec) -> Self {
        v1::RepoSpec {
            url: r.url.clone(),
            r#ref: r.git_ref.clone(),
            commit: r.commit.clone(),
            credentials_secret: r.credentials_secret.clone(),
            push: r.push,
            push_steps: r.push_steps,
            pull_request: r.pull_request.as_ref().map(|p| v1::PullRequestSpec {
                title: p.title.clone(),
                body: p.body.clone(),
                base: p.base.clone(),
                forge: p
                    .forge
                    .as_ref()
                    .map(|f| f.as_str().to_string())
                    .unwrap_or_default(),
                api_url: p.api_url.clone(),
                follow: p.follow,
                merge: p
                    .merge
                    .as_ref()
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
                max_fixes: p.max_fixes,
                owner: p.owner.clone(),
                poll_seconds: p.poll_seconds,
            }),
            exclusive: r
                .exclusive
                .as_ref()
                .map(|e| e.as_str().to_string())
                .unwrap_or_default(),
            land: r.land.as_ref().map(|l| v1::LandSpec {
                method: l.method.as_str().to_string(),
                base: l.base.clone(),
                checks: l.checks.iter().cloned().map(Into::into).collect(),
                batch: l.batch,
                max_fixes: l.max_fixes,
            }),
        }
    }
}

same_fields!(
    core::StepWork,
    v1::StepWork {
        branch,
        base_commit,
        head_commit,
        files_changed,
        insertions,
        deletions,
        changed_paths,
        committed_by_tidewright,
        pushed,
        pull_request_url,
    }
);

impl From<v1::StepSpec> for core::StepSpec {
    fn from(step: v1::StepSpec) -> Self {
        let (mut shell, mut noop, mut claude_code, mut codex, mut gemini_cli, mut deliver) =
            (None, None, None, None, None, None);
        let mut agent = None;
        match step.runtime {
            Some(v1::step_spec::Runtime::Shell(s)) => {
                shell = Some(core::ShellSpec {
                    command: s.command,
                    env: s.env.into_iter().collect(),
                    secret_env: s.secret_env.into_iter().collect(),
                    secret_files: s.secret_files.into_iter().collect(),
                });
            }
            Some(v1::step_spec::Runtime::Noop(_)) => noop = Some(core::NoopSpec {}),
            Some(v1::step_spec::Runtime::Deliver(_)) => {
                deliver = Some(core::spec::DeliverSpec {});
            }
            Some(v1::step_spec::Runtime::ClaudeCode(c)) => {
                claude_code = Some(core::ClaudeCodeSpec {
                    prompt: c.prompt,
                    model: Some(c.model).filter(|m| !m.is_empty()),
                    max_turns: (c.max_turns > 0).then_some(c.max_turns),
                    allowed_tools: c.allowed_tools,
                    permission_mode: Some(c.permission_mode)
                        .filter(|m| !m.is_empty())
                        .map(|m| core::PermissionMode::parse(&m)),
                });
            }
            Some(v1::step_spec::Runtime::Codex(c)) => {
                codex = Some(core::CodexSpec {
                    prompt: c.prompt,
                    model: Some(c.model).filter(|m| !m.is_empty()),
                    sandbox: core::CodexSandbox::from_wire(&c.sandbox),
                });
            }
            Some(v1::step_spec::Runtime::GeminiCli(g)) => {
                gemini_cli = Some(core::GeminiSpec {
                    prompt: g.prompt,
                    model: Some(g.model).filter(|m| !m.is_empty()),
                });
            }
            Some(v1::step_spec::Runtime::Agent(a)) => {
                agent = Some(core::AgentSpec {
                    cli: a.cli,
                    prompt: a.prompt,
                    model: Some(a.model).filter(|m| !m.is_empty()),
                });
            }
            None => {}
        }
        core::StepSpec {
            id: step.id,
            depends_on: step.depends_on,
            needs: step.needs,
            shell,
            noop,
            claude_code,
            codex,
            gemini_cli,
            agent,
            deliver,
            retry: step.retry.map(|r| core::RetryPolicy {
                max_attempts: r.max_attempts,
                initial_delay_ms: r.initial_delay_ms,
                max_delay_ms: r.max_delay_ms,
                multiplier: r.multiplier,
            }),
            timeout_seconds: (step.timeout_seconds > 0).then_some(step.timeout_seconds),
            stall_timeout_seconds: (step.stall_timeout_seconds > 0)
                .then_some(step.stall_timeout_seconds),
            approval: step.approval.map(|a| core::ApprovalSpec {
                message: a.message,
                approvers: a.approvers,
                timeout_seconds: (a.timeout_seconds > 0).then_some(a.timeout_seconds),
            }),
            touches: step.touches,
            touches_strict: step.touches_strict,
            on_conflict: Some(step.on_conflict)
                .filter(|p| !p.is_empty())
                .map(|p| core::OnConflict::parse(&p)),
            egress: step.egress.map(Into::into),
            limits: step.limits.map(|l| core::StepLimits {
                memory: Some(l.memory).filter(|m| !m.is_empty()),
                processes: (l.processes > 0).then_some(l.processes),
                open_files: (l.open_files > 0).then_some(l.open_files),
                cpu_seconds: (l.cpu_seconds > 0).then_some(l.cpu_seconds),
                disk: Some(l.disk).filter(|d| !d.is_empty()),
            }),
            verify: step.verify.map(Into::into),
            attempts: step.attempts.map(|a| core::attempts::AttemptsSpec {
                n: a.n,
                runtimes: a.runtimes,
                select: core::attempts::Select::parse(&a.select),
                stop_early: a.stop_early,
            }),
            select: step.select.map(|s| core::attempts::SelectSpec {
                attempts: s.attempts,
                select: core::attempts::Select::parse(&s.select),
                stop_early: s.stop_early,
                prompt: s.prompt,
            }),
            fallback: step.fallback,
            failover: step.failover.map(|f| core::failover::Failover {
                from: f.from,
                preferred: f.preferred,
                after_attempt: f.after_attempt,
                reason: f.reason,
                head: f.head,
                base: f.base,
                summary: f.summary,
            }),
            review: step.review.map(|r| core::review::ReviewSpec {
                runtime: r.runtime,
                must_pass: r.must_pass,
                rounds: (r.rounds > 0).then_some(r.rounds),
                focus: r.focus,
            }),
            review_of: step.review_of.map(|r| core::review::ReviewOf {
                step: r.step,
                must_pass: r.must_pass,
                rounds: r.rounds,
            }),
        }
    }
}

impl From<&core::TaskSpec> for v1::TaskSpec {
    fn from(spec: &core::TaskSpec) -> Self {
        v1::TaskSpec {
            name: spec.name.clone(),
            labels: spec.labels.clone().into_iter().collect(),
            priority: spec.priority,
            steps: spec.steps.iter().map(Into::into).collect(),
            prompt: spec.prompt.clone(),
            plan: spec.plan,
            budget: spec.budget.as_ref().map(|b| v1::Budget {
                usd: b.usd,
                tokens: b.tokens,
                approvers: b.approvers.clone(),
            }),
            repo: spec.repo.as_ref().map(Into::into),
            egress: spec.egress.as_ref().map(Into::into),
            retention_seconds: spec.retention_seconds,
            failback: spec.failback,
        }
    }
}

impl From<&core::StepSpec> for v1::StepSpec {
    fn from(step: &core::StepSpec) -> Self {
        // A step that sets both runtimes is invalid and never stored; the wire
        // oneof carries the first.
        let runtime = match (&step.shell, &step.noop, &step.claude_code) {
            (Some(shell), _, _) => Some(v1::step_spec::Runtime::Shell(v1::ShellRuntime {
                command: shell.command.clone(),
                env: shell.env.clone().into_iter().collect(),
                secret_env: shell.secret_env.clone().into_iter().collect(),
                secret_files: shell.secret_files.clone().into_iter().collect(),
            })),
            (None, Some(_), _) => Some(v1::step_spec::Runtime::Noop(v1::NoopRuntime {})),
            (None, None, Some(claude)) => {
                Some(v1::step_spec::Runtime::ClaudeCode(v1::ClaudeCodeRuntime {
                    prompt: claude.prompt.clone(),
                    model: claude.model.clone().unwrap_or_default(),
                    max_turns: claude.max_turns.unwrap_or(0),
                    allowed_tools: claude.allowed_tools.clone(),
                    permission_mode: claude
                        .permission_mode
                        .as_ref()
                        .map(|m| m.as_str().to_string())
                        .unwrap_or_default(),
                }))
            }
            (None, None, None) => match (&step.codex, &step.gemini_cli, &step.deliver) {
                (Some(codex), _, _) => Some(v1::step_spec::Runtime::Codex(v1::CodexRuntime {
                    prompt: codex.prompt.clone(),
                    model: codex.model.clone().unwrap_or_default(),
                    sandbox: codex
                        .sandbox
                        .as_ref()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                })),
                (None, Some(gemini), _) => {
                    Some(v1::step_spec::Runtime::GeminiCli(v1::GeminiCliRuntime {
                        prompt: gemini.prompt.clone(),
                        model: gemini.model.clone().unwrap_or_default(),
                    }))
                }
                (None, None, Some(_)) => {
                    Some(v1::step_spec::Runtime::Deliver(v1::DeliverRuntime {}))
                }
                (None, None, None) => step.agent.as_ref().map(|agent| {
                    v1::step_spec::Runtime::Agent(v1::AgentCliRuntime {
                        cli: agent.cli.clone(),
                        prompt: agent.prompt.clone(),
                        model: agent.model.clone().unwrap_or_default(),
                    })
                }),
            },
        };
        v1::StepSpec {
            id: step.id.clone(),
            depends_on: step.depends_on.clone(),
            needs: step.needs.clone(),
            runtime,
            retry: step.retry.as_ref().map(|r| v1::RetryPolicy {
                max_attempts: r.max_attempts,
                initial_delay_ms: r.initial_delay_ms,
                max_delay_ms: r.max_delay_ms,
                multiplier: r.multiplier,
            }),
            timeout_seconds: step.timeout_seconds.unwrap_or(0),
            stall_timeout_seconds: step.stall_timeout_seconds.unwrap_or(0),
            approval: step.approval.as_ref().map(|a| v1::Approval {
                message: a.message.clone(),
                approvers: a.approvers.clone(),
                timeout_seconds: a.timeout_seconds.unwrap_or(0),
            }),
            touches: step.touches.clone(),
            touches_strict: step.touches_strict,
            on_conflict: step
                .on_conflict
                .as_ref()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            egress: step.egress.as_ref().map(Into::into),
            limits: step.limits.as_ref().map(|l| v1::StepLimits {
                memory: l.memory.clone().unwrap_or_default(),
                processes: l.processes.unwrap_or(0),
                open_files: l.open_files.unwrap_or(0),
                cpu_seconds: l.cpu_seconds.unwrap_or(0),
                disk: l.disk.clone().unwrap_or_default(),
            }),
            verify: step.verify.clone().map(Into::into),
            attempts: step.attempts.as_ref().map(|a| v1::Attempts {
                n: a.n,
                runtimes: a.runtimes.clone(),
                select: a.select.as_str().to_string(),
                stop_early: a.stop_early,
            }),
            select: step.select.as_ref().map(|s| v1::SelectSpec {
                attempts: s.attempts.clone(),
                select: s.select.as_str().to_string(),
                stop_early: s.stop_early,
                prompt: s.prompt.clone(),
            }),
            fallback: step.fallback.clone(),
            failover: step.failover.as_ref().map(|f| v1::Failover {
                from: f.from.clone(),
                preferred: f.preferred.clone(),
                after_attempt: f.after_attempt,
                reason: f.reason.clone(),
                head: f.head.clone(),
                base: f.base.clone(),
                summary: f.summary.clone(),
            }),
            review: step.review.as_ref().map(|r| v1::ReviewSpec {
                runtime: r.runtime.clone(),
                must_pass: r.must_pass,
                rounds: r.rounds.unwrap_or(0),
                focus: r.focus.clone(),
            }),
            review_of: step.review_of.as_ref().map(|r| v1::ReviewOf {
                step: r.step.clone(),
                must_pass: r.must_pass,
                rounds: r.rounds,
            }),
        }
    }
}

impl From<v1::VerifySpec> for core::VerifySpec {
    fn from(v: v1::VerifySpec) -> Self {
        core::VerifySpec {
            checks: v.checks.into_iter().map(Into::into).collect(),
            rounds: (v.rounds > 0).then_some(v.rounds),
            protect: v.protect,
            rubric: v.rubric,
        }
    }
}

impl From<core::VerifySpec> for v1::VerifySpec {
    fn from(v: core::VerifySpec) -> Self {
        v1::VerifySpec {
            checks: v.checks.into_iter().map(Into::into).collect(),
            rounds: v.rounds.unwrap_or(0),
            protect: v.protect,
            rubric: v.rubric,
        }
    }
}

same_fields!(core::CheckSpec, v1::CheckSpec { name, run, timeout });

same_fields!(
    core::CheckResult,
    v1::CheckResult {
        name,
        passed,
        exit_code,
        trouble,
        millis,
        tail,
        paths
    }
);

impl From<v1::Verification> for core::Verification {
    fn from(v: v1::Verification) -> Self {
        core::Verification {
            round: v.round,
            head_commit: v.head_commit,
            checks: v.checks.into_iter().map(Into::into).collect(),
            protected: v.protected_paths,
            tests_removed: v.tests_removed,
            skips_added: v.skips_added,
            round_diff: v.round_diff,
            grade: v.grade.map(Into::into),
        }
    }
}

impl From<v1::Grade> for core::verify::Grade {
    fn from(g: v1::Grade) -> Self {
        core::verify::Grade {
            // Anything but "pass" needs revision: an unknown word never
            // passes work.
            verdict: match g.verdict.as_str() {
                "pass" => core::verify::Verdict::Pass,
                _ => core::verify::Verdict::NeedsRevision,
            },
            reasons: g.reasons,
            model: g.model,
            cost: g.cost.as_ref().map(Into::into).unwrap_or_default(),
            millis: g.millis,
        }
    }
}

impl From<core::verify::Grade> for v1::Grade {
    fn from(g: core::verify::Grade) -> Self {
        v1::Grade {
            verdict: g.verdict.as_str().into(),
            reasons: g.reasons,
            model: g.model,
            cost: Some(g.cost.into()),
            millis: g.millis,
        }
    }
}

impl From<core::Verification> for v1::Verification {
    fn from(v: core::Verification) -> Self {
        v1::Verification {
            round: v.round,
            head_commit: v.head_commit,
            checks: v.checks.into_iter().map(Into::into).collect(),
            protected_paths: v.protected,
            tests_removed: v.tests_removed,
            skips_added: v.skips_added,
            round_diff: v.round_diff,
            grade: v.grade.map(Into::into),
        }
    }
}

impl From<core::TaskState> for v1::TaskState {
    fn from(state: core::TaskState) -> Self {
        match state {
            core::TaskState::Queued => v1::TaskState::Queued,
            core::TaskState::Running => v1::TaskState::Running,
            core::TaskState::Paused => v1::TaskState::Paused,
            core::TaskState::Succeeded => v1::TaskState::Succeeded,
            core::TaskState::Failed => v1::TaskState::Failed,
            core::TaskState::Cancelled => v1::TaskState::Cancelled,
        }
    }
}

impl TryFrom<v1::TaskState> for core::TaskState {
    type Error = Error;
    fn try_from(state: v1::TaskState) -> Result<Self, Error> {
        Ok(match state {
            v1::TaskState::Queued => core::TaskState::Queued,
            v1::TaskState::Running => core::TaskState::Running,
            v1::TaskState::Paused => core::TaskState::Paused,
            v1::TaskState::Succeeded => core::TaskState::Succeeded,
            v1::TaskState::Failed => core::TaskState::Failed,
            v1::TaskState::Cancelled => core::TaskState::Cancelled,
            v1::TaskState::Unspecified => {
                return Err(Error::UnknownEnum {
                    field: "state",
                    value: 0,
                });
            }
        })
    }
}

/// Decodes a wire enum value, naming the field when it is unknown.
pub fn task_state(field: &'static str, value: i32) -> Result<core::TaskState, Error> {
    v1::TaskState::try_from(value)
        .map_err(|_| Error::UnknownEnum { field, value })
        .and_then(|s| core::TaskState::try_from(s).map_err(|_| Error::UnknownEnum { field, value }))
}

impl From<core::StepState> for v1::StepState {
    fn from(state: core::StepState) -> Self {
        match state {
            core::StepState::Waiting => v1::StepState::Waiting,
            core::StepState::AwaitingApproval => v1::StepState::AwaitingApproval,
            core::StepState::Queued => v1::StepState::Queued,
            core::StepState::Running => v1::StepState::Running,
            core::StepState::Succeeded => v1::StepState::Succeeded,
            core::StepState::Failed => v1::StepState::Failed,
            core::StepState::Cancelled => v1::StepState::Cancelled,
            core::StepState::Skipped => v1::StepState::Skipped,
        }
    }
}

same_fields!(
    core::AttemptKey,
    v1::AttemptRef {
        task_id,
        step_id,
        attempt,
    }
);

impl From<&core::AttemptKey> for v1::AttemptRef {
    fn from(key: &core::AttemptKey) -> Self {
        v1::AttemptRef {
            task_id: key.task_id.clone(),
            step_id: key.step_id.clone(),
            attempt: key.attempt,
        }
    }
}

impl From<core::Cost> for v1::Cost {
    fn from(cost: core::Cost) -> Self {
        v1::Cost {
            usd: cost.usd,
            input_tokens: cost.input_tokens,
            output_tokens: cost.output_tokens,
            cache_read_tokens: cost.cache_read_tokens,
            cache_creation_tokens: cost.cache_creation_tokens,
        }
    }
}

impl From<&v1::Cost> for core::Cost {
    fn from(cost: &v1::Cost) -> Self {
        core::Cost {
            // A worker's NaN or negative figure must not poison a sum.
            usd: if cost.usd.is_finite() && cost.usd > 0.0 {
                cost.usd
            } else {
                0.0
            },
            input_tokens: cost.input_tokens,
            output_tokens: cost.output_tokens,
            cache_read_tokens: cost.cache_read_tokens,
            cache_creation_tokens: cost.cache_creation_tokens,
        }
    }
}

impl From<core::LogStream> for v1::LogStream {
    fn from(stream: core::LogStream) -> Self {
        match stream {
            core::LogStream::Stdout => v1::LogStream::Stdout,
            core::LogStream::Stderr => v1::LogStream::Stderr,
        }
    }
}

impl From<v1::LogStream> for core::LogStream {
    fn from(stream: v1::LogStream) -> Self {
        match stream {
            v1::LogStream::Stderr => core::LogStream::Stderr,
            v1::LogStream::Stdout | v1::LogStream::Unspecified => core::LogStream::Stdout,
        }
    }
}

impl From<&core::Event> for v1::Event {
    fn from(event: &core::Event) -> Self {
        use v1::event::Kind;
        let kind = match &event.kind {
            core::EventKind::TaskState { state, message } => {
                Kind::TaskState(v1::TaskStateChanged {
                    state: v1::TaskState::from(*state) as i32,
                    message: message.clone(),
                })
            }
            core::EventKind::StepState {
                step,
                state,
                attempt,
                worker,
                message,
                waits_for,
                conflict,
            } => Kind::StepState(v1::StepStateChanged {
                step_id: step.clone(),
                state: v1::StepState::from(*state) as i32,
                attempt: *attempt,
                worker: worker.clone(),
                message: message.clone(),
                waits_for: waits_for.clone(),
                conflict: conflict.as_ref().map(|c| v1::MergeConflict {
                    with: c.with.clone(),
                    after: c.after.clone(),
                    paths: c.paths.clone(),
                }),
            }),
            core::EventKind::Progress {
                step,
                attempt,
                fraction,
                message,
            } => Kind::Progress(v1::StepProgress {
                step_id: step.clone(),
                attempt: *attempt,
                fraction: *fraction,
                message: message.clone(),
            }),
            core::EventKind::Log {
                step,
                attempt,
                stream,
                line,
            } => Kind::Log(v1::LogLine {
                step_id: step.clone(),
                attempt: *attempt,
                stream: v1::LogStream::from(*stream) as i32,
                line: line.clone(),
            }),
            core::EventKind::Egress {
                step,
                attempt,
                destination,
                allowed,
                reason,
            } => Kind::Egress(v1::StepEgress {
                step_id: step.clone(),
                attempt: *attempt,
                destination: destination.clone(),
                allowed: *allowed,
                reason: reason.clone(),
            }),
            core::EventKind::Verification {
                step,
                attempt,
                round,
                passed,
                message,
            } => Kind::Verification(v1::StepVerification {
                step_id: step.clone(),
                attempt: *attempt,
                round: *round,
                passed: *passed,
                message: message.clone(),
            }),
            core::EventKind::FailedOver {
                step,
                attempt,
                from,
                to,
                reason,
                carried,
            } => Kind::FailedOver(v1::StepFailedOver {
                step_id: step.clone(),
                attempt: *attempt,
                from: from.clone(),
                to: to.clone(),
                reason: reason.clone(),
                carried: *carried,
            }),
        };
        v1::Event {
            task_id: event.task_id.clone(),
            seq: event.seq,
            time: Some(timestamp(event.at)),
            position: 0,
            kind: Some(kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_writes_times_as_a_protobuf_timestamp_prints_them() {
        for micros in [
            0,
            1_795_000_000_000_000,
            1_795_000_000_123_000,
            1_795_000_000_123_456,
            -1,
            951_782_400_000_001,
            253_402_300_799_999_999,
        ] {
            assert_eq!(
                tidewright_core::calendar::rfc3339(micros),
                timestamp(micros).to_string(),
                "{micros}"
            );
        }
    }

    #[test]
    fn specs_round_trip() {
        let mut spec = core::TaskSpec {
            name: "t".into(),
            priority: 3,
            steps: vec![
                core::StepSpec::shell("a", &["echo", "hi"]),
                core::StepSpec::noop("b")
                    .after(&["a"])
                    .needing(&["gpu"])
                    .retrying(core::RetryPolicy::new(3)),
            ],
            budget: Some(core::Budget {
                usd: Some(1.5),
                tokens: None,
                approvers: vec!["lead".into()],
            }),
            repo: Some(core::RepoSpec {
                url: "https://github.com/org/repo.git".into(),
                git_ref: "main".into(),
                commit: "a".repeat(40),
                credentials_secret: "github-token".into(),
                push: true,
                push_steps: true,
                pull_request: Some(core::repo::PullRequestSpec {
                    title: "Add it".into(),
                    body: "Why".into(),
                    base: "main".into(),
                    forge: Some(core::repo::Forge::Gitlab),
                    api_url: "https://git.example.com/api/v4".into(),
                    follow: true,
                    merge: Some(core::repo::MergeMethod::Squash),
                    max_fixes: Some(0),
                    owner: "write".into(),
                    poll_seconds: 5,
                }),
                exclusive: Some(core::repo::Exclusive::Touches),
                land: Some(core::repo::LandSpec {
                    method: core::repo::LandMethod::Queue,
                    base: "release".into(),
                    checks: vec![core::CheckSpec {
                        name: "tests".into(),
                        run: vec!["make".into(), "test".into()],
                        timeout: "10m".into(),
                    }],
                    batch: 4,
                    max_fixes: Some(0),
                }),
            }),
            ..core::TaskSpec::default()
        };
        spec.labels.insert("team".into(), "infra".into());
        let wire = v1::TaskSpec::from(&spec);
        assert_eq!(core::TaskSpec::from(wire), spec);
    }

    #[test]
    fn timestamps_round_trip_including_before_the_epoch() {
        for micros_value in [0, 1, 1_700_000_000_123_456, -1_500_000] {
            assert_eq!(micros(&timestamp(micros_value)), micros_value);
        }
    }

    #[test]
    fn unknown_state_names_the_field() {
        assert_eq!(
            task_state("states[0]", 42),
            Err(Error::UnknownEnum {
                field: "states[0]",
                value: 42
            })
        );
        assert_eq!(task_state("s", 3), Ok(core::TaskState::Succeeded));
    }
}
