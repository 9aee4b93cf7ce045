//! Planning: what the model is asked to turn a task's prompt into steps,
//! the JSON schema its answer must follow, and reading that answer back
//! into steps. The answer then goes through the same validation as any
//! submitted task. Pure; the HTTP call is the control plane's.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::spec::{AGENT_CAPABILITIES, CLAUDE_CODE, CODEX, GEMINI_CLI};
use crate::spec::{AgentSpec, ClaudeCodeSpec, CodexSpec, GeminiSpec, ShellSpec, StepSpec};

/// The tool the model must call with its plan: its input is the plan.
pub const PLAN_TOOL: &str = "submit_plan";

/// The system prompt: how a plan is shaped and what it may use.
pub fn system_prompt(capability_sets: &[Vec<String>]) -> String {
    let workers = if capability_sets.is_empty() {
        "No worker is connected right now; plan for claude-code workers.".to_string()
    } else {
        let sets: Vec<String> = capability_sets
            .iter()
            .map(|set| format!("- [{}]", set.join(", ")))
            .collect();
        format!(
            "The workers connected now offer these sets of capabilities:\n{}",
            sets.join("\n")
        )
    };
    format!(
        "You plan work for tidewright, which runs AI coding agents. Break the user's request \
into a small DAG of steps and submit it with the {PLAN_TOOL} tool.\n\n\
Each step is either an agent step (`prompt`: a self-contained instruction for an AI coding \
agent working in its own empty directory) or a command step (`command`: an argv, no shell \
string). An agent step's `runtime` is the agent that runs it: `claude-code` (Claude Code, the \
default), `codex` (OpenAI's Codex) or `gemini-cli` (Google's Gemini CLI); each is also the \
capability a worker must offer to run it, so use only runtimes some worker offers, and pick \
per step by what suits the work. `allowedTools` and `maxTurns` are for claude-code steps \
only. A step runs after the steps in its `dependsOn` succeed, and finds their outputs in \
context/inputs.json. `needs` lists further capabilities a worker must offer. Use only \
capabilities that exist. Step ids are lowercase letters, \
digits, '-' and '_'. Prefer few steps; run independent work in parallel. When the task \
works on a repository, give each step that changes files its `touches`: globs of the paths it \
will change (`src/api/**`); steps whose globs may overlap do not run at once. When the task \
works on a repository and the request names tests or a check that must pass, give the agent \
step that changes the code a `verify`: its `checks`, each a `name` and a `run` argv run on the \
step's committed work (`{{\"name\": \"tests\", \"run\": [\"cargo\", \"test\"]}}`), and `protect`, \
globs of paths it may not change; the agent is sent back what failed until they pass.\n\n{workers}"
    )
}

/// The JSON schema of the plan tool's input.
pub fn plan_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "A short name for the task."},
            "steps": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
                        "dependsOn": {"type": "array", "items": {"type": "string"}},
                        "needs": {"type": "array", "items": {"type": "string"}},
                        "prompt": {"type": "string", "description": "An agent step's instruction."},
                        "runtime": {"type": "string", "enum": AGENT_CAPABILITIES,
                                    "description": "The agent that runs a prompt step; claude-code when not given."},
                        "allowedTools": {"type": "array", "items": {"type": "string"}},
                        "maxTurns": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "command": {"type": "array", "items": {"type": "string"},
                                    "description": "A command step's argv."},
                        "touches": {"type": "array", "items": {"type": "string"},
                                    "description": "Globs of the repository paths the step will change, e.g. src/api/**."},
                        "verify": {
                            "type": "object",
                            "description": "An agent step on a repository: checks that must pass on its committed work.",
                            "properties": {
                                "checks": {"type": "array", "minItems": 1, "items": {
                                    "type": "object",
                                    "properties": {
                                        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
                                        "run": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                                        "timeout": {"type": "string", "description": "90s, 15m, 1h"}
                                    },
                                    "required": ["name", "run"],
                                    "additionalProperties": false
                                }},
                                "rounds": {"type": "integer", "minimum": 1, "maximum": 20},
                                "protect": {"type": "array", "items": {"type": "string"}}
                            },
                            "required": ["checks"],
                            "additionalProperties": false
                        }
                    },
                    "required": ["id"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["steps"],
        "additionalProperties": false
    })
}

/// A planned task: its name (may be empty) and steps, not yet validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub steps: Vec<StepSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanAnswer {
    #[serde(default)]
    name: String,
    steps: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlannedStep {
    id: String,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    needs: Vec<String>,
    prompt: Option<String>,
    runtime: Option<String>,
    #[serde(default)]
    allowed_tools: Vec<String>,
    max_turns: Option<u32>,
    command: Option<Vec<String>>,
    #[serde(default)]
    touches: Vec<String>,
    verify: Option<crate::verify::VerifySpec>,
}

/// Reads the plan tool's input into steps; the error names what is wrong
/// (`steps[1]: unknown field ...`, `steps[0]: sets both prompt and command`).
pub fn parse_plan(input: &Value) -> Result<Plan, String> {
    let answer: PlanAnswer =
        serde_json::from_value(input.clone()).map_err(|e| format!("the plan: {e}"))?;
    let mut steps = Vec::with_capacity(answer.steps.len());
    for (i, raw) in answer.steps.into_iter().enumerate() {
        let planned: PlannedStep =
            serde_json::from_value(raw).map_err(|e| format!("steps[{i}]: {e}"))?;
        let mut step = StepSpec {
            id: planned.id.clone(),
            depends_on: planned.depends_on,
            needs: planned.needs,
            touches: planned.touches,
            verify: planned.verify,
            ..StepSpec::default()
        };
        if planned.runtime.is_some() && planned.prompt.is_none() {
            return Err(format!(
                "steps[{i}]: step {:?} names a runtime but no prompt: a runtime runs an agent step",
                planned.id
            ));
        }
        match (planned.prompt, planned.command) {
            (Some(prompt), None) => {
                let runtime = planned.runtime.as_deref().unwrap_or(CLAUDE_CODE);
                let claude_only = !planned.allowed_tools.is_empty() || planned.max_turns.is_some();
                if runtime != CLAUDE_CODE && claude_only {
                    return Err(format!(
                        "steps[{i}]: step {:?} runs on {runtime}, but allowedTools and maxTurns are for claude-code steps",
                        planned.id
                    ));
                }
                match runtime {
                    CLAUDE_CODE => {
                        step.claude_code = Some(ClaudeCodeSpec {
                            prompt,
                            max_turns: planned.max_turns,
                            allowed_tools: planned.allowed_tools,
                            ..ClaudeCodeSpec::default()
                        })
                    }
                    CODEX => {
                        step.codex = Some(CodexSpec {
                            prompt,
                            ..CodexSpec::default()
                        })
                    }
                    GEMINI_CLI => {
                        step.gemini_cli = Some(GeminiSpec {
                            prompt,
                            ..GeminiSpec::default()
                        })
                    }
                    other if crate::spec::is_agent_capability(other) => {
                        step.agent = Some(AgentSpec {
                            cli: other.to_string(),
                            prompt,
                            model: None,
                        })
                    }
                    other => {
                        return Err(format!(
                            "steps[{i}]: step {:?} names runtime {other:?}, not one of {}",
                            planned.id,
                            AGENT_CAPABILITIES.join(", ")
                        ));
                    }
                }
            }
            (None, Some(command)) => {
                step.shell = Some(ShellSpec {
                    command,
                    ..ShellSpec::default()
                })
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "steps[{i}]: step {:?} sets both a prompt and a command",
                    planned.id
                ));
            }
            (None, None) => {
                return Err(format!(
                    "steps[{i}]: step {:?} sets neither a prompt nor a command",
                    planned.id
                ));
            }
        }
        steps.push(step);
    }
    Ok(Plan {
        name: answer.name,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TaskSpec;
    use crate::validate::{Limits, validate};

    #[test]
    fn a_plan_becomes_agent_and_command_steps() {
        let plan = parse_plan(&json!({
            "name": "fix",
            "steps": [
                {"id": "investigate", "prompt": "Find the bug", "allowedTools": ["Read"], "maxTurns": 5},
                {"id": "test", "command": ["cargo", "test"], "dependsOn": ["investigate"], "needs": ["rust"]}
            ]
        }))
        .expect("a plan");
        assert_eq!(plan.name, "fix");
        let agent = plan.steps[0].claude_code.as_ref().expect("agent step");
        assert_eq!(
            (agent.prompt.as_str(), agent.max_turns),
            ("Find the bug", Some(5))
        );
        assert_eq!(agent.allowed_tools, ["Read"]);
        let shell = plan.steps[1].shell.as_ref().expect("command step");
        assert_eq!(shell.command, ["cargo", "test"]);
        assert_eq!(plan.steps[1].depends_on, ["investigate"]);
        let spec = TaskSpec {
            steps: plan.steps,
            ..TaskSpec::default()
        };
        assert_eq!(validate(&spec, &Limits::default()), Ok(()));
    }

    #[test]
    fn a_malformed_plan_says_where() {
        let err = |v: Value| parse_plan(&v).expect_err("malformed");
        assert!(err(json!({"name": "x"})).contains("missing field `steps`"));
        assert!(
            err(json!({"steps": [{"id": "a", "prompt": "p", "shell": "ls"}]}))
                .starts_with("steps[0]: unknown field `shell`")
        );
        assert_eq!(
            err(json!({"steps": [{"id": "a", "prompt": "p"}, {"id": "b"}]})),
            "steps[1]: step \"b\" sets neither a prompt nor a command"
        );
        assert!(
            err(json!({"steps": [{"id": "a", "prompt": "p", "command": ["ls"]}]})).contains("both")
        );
        assert!(err(json!("just text")).starts_with("the plan: "));
    }

    #[test]
    fn an_agent_step_runs_on_the_runtime_the_plan_names() {
        let plan = parse_plan(&json!({"steps": [
            {"id": "write", "prompt": "Write it", "runtime": "codex"},
            {"id": "review", "prompt": "Review it", "runtime": "gemini-cli", "dependsOn": ["write"]},
            {"id": "fix", "prompt": "Fix it", "runtime": "claude-code", "maxTurns": 3, "dependsOn": ["review"]}
        ]}))
        .expect("a plan");
        assert_eq!(
            plan.steps[0].codex.as_ref().map(|c| c.prompt.as_str()),
            Some("Write it")
        );
        assert_eq!(
            plan.steps[1].gemini_cli.as_ref().map(|g| g.prompt.as_str()),
            Some("Review it")
        );
        assert_eq!(
            plan.steps[2].claude_code.as_ref().and_then(|c| c.max_turns),
            Some(3)
        );
        let spec = TaskSpec {
            steps: plan.steps,
            ..TaskSpec::default()
        };
        assert_eq!(validate(&spec, &Limits::default()), Ok(()));
        let schema = plan_schema();
        let runtime = &schema["properties"]["steps"]["items"]["properties"]["runtime"];
        assert_eq!(
            runtime["enum"],
            json!(["claude-code", "codex", "gemini-cli", "qwen-code"])
        );

        let err = |v: Value| parse_plan(&v).expect_err("refused");
        assert_eq!(
            err(json!({"steps": [{"id": "a", "prompt": "p", "runtime": "cursor"}]})),
            "steps[0]: step \"a\" names runtime \"cursor\", not one of claude-code, codex, gemini-cli, qwen-code"
        );
        // An agent CLI with no runtime field of its own runs as an `agent` step.
        let qwen =
            parse_plan(&json!({"steps": [{"id": "a", "prompt": "p", "runtime": "qwen-code"}]}))
                .expect("a plan");
        assert_eq!(
            qwen.steps[0]
                .agent
                .as_ref()
                .map(|a| (a.cli.as_str(), a.prompt.as_str())),
            Some(("qwen-code", "p"))
        );
        assert!(
            err(json!({"steps": [{"id": "a", "prompt": "p", "runtime": "codex", "maxTurns": 2}]}))
                .contains("allowedTools and maxTurns are for claude-code steps")
        );
        assert!(
            err(json!({"steps": [{"id": "a", "command": ["ls"], "runtime": "codex"}]}))
                .contains("names a runtime but no prompt")
        );
    }

    #[test]
    fn a_planned_agent_step_may_be_verified_and_the_prompt_says_when() {
        let plan = parse_plan(&json!({"steps": [{
            "id": "fix", "prompt": "fix the flaky test", "touches": ["src/**"],
            "verify": {"checks": [{"name": "tests", "run": ["cargo", "test"], "timeout": "15m"}],
                       "protect": ["tests/**"]}
        }]}))
        .expect("a verified step");
        let verify = plan.steps[0].verify.clone().expect("verify");
        assert_eq!(verify.checks[0].run, ["cargo", "test"]);
        assert_eq!(verify.protect, ["tests/**"]);
        // Validated as any task: on a repository it stands.
        let spec = TaskSpec {
            steps: plan.steps,
            repo: Some(crate::RepoSpec {
                url: "https://git.example/app.git".into(),
                ..crate::RepoSpec::default()
            }),
            ..TaskSpec::default()
        };
        validate(&spec, &Limits::default()).expect("valid");
        assert!(
            parse_plan(&json!({"steps": [{"id": "a", "prompt": "p", "verify": {"checks": [{"name": "t", "run": ["x"], "shell": true}]}}]}))
                .expect_err("an unknown field")
                .contains("unknown field `shell`")
        );
        assert!(
            system_prompt(&[]).contains("give the agent step that changes the code a `verify`")
        );
        let schema = plan_schema();
        assert_eq!(
            schema["properties"]["steps"]["items"]["properties"]["verify"]["required"],
            json!(["checks"])
        );
    }

    #[test]
    fn a_cyclic_plan_parses_but_fails_validation_naming_the_cycle() {
        let plan = parse_plan(&json!({"steps": [
            {"id": "a", "prompt": "p", "dependsOn": ["b"]},
            {"id": "b", "prompt": "q", "dependsOn": ["a"]}
        ]}))
        .expect("well-formed");
        let spec = TaskSpec {
            steps: plan.steps,
            ..TaskSpec::default()
        };
        let err = validate(&spec, &Limits::default()).expect_err("a cycle");
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[test]
    fn the_prompt_names_the_capabilities_on_offer() {
        let prompt = system_prompt(&[
            vec!["claude-code".into()],
            vec!["rust".into(), "shell".into()],
        ]);
        assert!(
            prompt.contains("- [claude-code]\n- [rust, shell]"),
            "{prompt}"
        );
        assert!(system_prompt(&[]).contains("No worker is connected"));
        assert_eq!(plan_schema()["required"], json!(["steps"]));
    }
}
