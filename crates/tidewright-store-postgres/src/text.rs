//! Text as PostgreSQL takes it: NUL, which its text and jsonb refuse,
//! becomes U+FFFD.

/// PostgreSQL's text cannot hold NUL; it is stored as U+FFFD instead.
pub(crate) fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

/// JSON for a jsonb column, which refuses the escape `\u0000` (its strings
/// are text): those NULs become U+FFFD too.
pub(crate) fn json_text(json: &str) -> String {
    if !json.contains("\\u0000") {
        return json.to_string();
    }
    fn clean(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(text(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(clean).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (text(&k), clean(v)))
                    .collect(),
            ),
            other => other,
        }
    }
    match serde_json::from_str(json) {
        Ok(value) => clean(value).to_string(),
        // Not JSON: the database says so, naming the value.
        Err(_) => json.to_string(),
    }
}
