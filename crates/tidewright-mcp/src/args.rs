//! What the tools take and give: their arguments read with the field at
//! fault named, their input schemas, and a refusal said so an agent knows
//! what to do next.

use rmcp::model::JsonObject;
use serde_json::{Value, json};
use tonic::{Code, Status};

/// A required, non-empty string argument.
pub(crate) fn text(args: &JsonObject, name: &str) -> Result<String, String> {
    match args.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!("{name}: must be a non-empty string")),
        None => Err(format!("{name}: required")),
    }
}

/// An optional whole-number argument.
pub(crate) fn number(args: &JsonObject, name: &str) -> Result<Option<u64>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{name}: must be a whole number, 0 or more")),
    }
}

pub(crate) fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("the stored value is not JSON: {e}"))
}

/// What the agent is told when the control plane refuses a call: enough to
/// decide what to do next (a conflict means read again and retry).
pub(crate) fn refusal(status: &Status) -> String {
    let what = match status.code() {
        Code::Aborted => "conflict",
        Code::InvalidArgument => "invalid argument",
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "not authenticated",
        Code::NotFound => "not found",
        Code::FailedPrecondition => "refused",
        Code::ResourceExhausted => "rate limited",
        Code::Unavailable => "the control plane is unreachable",
        _ => "failed",
    };
    format!("{what}: {}", status.message())
}

pub(crate) fn schema(properties: Value, required: &[&str]) -> JsonObject {
    let schema = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_by_name() {
        let args: JsonObject = serde_json::from_value(json!({
            "key": "", "n": -1, "ok": 3
        }))
        .expect("object");
        assert_eq!(
            text(&args, "key").expect_err("empty"),
            "key: must be a non-empty string"
        );
        assert_eq!(text(&args, "topic").expect_err("absent"), "topic: required");
        assert!(number(&args, "n").expect_err("negative").starts_with("n: "));
        assert_eq!(number(&args, "ok"), Ok(Some(3)));
        assert_eq!(number(&args, "absent"), Ok(None));
    }
}
