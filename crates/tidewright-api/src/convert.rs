//! Conversions between proto messages and tidewright-core's domain types. Specs
//! convert without loss in both directions; validation is tidewright-core's job.

use prost_types::Timestamp;
use tidewright_core as core;

use crate::{Error, v1};

mod step;

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

impl From<v1::SetupSpec> for core::setup::SetupSpec {
    fn from(setup: v1::SetupSpec) -> Self {
        core::setup::SetupSpec {
            run: setup.run,
            key: setup.key,
            paths: setup.paths,
            timeout: setup.timeout,
            limits: setup.limits.map(Into::into),
            secret_env: setup.secret_env.into_iter().collect(),
        }
    }
}

impl From<core::setup::SetupSpec> for v1::SetupSpec {
    fn from(setup: core::setup::SetupSpec) -> Self {
        v1::SetupSpec {
            run: setup.run,
            key: setup.key,
            paths: setup.paths,
            timeout: setup.timeout,
            limits: setup.limits.as_ref().map(Into::into),
            secret_env: setup.secret_env.into_iter().collect(),
        }
    }
}

/// Unset or 0 on the wire is unset in the core: the pool's.
impl From<v1::StepLimits> for core::StepLimits {
    fn from(l: v1::StepLimits) -> Self {
        core::StepLimits {
            memory: Some(l.memory).filter(|m| !m.is_empty()),
            processes: (l.processes > 0).then_some(l.processes),
            open_files: (l.open_files > 0).then_some(l.open_files),
            cpu_seconds: (l.cpu_seconds > 0).then_some(l.cpu_seconds),
            disk: Some(l.disk).filter(|d| !d.is_empty()),
        }
    }
}

impl From<&core::StepLimits> for v1::StepLimits {
    fn from(l: &core::StepLimits) -> Self {
        v1::StepLimits {
            memory: l.memory.clone().unwrap_or_default(),
            processes: l.processes.unwrap_or(0),
            open_files: l.open_files.unwrap_or(0),
            cpu_seconds: l.cpu_seconds.unwrap_or(0),
            disk: l.disk.clone().unwrap_or_default(),
        }
    }
}

impl From<v1::SetupReport> for core::setup::SetupReport {
    fn from(r: v1::SetupReport) -> Self {
        core::setup::SetupReport {
            seed: r.seed,
            source: core::setup::SetupSource::parse(&r.source),
            method: r.method,
            millis: r.millis,
            run_millis: r.run_millis,
            files: r.files,
            bytes: r.bytes,
            failed: r.failed,
            note: r.note,
        }
    }
}

impl From<&core::setup::SetupReport> for v1::SetupReport {
    fn from(r: &core::setup::SetupReport) -> Self {
        v1::SetupReport {
            seed: r.seed.clone(),
            source: r.source.as_str().to_string(),
            method: r.method.clone(),
            millis: r.millis,
            run_millis: r.run_millis,
            files: r.files,
            bytes: r.bytes,
            failed: r.failed,
            note: r.note.clone(),
        }
    }
}

impl From<&core::session_item::SessionItem> for v1::SessionItem {
    fn from(item: &core::session_item::SessionItem) -> Self {
        use core::session_item::SessionItem as I;
        let (kind, text, tool, call_id, error) = match item {
            I::Prompt { text } => ("prompt", text, "", "", false),
            I::Text { text } => ("text", text, "", "", false),
            I::Call { id, tool, input } => ("call", input, tool.as_str(), id.as_str(), false),
            I::Output { id, output, error } => ("output", output, "", id.as_str(), *error),
        };
        v1::SessionItem {
            kind: kind.to_string(),
            text: text.clone(),
            tool: tool.to_string(),
            call_id: call_id.to_string(),
            error,
        }
    }
}

impl TryFrom<v1::SessionItem> for core::session_item::SessionItem {
    /// The kind is not one of prompt, text, call, output.
    type Error = String;
    fn try_from(item: v1::SessionItem) -> Result<Self, String> {
        use core::session_item::SessionItem as I;
        Ok(match item.kind.as_str() {
            "prompt" => I::Prompt { text: item.text },
            "text" => I::Text { text: item.text },
            "call" => I::Call {
                id: item.call_id,
                tool: item.tool,
                input: item.text,
            },
            "output" => I::Output {
                id: item.call_id,
                output: item.text,
                error: item.error,
            },
            other => {
                return Err(format!(
                    "{other:?} is not a session item's kind: prompt, text, call or output"
                ));
            }
        })
    }
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

impl From<v1::Credential> for core::credential::Credential {
    fn from(c: v1::Credential) -> Self {
        let or = |value: String, default: &str| {
            if value.is_empty() {
                default.to_string()
            } else {
                value
            }
        };
        core::credential::Credential {
            host: c.host,
            secret: c.secret,
            header: or(c.header, "Authorization"),
            format: or(c.format, "{}"),
            env: c.env,
        }
    }
}

impl From<&core::credential::Credential> for v1::Credential {
    fn from(c: &core::credential::Credential) -> Self {
        v1::Credential {
            host: c.host.clone(),
            secret: c.secret.clone(),
            header: c.header.clone(),
            format: c.format.clone(),
            env: c.env.clone(),
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
            setup: r.setup.map(Into::into),
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
            setup: r.setup.clone().map(Into::into),
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
            core::EventKind::Setup {
                step,
                attempt,
                setup,
            } => Kind::Setup(v1::StepSetup {
                step_id: step.clone(),
                attempt: *attempt,
                setup: Some(setup.into()),
            }),
            core::EventKind::Steered {
                step,
                attempt,
                from,
                message,
                delivery,
            } => Kind::Steered(v1::StepSteered {
                step_id: step.clone(),
                attempt: *attempt,
                from: from.clone(),
                message: message.clone(),
                delivery: delivery.clone(),
            }),
            core::EventKind::SessionItem {
                step,
                attempt,
                item,
                usd,
            } => Kind::SessionItem(v1::StepSessionItem {
                step_id: step.clone(),
                attempt: *attempt,
                item: Some(item.into()),
                usd: *usd,
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
                setup: Some(core::setup::SetupSpec {
                    run: vec!["npm".into(), "ci".into()],
                    key: vec!["package-lock.json".into()],
                    paths: vec!["node_modules".into()],
                    timeout: "20m".into(),
                    limits: Some(core::StepLimits {
                        memory: Some("4GiB".into()),
                        processes: Some(512),
                        ..core::StepLimits::default()
                    }),
                    secret_env: [("NPM_TOKEN".to_string(), "npm-token".to_string())].into(),
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
