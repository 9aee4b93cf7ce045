//! A step's spec on the wire and in tidewright-core: every kind of step,
//! and what tidewright writes into a step (a failover, a review, a choice of
//! runtime), without loss in both directions.

use tidewright_core as core;

use crate::v1;

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
            credentials: step.credentials.into_iter().map(Into::into).collect(),
            limits: step.limits.map(Into::into),
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
            runtimes: core::auto::Runtimes::parse(&step.runtimes),
            chosen: step.chosen.map(|c| core::auto::Chosen {
                runtime: c.runtime,
                preferred: c.preferred,
                why: c.why,
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
            credentials: step.credentials.iter().map(Into::into).collect(),
            limits: step.limits.as_ref().map(Into::into),
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
            runtimes: step
                .runtimes
                .as_ref()
                .map(|r| r.as_str().to_string())
                .unwrap_or_default(),
            chosen: step.chosen.as_ref().map(|c| v1::Chosen {
                runtime: c.runtime.clone(),
                preferred: c.preferred.clone(),
                why: c.why.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_tidewright_writes_into_a_step_round_trips() {
        let step = core::StepSpec {
            noop: None,
            agent: Some(core::AgentSpec {
                cli: "codex".into(),
                prompt: "fix".into(),
                model: None,
            }),
            fallback: vec!["claude-code".into()],
            failover: Some(core::failover::Failover {
                from: "claude-code".into(),
                preferred: "claude-code".into(),
                after_attempt: 1,
                reason: "429".into(),
                head: "h".into(),
                base: "b".into(),
                summary: "did".into(),
            }),
            review: Some(core::review::ReviewSpec {
                runtime: "gemini-cli".into(),
                must_pass: true,
                rounds: Some(2),
                focus: "tests".into(),
            }),
            runtimes: Some(core::auto::Runtimes::Auto),
            chosen: Some(core::auto::Chosen {
                runtime: "codex".into(),
                preferred: "claude-code".into(),
                why: "cheaper".into(),
            }),
            ..core::StepSpec::noop("fix")
        };
        assert_eq!(core::StepSpec::from(v1::StepSpec::from(&step)), step);
        let unknown = v1::StepSpec {
            runtimes: "cheapest".into(),
            ..v1::StepSpec::from(&step)
        };
        assert_eq!(
            core::StepSpec::from(unknown).runtimes,
            Some(core::auto::Runtimes::Unknown("cheapest".into())),
            "validation refuses it by name"
        );
    }
}
