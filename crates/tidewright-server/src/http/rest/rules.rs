//! The rules the server holds requests to, written into the OpenAPI
//! document where the handlers' annotations cannot say them: each named
//! parameter's shape (a tenant, a state scope or key, a label, any whole
//! number), the bodies whose parts depend on each other, and what each
//! message of an event stream holds. One word, one rule: a parameter of a
//! name is held to the same rule on every route that takes it, and the
//! server refuses what breaks it (each rule here names the check that
//! enforces it), so a client made from the document sends what is taken.

use serde_json::{Value, json};

/// `valid_tenant` (tidewright-engine `access`): lowercase letters, digits and
/// '-', 1 to 63.
const TENANT: &str = "^[a-z0-9-]{1,63}$";
/// Where a tenant may be left empty (the caller's first).
const TENANT_OR_EMPTY: &str = "^[a-z0-9-]{0,63}$";
/// `state_scope` (the engine's `service::state`): 1 to 128 letters, digits, '.', '_', '-'.
const SCOPE: &str = "^[A-Za-z0-9._-]{1,128}$";
/// `state_key` (the engine's `service::state`): 1 to 256 characters, none a control one.
const KEY: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,256}$";
/// `seeds::valid_key` (tidewright-engine): a sha256 in lowercase hex.
const SEED: &str = "^[0-9a-f]{64}$";
/// `schedule::validate_name`: 1 to 63 lowercase letters, digits and '-',
/// not starting with '-'.
const SCHEDULE_NAME: &str = "^[a-z0-9][a-z0-9-]{0,62}$";
/// `schedule::Ticks::new` (croner): five fields, six with seconds first,
/// seven with a year last, or a nickname; names (MON, JAN) and `L`, `W`,
/// `#`, `?` where croner reads them, any case, spaces around. The last
/// branch is that whole syntax; the first two (nicknames, a time each
/// day) are in it, and stand first so that a client generator (and
/// schemathesis) makes expressions that parse. The server also checks each
/// field's range, and that the expression fires.
const CRON: &str = "^(@(yearly|annually|monthly|weekly|daily|hourly)\
|([0-5]?[0-9]|\\*) ([01]?[0-9]|2[0-3]|\\*) \\* \\* \\*\
|\\s*(@[A-Za-z]+|[0-9A-Za-z*/,#?-]+(\\s+[0-9A-Za-z*/,#?-]+){4,6})\\s*)$";
/// `cost_sums::since_day`: empty (this month), or 1d to 400d.
const SINCE: &str = "^(([1-9]|[1-9][0-9]|[1-3][0-9]{2}|400)d)?$";
/// `list_tasks`' label filter: `key=value`.
const LABEL: &str = "=";
/// Every whole number the routes read is at most this (`number`).
pub(super) const MAX_WHOLE: u64 = i64::MAX as u64;

/// Writes the rules into `document` (the whole OpenAPI document as JSON).
pub(super) fn tighten(document: &mut Value) {
    task_file(document);
    schedule_file(document);
    links(document);
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in operations.iter_mut() {
            if let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            {
                parameters.iter_mut().for_each(parameter);
            }
            if let Some(body) = body_schema(path, method)
                && let Some(content) = operation
                    .pointer_mut("/requestBody/content")
                    .and_then(Value::as_object_mut)
            {
                for media in content.values_mut() {
                    media["schema"] = body.clone();
                }
            }
            if let Some(events) = stream_schema(path)
                && let Some(media) =
                    operation.pointer_mut("/responses/200/content/text~1event-stream")
            {
                media["schema"] = events;
            }
        }
    }
}

/// A task file's schema, `TaskSpec` among the components: `tidewright-core`'s
/// (the Task resource's spec is made from the same), with what the server
/// also checks that a schema can say (a step has exactly one runtime). A
/// made task's answer links to the routes that take its id, so a client
/// (and schemathesis' stateful phase) follows it.
fn task_file(document: &mut Value) {
    let root = core_schema::<tidewright_core::TaskSpec>(document);
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    schemas.insert("TaskSpec".into(), root);
    if let Some(step) = schemas.get_mut("StepSpec") {
        let runtimes = ["shell", "noop", "claudeCode", "codex", "geminiCli", "agent"];
        step["oneOf"] = runtimes
            .iter()
            .map(|r| json!({"required": [r], "properties": {(*r): {"type": "object"}}}))
            .collect();
    }
    let Some(submit) = document.pointer_mut("/paths/~1tasks/post") else {
        return;
    };
    let task_file = json!({"$ref": "#/components/schemas/TaskSpec"});
    let example = json!({
        "name": "hello",
        "steps": [{"id": "hello", "shell": {"command": ["echo", "hello"]}}],
    });
    // A YAML file is read as files are (`[sleep, 1]` is two strings): its
    // text is what the document can say of it. JSON is read strictly.
    submit["requestBody"]["content"] = json!({
        "application/json": {"schema": task_file, "example": example},
        "application/yaml": {"schema": {"type": "string", "description": "the task file as YAML"}},
    });
    let id = json!({"id": "$response.body#/taskId"});
    let links = json!({
        "GetTask": {"operationId": "get_task", "parameters": id},
        "CancelTask": {"operationId": "cancel_task", "parameters": id},
        "RetryTask": {"operationId": "retry_task", "parameters": id},
        "RaiseBudget": {"operationId": "raise_budget", "parameters": id},
    });
    for status in ["200", "201"] {
        if let Some(response) = submit.pointer_mut(&format!("/responses/{status}")) {
            response["links"] = links.clone();
        }
    }
}

/// A schedule file's schema, `ScheduleSpec` among the components:
/// `tidewright-core`'s, with what `schedule::validate` also checks that a
/// schema can say (the name's and the cron's shape, a time zone that
/// exists, a deadline of a second or more, one of a task or a template).
/// Its task is a task file: `task_file`'s `TaskSpec`, made first.
fn schedule_file(document: &mut Value) {
    let mut root = core_schema::<tidewright_core::schedule::ScheduleSpec>(document);
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let properties = &mut root["properties"];
    properties["name"]["pattern"] = json!(SCHEDULE_NAME);
    properties["cron"]["pattern"] = json!(CRON);
    let zones: Vec<&str> = std::iter::once("")
        .chain(tidewright_core::schedule::time_zones())
        .collect();
    properties["timezone"]["enum"] = json!(zones);
    let deadline = &mut properties["startingDeadlineSeconds"];
    deadline["minimum"] = json!(1);
    deadline["maximum"] = json!(u32::MAX);
    if let Some(template) = schemas.get_mut("TemplateRun") {
        // `validate`: a template is named by something other than spaces.
        template["properties"]["name"]["pattern"] = json!("\\S");
    }
    // One of the two, given as an object (`null` is as good as absent).
    root["oneOf"] = json!([
        {"required": ["task"], "properties": {"task": {"type": "object"}}},
        {"required": ["template"], "properties": {"template": {"type": "object"}}},
    ]);
    schemas.insert("ScheduleSpec".into(), root);
    let Some(create) = document.pointer_mut("/paths/~1schedules/post") else {
        return;
    };
    let example = json!({
        "name": "nightly",
        "cron": "0 3 * * 1-5",
        "timezone": "Europe/Rome",
        "task": {"name": "bump", "steps": [{"id": "bump", "shell": {"command": ["echo", "bump"]}}]},
    });
    create["requestBody"]["content"] = json!({
        "application/json": {"schema": {"$ref": "#/components/schemas/ScheduleSpec"}, "example": example},
        "application/yaml": {"schema": {"type": "string", "description": "the schedule file as YAML"}},
    });
}

/// `T`'s schema as `tidewright-core` derives it; the schemas it refers to are
/// added to the document's components (those already there are kept).
fn core_schema<T: schemars::JsonSchema>(document: &mut Value) -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    });
    let root = settings.into_generator().into_root_schema_for::<T>();
    let mut root = serde_json::to_value(root).unwrap_or_default();
    let defs = root
        .as_object_mut()
        .and_then(|r| r.remove("components"))
        .and_then(|c| c.get("schemas").cloned());
    if let Some(Value::Object(defs)) = defs
        && let Some(schemas) = document
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
    {
        for (name, schema) in defs {
            schemas.entry(name).or_insert(schema);
        }
    }
    root
}

/// Where what one route answers is what another takes: a schedule made,
/// a webhook made, a template listed, a task's step read.
fn links(document: &mut Value) {
    let schedule = json!({"name": "$response.body#/name", "tenant": "$response.body#/tenant"});
    let task_step = json!({"id": "$response.body#/id", "step": "$response.body#/steps/0/id"});
    let all = [
        (
            "/schedules",
            "post",
            "201",
            json!({
                "GetSchedule": {"operationId": "get_schedule", "parameters": schedule},
                "SuspendSchedule": {"operationId": "suspend_schedule", "parameters": schedule},
                "ResumeSchedule": {"operationId": "resume_schedule", "parameters": schedule},
                "TriggerSchedule": {"operationId": "trigger_schedule", "parameters": schedule},
                "DeleteSchedule": {"operationId": "delete_schedule", "parameters": schedule},
            }),
        ),
        (
            "/webhooks",
            "post",
            "201",
            json!({"DeleteWebhook": {"operationId": "delete_webhook", "parameters": {"id": "$response.body#/id"}}}),
        ),
        (
            "/templates",
            "get",
            "200",
            json!({"SubmitTemplate": {
                "operationId": "submit_template",
                "parameters": {"name": "$response.body#/templates/0/name"},
            }}),
        ),
        (
            "/tasks/{id}",
            "get",
            "200",
            json!({
                "ApproveStep": {"operationId": "approve_step", "parameters": task_step},
                "RejectStep": {"operationId": "reject_step", "parameters": task_step},
                "StepDiff": {"operationId": "step_diff", "parameters": task_step},
            }),
        ),
    ];
    for (path, method, status, links) in all {
        let at = format!(
            "/paths/{}/{method}/responses/{status}",
            path.replace('/', "~1")
        );
        if let Some(response) = document.pointer_mut(&at) {
            response["links"] = links;
        }
    }
}

/// A parameter held to its name's rule.
fn parameter(parameter: &mut Value) {
    let name = parameter["name"].as_str().unwrap_or_default().to_string();
    let location = parameter["in"].as_str().unwrap_or_default().to_string();
    let schema = &mut parameter["schema"];
    let repeated = schema["type"] == "array";
    let string = |pattern: &str| json!({"type": "string", "pattern": pattern});
    let rule = match (name.as_str(), location.as_str()) {
        ("tenant", "path") => Some(string(TENANT)),
        ("tenant", "query") if repeated => Some(string(TENANT)),
        ("tenant", "query") => Some(string(TENANT_OR_EMPTY)),
        ("scope", "path") => Some(string(SCOPE)),
        ("key", "path") => Some(string(KEY)),
        ("seed", "path") => Some(string(SEED)),
        ("label", "query") => Some(string(LABEL)),
        // `task_state`.
        ("state", "query") => Some(json!({
            "type": "string",
            "enum": ["queued", "running", "paused", "succeeded", "failed", "cancelled"],
        })),
        // `cost_sums::parse_by`: each dimension once.
        ("by", "query") => {
            schema["uniqueItems"] = json!(true);
            Some(json!({
                "type": "string",
                "enum": ["day", "tenant", "repo", "runtime", "model", "template"],
            }))
        }
        // `cost_sums::since_day`: empty, or 1 to 400 days.
        ("since", "query") => Some(string(SINCE)),
        // A header is a whole number or absent, never `null`.
        ("Last-Event-ID", "header") => Some(whole(0)),
        _ if is_whole(schema) || is_whole(&schema["items"]) => {
            let mut rule = whole(schema["minimum"].as_u64().unwrap_or(0));
            if let Some(most) = schema
                .get("maximum")
                .or_else(|| schema["items"].get("maximum"))
            {
                rule["maximum"] = most.clone();
            }
            Some(rule)
        }
        _ => None,
    };
    if let Some(rule) = rule {
        if repeated {
            schema["items"] = rule;
        } else {
            *schema = rule;
        }
    }
}

fn is_whole(schema: &Value) -> bool {
    match &schema["type"] {
        Value::String(kind) => kind == "integer",
        Value::Array(kinds) => kinds.iter().any(|k| k == "integer"),
        _ => false,
    }
}

fn whole(least: u64) -> Value {
    json!({"type": "integer", "minimum": least, "maximum": MAX_WHOLE})
}

/// The bodies whose parts depend on each other, or whose parts have
/// rules of their own.
fn body_schema(path: &str, method: &str) -> Option<Value> {
    let tokens = json!({"type": ["integer", "null"], "minimum": 1, "maximum": MAX_WHOLE});
    Some(match (path, method) {
        // `validate_budget`: at least one part, each above zero.
        ("/tasks/{id}/budget", "post") => json!({
            "type": "object",
            "additionalProperties": false,
            "description": "What to add: usd, tokens or both, each above zero",
            "properties": {
                "usd": {"type": ["number", "null"], "exclusiveMinimum": 0},
                "tokens": tokens,
            },
            "anyOf": [
                {"required": ["usd"], "properties": {"usd": {"type": "number"}}},
                {"required": ["tokens"], "properties": {"tokens": {"type": "integer"}}},
            ],
        }),
        // `validate_tenant_budget`: dollars 0 or more; absent or null is
        // no limit.
        ("/tenants/{tenant}/budget", "put") => {
            let usd = json!({"type": ["number", "null"], "minimum": 0});
            let count = json!({"type": ["integer", "null"], "minimum": 0, "maximum": MAX_WHOLE});
            json!({
                "type": "object",
                "additionalProperties": false,
                "description": "A tenant's limits per UTC day and month; parts left out (or null) are no limit",
                "properties": {
                    "usdPerDay": usd, "usdPerMonth": usd,
                    "tokensPerDay": count, "tokensPerMonth": count,
                },
            })
        }
        // `decide`: a rejection says why.
        ("/tasks/{id}/steps/{step}/reject", "post") => json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["reason"],
            "properties": {
                "reason": {"type": "string", "pattern": "\\S", "description": "why: the step's error and the audit log say it"},
            },
        }),
        _ => return None,
    })
}

/// The messages of an event stream: each a server-sent event whose
/// `data` is JSON of the schema its `event` names.
fn stream_schema(path: &str) -> Option<Value> {
    let fleet = match path {
        "/events" => true,
        "/tasks/{id}/events" => false,
        _ => return None,
    };
    let data = |schema: Value| json!({"type": "string", "contentMediaType": "application/json", "contentSchema": schema});
    let mut messages = vec![
        json!({
            "type": "object",
            "required": ["event", "data", "id"],
            "properties": {
                "event": {"enum": ["taskState", "stepState", "progress", "log", "egress"]},
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "data": data(json!({"$ref": "#/components/schemas/EventView"})),
            },
        }),
        // The stream's last message when it fails: the client reconnects
        // with its last id.
        json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {"event": {"const": "error"}, "data": {"type": "string"}},
        }),
    ];
    if fleet {
        messages.push(json!({
            "type": "object",
            "required": ["event", "data", "id"],
            "description": "the first message: where the stream starts",
            "properties": {
                "event": {"const": "start"},
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "data": data(json!({
                    "type": "object",
                    "required": ["position"],
                    "properties": {"position": {"type": "integer", "minimum": 0}},
                })),
            },
        }));
    }
    Some(json!({ "oneOf": messages }))
}
