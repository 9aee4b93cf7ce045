//! Task templates: a task file with typed parameters, substituted into its
//! name, labels, prompts, models, commands, env and approvals as
//! `${{ name }}`.
//!
//! Substitution is safe by construction. A value lands inside the one
//! string that names it: a command's argument stays one argument (commands
//! run as argv, never through a shell), and an env value stays that value.
//! A template that puts a parameter inside a script an interpreter runs
//! (`sh -c "...${{ x }}..."`, `python -c`, `node -e`...) is refused when it
//! loads: there a value could become code. It passes the value in `env`
//! instead, and the script quotes it (`"$NAME"`).
//!
//! Unknown and missing parameters, and values of the wrong type, are
//! refused by name before anything is submitted.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, invalid};
use crate::spec::TaskSpec;
use crate::validate::{Limits, validate};

/// The templates tidewright ships (`templates/` of the repository): (name, YAML
/// file). The CLI and the operator both offer them.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("deploy", include_str!("../templates/deploy.yaml")),
    ("feature", include_str!("../templates/feature.yaml")),
    ("fix-ci", include_str!("../templates/fix-ci.yaml")),
    ("fix-issue", include_str!("../templates/fix-issue.yaml")),
    (
        "parallel-feature",
        include_str!("../templates/parallel-feature.yaml"),
    ),
    ("pr-command", include_str!("../templates/pr-command.yaml")),
    ("refactor", include_str!("../templates/refactor.yaml")),
];

/// A template's file, and where it came from: `built-in`, or its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFile {
    pub name: String,
    pub text: String,
    pub origin: String,
}

impl TemplateFile {
    /// The checked template; a refusal says which file.
    pub fn load(&self) -> Result<Template, Error> {
        let within = |e: Error| match e {
            Error::Invalid { field, message } => invalid(
                field,
                format!("template {} ({}): {message}", self.name, self.origin),
            ),
            other => other,
        };
        // Not YAML: the file and the parser's line and column say where.
        let value: Value = serde_yaml::from_str(&self.text)
            .map_err(|e| invalid(&self.origin, format!("template {}: {e}", self.name)))?;
        Template::from_value(&self.name, value).map_err(within)
    }
}

/// The templates on offer, by name: `dir`'s (each `NAME.yaml` or
/// `NAME.yml`; other files are left alone), then the built-ins that `dir`
/// does not replace.
pub fn catalog(dir: Option<&Path>) -> std::io::Result<Vec<TemplateFile>> {
    let mut found = Vec::new();
    if let Some(dir) = dir {
        let within =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
        for entry in std::fs::read_dir(dir).map_err(within)? {
            let path = entry.map_err(within)?.path();
            let Some(name) = template_name(&path) else {
                continue;
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            found.push(TemplateFile {
                name,
                text,
                origin: path.display().to_string(),
            });
        }
    }
    for (name, text) in BUILT_IN {
        if !found.iter().any(|f| f.name == *name) {
            found.push(TemplateFile {
                name: name.to_string(),
                text: text.to_string(),
                origin: "built-in".into(),
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// `NAME.yaml` (or `.yml`) names template NAME.
fn template_name(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?;
    if !matches!(extension, "yaml" | "yml") {
        return None;
    }
    Some(path.file_stem()?.to_str()?.to_string())
}

/// A parameter's type; its value is checked, and written canonically.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    #[default]
    String,
    Integer,
    Number,
    Boolean,
}

impl ParameterType {
    pub fn name(self) -> &'static str {
        match self {
            ParameterType::String => "string",
            ParameterType::Integer => "integer",
            ParameterType::Number => "number",
            ParameterType::Boolean => "boolean",
        }
    }

    /// A value of this type, as a template's text has it; `None` when the
    /// text is not one.
    fn parse(self, text: &str) -> Option<Value> {
        match self {
            ParameterType::String => (!text.contains('\0')).then(|| Value::from(text)),
            ParameterType::Integer => text.trim().parse::<i64>().ok().map(Value::from),
            ParameterType::Number => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(Value::from),
            ParameterType::Boolean => match text.trim() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Parameter {
    #[serde(rename = "type", default)]
    pub kind: ParameterType,
    #[serde(default)]
    pub description: String,
    /// Used when the parameter is not given.
    #[serde(default)]
    pub default: Option<Value>,
    /// Must be given (a default makes no sense then).
    #[serde(default)]
    pub required: bool,
    /// The only values accepted, when not empty.
    #[serde(default)]
    pub allowed: Vec<Value>,
    /// What a required parameter is checked with when the template loads
    /// (a repository URL, say); a plain sample value when unset.
    #[serde(default)]
    pub example: Option<Value>,
}

/// A loaded, checked template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: String,
    pub description: String,
    pub parameters: BTreeMap<String, Parameter>,
    /// The task file, placeholders and all.
    body: Value,
}

/// A parameter's name: a letter, then letters, digits, `_` and `-`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 63
}

/// One piece of a string: text as it is, or a parameter's placeholder.
enum Piece<'a> {
    Text(&'a str),
    Parameter(&'a str),
}

/// Splits `text` at its `${{ name }}` placeholders.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        found.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else {
            return Err("a `${{` without its `}}`".into());
        };
        let name = after[..end].trim();
        if !valid_name(name) {
            return Err(format!("`${{{{ {name} }}}}` does not name a parameter"));
        }
        found.push(Piece::Parameter(name));
        rest = &after[end + 2..];
    }
    found.push(Piece::Text(rest));
    Ok(found)
}

/// Where parameters may go: the paths of the task file's string values
/// that are text to a person, a model or a program's argv and env.
fn substitutable(path: &[String]) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(
        p.as_slice(),
        ["name"]
            | ["labels", _]
            | ["prompt"]
            | ["steps", _, "claudeCode", "prompt" | "model"]
            | ["steps", _, "shell", "command", _]
            | ["steps", _, "shell", "env", _]
            | ["steps", _, "approval", "message"]
            | ["steps", _, "approval", "approvers", _]
            | ["steps", _, "touches", _]
            | ["steps", _, "verify", "checks", _, "run", _]
            | ["steps", _, "verify", "protect", _]
            | ["steps", _, "egress", "allow", _]
            | ["egress", "allow", _]
            | ["repo", "url" | "ref" | "credentialsSecret"]
            | [
                "repo",
                "pullRequest",
                "title" | "body" | "base" | "forge" | "apiUrl" | "merge"
            ]
    )
}

/// The index of the argument an interpreter runs as code, in `command`:
/// what follows `-c` for shells and Python, `-e` for Node, Perl and Ruby.
fn script_argument(command: &[Value]) -> Option<usize> {
    let program = command.first()?.as_str()?;
    let program = program.rsplit('/').next().unwrap_or(program);
    let flag = match program {
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash" | "fish" | "busybox" => 'c',
        p if p.starts_with("python") => 'c',
        "node" | "nodejs" | "perl" | "ruby" | "deno" | "bun" => 'e',
        _ => return None,
    };
    command.iter().enumerate().skip(1).find_map(|(i, arg)| {
        let arg = arg.as_str()?;
        let short = arg.starts_with('-') && !arg.starts_with("--") && arg[1..].contains(flag);
        let long = matches!(arg, "--command" | "--eval");
        (short || long).then_some(i + 1)
    })
}

fn field(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

impl Template {
    /// Loads a template from its file, read as JSON (YAML files are read
    /// by the caller): `description`, `parameters`, and the task file's
    /// fields. Every placeholder must name a parameter and stand where
    /// parameters may go; the task rendered with the defaults (or samples
    /// of required ones) must be a valid task.
    pub fn from_value(name: &str, file: Value) -> Result<Template, Error> {
        let Value::Object(mut file) = file else {
            return Err(invalid("template", "a template is a mapping"));
        };
        let description = match file.remove("description") {
            None => String::new(),
            Some(Value::String(text)) => text,
            Some(_) => return Err(invalid("description", "must be text")),
        };
        let parameters: BTreeMap<String, Parameter> = match file.remove("parameters") {
            None => BTreeMap::new(),
            Some(value) => {
                serde_json::from_value(value).map_err(|e| invalid("parameters", e.to_string()))?
            }
        };
        for (key, parameter) in &parameters {
            let at = format!("parameters.{key}");
            if !valid_name(key) {
                return Err(invalid(
                    at,
                    "a name is a letter, then letters, digits, '_' or '-'",
                ));
            }
            if parameter.required && parameter.default.is_some() {
                return Err(invalid(at, "a required parameter has no default"));
            }
            if let Some(default) = &parameter.default {
                check_value(key, parameter, &text_of(default))
                    .map_err(|e| invalid(format!("{at}.default"), e))?;
            }
            for (i, allowed) in parameter.allowed.iter().enumerate() {
                check_value(
                    key,
                    &Parameter {
                        allowed: Vec::new(),
                        ..parameter.clone()
                    },
                    &text_of(allowed),
                )
                .map_err(|e| invalid(format!("{at}.allowed[{i}]"), e))?;
            }
        }
        let template = Template {
            name: name.to_string(),
            description,
            parameters,
            body: Value::Object(file),
        };
        template.check_placements(&template.body, &mut Vec::new())?;
        // A sample rendering must be a task: mistakes show now, not when
        // someone runs it.
        let samples: Vec<(String, String)> = template
            .parameters
            .iter()
            .filter(|(_, p)| p.required)
            .map(|(key, p)| {
                let sample = p
                    .example
                    .as_ref()
                    .or(p.allowed.first())
                    .map(text_of)
                    .unwrap_or_else(|| match p.kind {
                        ParameterType::String => "sample".into(),
                        ParameterType::Integer | ParameterType::Number => "1".into(),
                        ParameterType::Boolean => "true".into(),
                    });
                (key.clone(), sample)
            })
            .collect();
        template.render(&samples).map_err(|e| match e {
            Error::Invalid { field, message } => {
                invalid(field, format!("{message} (rendered with sample values)"))
            }
            other => other,
        })?;
        Ok(template)
    }

    /// Every placeholder names a parameter and stands where parameters
    /// may go, never inside a script.
    fn check_placements(&self, value: &Value, path: &mut Vec<String>) -> Result<(), Error> {
        match value {
            Value::String(text) => {
                let mut named = Vec::new();
                for piece in pieces(text).map_err(|e| invalid(field(path), e))? {
                    if let Piece::Parameter(name) = piece {
                        named.push(name);
                    }
                }
                if named.is_empty() {
                    return Ok(());
                }
                if !substitutable(path) {
                    return Err(invalid(
                        field(path),
                        "parameters go only in the name, labels, prompts, models, commands, env, approvals, touches, egress allow-lists and the repo",
                    ));
                }
                for name in named {
                    if !self.parameters.contains_key(name) {
                        return Err(invalid(
                            field(path),
                            format!("`{name}` is not one of the template's parameters"),
                        ));
                    }
                }
                Ok(())
            }
            Value::Array(items) => {
                let is_command = matches!(
                    path.iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .as_slice(),
                    ["steps", _, "shell", "command"]
                );
                if is_command
                    && let Some(script) = script_argument(items)
                    && items
                        .get(script)
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.contains("${{"))
                {
                    path.push(script.to_string());
                    let at = field(path);
                    path.pop();
                    return Err(invalid(
                        at,
                        "a parameter inside a script could run as code: pass it in `env` (NAME: \"${{ name }}\") and quote it in the script (\"$NAME\")",
                    ));
                }
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    self.check_placements(item, path)?;
                    path.pop();
                }
                Ok(())
            }
            Value::Object(map) => {
                for (key, item) in map {
                    path.push(key.clone());
                    self.check_placements(item, path)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The task, with `given` values (`name`, text) and the defaults. An
    /// unknown name, a missing required one, or a value of the wrong type
    /// is refused, naming the parameter.
    pub fn render(&self, given: &[(String, String)]) -> Result<TaskSpec, Error> {
        let mut values: BTreeMap<&str, Value> = BTreeMap::new();
        for (key, text) in given {
            let at = format!("parameters.{key}");
            let Some(parameter) = self.parameters.get(key) else {
                let known: Vec<&str> = self.parameters.keys().map(String::as_str).collect();
                return Err(invalid(
                    at,
                    format!(
                        "not a parameter of template {}; it takes: {}",
                        self.name,
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            if values.contains_key(key.as_str()) {
                return Err(invalid(at, "given twice"));
            }
            let value = check_value(key, parameter, text).map_err(|e| invalid(&at, e))?;
            values.insert(key, value);
        }
        for (key, parameter) in &self.parameters {
            if values.contains_key(key.as_str()) {
                continue;
            }
            match &parameter.default {
                Some(default) => {
                    values.insert(key, default.clone());
                }
                None if parameter.required => {
                    return Err(invalid(
                        format!("parameters.{key}"),
                        match parameter.description.as_str() {
                            "" => "required".to_string(),
                            what => format!("required: {what}"),
                        },
                    ));
                }
                // Optional without a default: empty text.
                None => {
                    values.insert(key, Value::from(""));
                }
            }
        }
        let mut body = self.body.clone();
        substitute(&mut body, &values)?;
        // An empty model (a parameter left at "") is the worker's default.
        if let Some(steps) = body.get_mut("steps").and_then(Value::as_array_mut) {
            for step in steps {
                if let Some(Value::Object(agent)) = step.get_mut("claudeCode")
                    && agent.get("model").is_some_and(|m| m == "")
                {
                    agent.remove("model");
                }
            }
        }
        if let Value::Object(map) = &mut body
            && !map.contains_key("name")
        {
            map.insert("name".into(), Value::from(self.name.as_str()));
        }
        let mut spec: TaskSpec = serde_json::from_value(body)
            .map_err(|e| invalid("template", format!("{}: {e}", self.name)))?;
        // Which template made it, for the runtimes' scores by template.
        spec.labels
            .entry(crate::attempts::score::TEMPLATE_LABEL.to_string())
            .or_insert_with(|| self.name.clone());
        validate(&spec, &Limits::default())?;
        Ok(spec)
    }
}

/// A JSON value as the text a `-p` flag would give.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn check_value(key: &str, parameter: &Parameter, text: &str) -> Result<Value, String> {
    let value = parameter.kind.parse(text).ok_or_else(|| {
        format!(
            "{text:?} is not a {} (parameter {key})",
            parameter.kind.name()
        )
    })?;
    if !parameter.allowed.is_empty()
        && !parameter
            .allowed
            .iter()
            .any(|a| text_of(a) == text_of(&value))
    {
        let allowed: Vec<String> = parameter.allowed.iter().map(text_of).collect();
        return Err(format!("{text:?} is not one of {}", allowed.join(", ")));
    }
    Ok(value)
}

/// Replaces every placeholder in the string values of `value`.
fn substitute(value: &mut Value, values: &BTreeMap<&str, Value>) -> Result<(), Error> {
    match value {
        Value::String(text) if text.contains("${{") => {
            let mut out = String::with_capacity(text.len());
            for piece in pieces(text).map_err(|e| invalid("template", e))? {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Parameter(name) => {
                        out.push_str(&values.get(name).map(text_of).unwrap_or_default())
                    }
                }
            }
            *text = out;
        }
        Value::Array(items) => {
            for item in items {
                substitute(item, values)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                substitute(item, values)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(file: Value) -> Result<Template, Error> {
        Template::from_value("t", file)
    }

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_verified_steps_checks_and_protected_paths_take_parameters() {
        let verified = template(json!({
            "parameters": {"target": {"default": "test"}, "fixtures": {"default": "tests/fixtures/**"}},
            "repo": {"url": "https://git.example/app.git"},
            "steps": [{"id": "fix", "claudeCode": {"prompt": "fix it"},
                       "verify": {"checks": [{"name": "tests", "run": ["make", "${{ target }}"]}],
                                  "protect": ["${{ fixtures }}"]}}],
        }))
        .expect("loads");
        let spec = verified
            .render(&given(&[("target", "check; rm -rf /")]))
            .expect("renders");
        let verify = spec.steps[0].verify.clone().expect("verify");
        assert_eq!(
            verify.checks[0].run,
            ["make", "check; rm -rf /"],
            "one argument"
        );
        assert_eq!(verify.protect, ["tests/fixtures/**"]);
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("not a field's error: {other}"),
        }
    }

    fn greeter() -> Template {
        template(json!({
            "description": "Greets someone.",
            "parameters": {
                "who": {"type": "string", "required": true, "description": "whom to greet"},
                "times": {"type": "integer", "default": 2},
                "loud": {"type": "boolean", "default": false},
                "tone": {"allowed": ["warm", "dry"], "default": "warm"},
            },
            "name": "greet ${{ who }}",
            "labels": {"who": "${{who}}"},
            "steps": [
                {"id": "say", "shell": {
                    "command": ["echo", "hello ${{ who }}", "${{ times }}"],
                    "env": {"LOUD": "${{ loud }}", "TONE": "${{ tone }}"}
                }},
                {"id": "think", "dependsOn": ["say"], "claudeCode": {"prompt": "Greet ${{ who }} in a ${{ tone }} way."}},
            ],
        }))
        .expect("loads")
    }

    #[test]
    fn values_land_in_their_own_argument_typed_and_defaulted() {
        let spec = greeter()
            .render(&given(&[
                ("who", "Ada; rm -rf / $(reboot) `x` \"q\""),
                ("times", " 3 "),
            ]))
            .expect("renders");
        assert_eq!(spec.name, "greet Ada; rm -rf / $(reboot) `x` \"q\"");
        let shell = spec.steps[0].shell.as_ref().expect("shell");
        assert_eq!(
            shell.command,
            ["echo", "hello Ada; rm -rf / $(reboot) `x` \"q\"", "3"],
            "one argument, as given: nothing is parsed by a shell"
        );
        assert_eq!(shell.env["LOUD"], "false");
        assert_eq!(shell.env["TONE"], "warm");
        let prompt = &spec.steps[1].claude_code.as_ref().expect("agent").prompt;
        assert!(prompt.starts_with("Greet Ada;"), "{prompt}");
        assert_eq!(spec.labels["who"], "Ada; rm -rf / $(reboot) `x` \"q\"");
    }

    #[test]
    fn unknown_missing_and_mistyped_parameters_are_refused_by_name() {
        let t = greeter();
        let e = t
            .render(&given(&[("who", "x"), ("colour", "red")]))
            .expect_err("unknown");
        assert!(
            e.to_string()
                .contains("not a parameter of template t; it takes: loud, times, tone, who"),
            "{e}"
        );
        assert_eq!(field_of(e), "parameters.colour");
        let e = t.render(&[]).expect_err("missing");
        assert_eq!(e.to_string(), "parameters.who: required: whom to greet");
        let e = t
            .render(&given(&[("who", "x"), ("times", "many")]))
            .expect_err("type");
        assert_eq!(field_of(e.clone()), "parameters.times");
        assert!(
            e.to_string().contains("not a integer") || e.to_string().contains("is not a"),
            "{e}"
        );
        let e = t
            .render(&given(&[("who", "x"), ("tone", "loud")]))
            .expect_err("allowed");
        assert!(e.to_string().contains("not one of warm, dry"), "{e}");
        let e = t
            .render(&given(&[("who", "x"), ("who", "y")]))
            .expect_err("twice");
        assert!(e.to_string().contains("given twice"), "{e}");
    }

    #[test]
    fn a_parameter_inside_a_script_is_refused_when_the_template_loads() {
        for command in [
            json!(["sh", "-c", "echo ${{ who }}"]),
            json!(["/bin/bash", "-euc", "make ${{ who }}"]),
            json!(["python3", "-c", "print('${{ who }}')"]),
            json!(["node", "-e", "console.log('${{ who }}')"]),
        ] {
            let e = template(json!({
                "parameters": {"who": {"required": true}},
                "steps": [{"id": "s", "shell": {"command": command}}],
            }))
            .expect_err("a script");
            assert_eq!(
                field_of(e.clone()),
                "steps[0].shell.command[2]",
                "{command}"
            );
            assert!(e.to_string().contains("in `env`"), "{e}");
        }
        // The same value through env, quoted in the script, is fine.
        template(json!({
            "parameters": {"who": {"required": true}},
            "steps": [{"id": "s", "shell": {
                "command": ["sh", "-c", "echo \"$WHO\"", "${{ who }}"],
                "env": {"WHO": "${{ who }}"},
            }}],
        }))
        .expect("through env");
    }

    #[test]
    fn placeholders_elsewhere_or_naming_nothing_are_refused() {
        let e = template(json!({
            "parameters": {"n": {"type": "integer", "default": 1}},
            "steps": [{"id": "${{ n }}", "noop": {}}],
        }))
        .expect_err("an id");
        assert_eq!(field_of(e), "steps[0].id");
        let e = template(json!({
            "steps": [{"id": "s", "claudeCode": {"prompt": "fix ${{ bug }}"}}],
        }))
        .expect_err("undeclared");
        assert!(e.to_string().contains("`bug` is not one of"), "{e}");
        let e = template(json!({
            "parameters": {"x": {"required": true, "default": "y"}},
            "steps": [{"id": "s", "noop": {}}],
        }))
        .expect_err("required with default");
        assert_eq!(field_of(e), "parameters.x");
        let e = template(json!({
            "parameters": {"x": {"type": "integer", "default": "many"}},
            "steps": [{"id": "s", "noop": {}}],
        }))
        .expect_err("bad default");
        assert_eq!(field_of(e), "parameters.x.default");
        let e = template(json!({"steps": [{"id": "s", "shel": {}}]})).expect_err("not a task");
        assert!(e.to_string().contains("shel"), "{e}");
    }

    #[test]
    fn a_catalog_is_the_directorys_templates_then_the_built_ins_they_leave() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text);
        write(
            "deploy.yml",
            "steps:\n  - id: s\n    shell: {command: ['true']}\n",
        )
        .expect("write");
        write("notes.txt", "not a template").expect("write");
        write("broken.yaml", "steps: [\n").expect("write");
        let files = catalog(Some(dir.path())).expect("catalog");
        let listed: Vec<(&str, bool)> = files
            .iter()
            .map(|f| (f.name.as_str(), f.origin == "built-in"))
            .collect();
        assert_eq!(
            listed,
            [
                ("broken", false),
                ("deploy", false),
                ("feature", true),
                ("fix-ci", true),
                ("fix-issue", true),
                ("parallel-feature", true),
                ("pr-command", true),
                ("refactor", true)
            ]
        );
        assert!(files[1].load().is_ok());
        let broken = files[0].load().expect_err("not YAML");
        assert!(
            broken
                .to_string()
                .contains("broken.yaml: template broken: "),
            "{broken}"
        );
        for file in catalog(None).expect("built-ins") {
            file.load().expect("each built-in loads");
        }
        let missing = catalog(Some(&dir.path().join("nowhere"))).expect_err("no such directory");
        assert!(missing.to_string().contains("nowhere"), "{missing}");
    }

    #[test]
    fn fix_issue_and_fix_ci_follow_their_pull_request_and_keep_the_forges_words_as_they_are() {
        let load = |name: &str| {
            catalog(None)
                .expect("built-ins")
                .into_iter()
                .find(|f| f.name == name)
                .expect("built in")
                .load()
                .expect("loads")
        };
        // What an issue says goes to the agent as it is: quotes, colons,
        // markers and lines, never read as YAML or as parameters.
        let body = "It breaks: `add(2, 3)` is \"-1\".\n${{ title }} - [ ] {a: b}";
        let spec = load("fix-issue")
            .render(&given(&[
                ("repo", "https://github.com/acme/app.git"),
                ("number", "42"),
                ("title", "add subtracts"),
                ("body", body),
            ]))
            .expect("renders");
        assert_eq!(spec.name, "fix-issue #42: add subtracts");
        assert_eq!(spec.labels.get("issue").map(String::as_str), Some("42"));
        let repo = spec.repo.as_ref().expect("repo");
        let pr = repo.pull_request.as_ref().expect("pull request");
        assert!(pr.follows());
        assert_eq!(pr.merge, Some(crate::repo::MergeMethod::Auto));
        assert_eq!(pr.title, "Fix #42: add subtracts");
        let prompt = &spec.steps[0].claude_code.as_ref().expect("agent").prompt;
        assert!(prompt.contains(body), "{prompt}");
        let spec = load("fix-ci")
            .render(&given(&[
                ("repo", "https://gitlab.com/acme/app.git"),
                ("forge", "gitlab"),
                ("check", "unittest"),
                ("log", "AssertionError: -1 != 5"),
                ("merge", "squash"),
            ]))
            .expect("renders");
        let pr = spec
            .repo
            .as_ref()
            .and_then(|r| r.pull_request.as_ref())
            .expect("pull request");
        assert_eq!(pr.merge, Some(crate::repo::MergeMethod::Squash));
        assert_eq!(pr.forge, Some(crate::repo::Forge::Gitlab));
        let prompt = &spec.steps[0].claude_code.as_ref().expect("agent").prompt;
        assert!(prompt.contains("AssertionError: -1 != 5"), "{prompt}");
        let refused = load("fix-ci")
            .render(&given(&[
                ("repo", "https://github.com/acme/app.git"),
                ("check", "t"),
                ("merge", "fast-forward"),
            ]))
            .expect_err("not a merge method");
        assert!(refused.to_string().contains("merge"), "{refused}");
    }
}
