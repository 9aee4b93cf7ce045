//! An agent going round in circles: the same tool called with the same
//! input time after time. The stall policy stops such a run as stalled,
//! as it stops a silent one, since neither is getting anywhere.

use std::hash::{DefaultHasher, Hash, Hasher};

/// The most calls in a row of one tool with one input a run may make
/// before it is stopped as stalled, when the worker is not told otherwise.
pub const DEFAULT_REPEAT_LIMIT: u32 = 5;

/// One tool call an agent's stream reported: the tool, and its input as
/// the stream gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub tool: String,
    pub input: serde_json::Value,
}

/// Counts a run's tool calls in a row that repeat the one before.
#[derive(Debug)]
pub struct Repeats {
    limit: u32,
    /// The last call's tool and a hash of its input (inputs may be whole
    /// files), and how many times in a row it came.
    last: Option<(String, u64)>,
    count: u32,
}

impl Repeats {
    /// `limit` 0 never stops a run.
    pub fn new(limit: u32) -> Self {
        Repeats {
            limit,
            last: None,
            count: 0,
        }
    }

    /// Counts `call`; why the run is going round in circles once the same
    /// call has come `limit` times in a row.
    pub fn call(&mut self, call: &ToolCall) -> Option<String> {
        let mut hasher = DefaultHasher::new();
        // serde_json's maps keep their keys sorted: one input, one text.
        call.input.to_string().hash(&mut hasher);
        let seen = (call.tool.clone(), hasher.finish());
        if self.last.as_ref() == Some(&seen) {
            self.count += 1;
        } else {
            self.last = Some(seen);
            self.count = 1;
        }
        (self.limit > 0 && self.count >= self.limit).then(|| {
            format!(
                "called {} with the same input {} times in a row",
                call.tool, self.count
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tool: &str, input: serde_json::Value) -> ToolCall {
        ToolCall {
            tool: tool.into(),
            input,
        }
    }

    #[test]
    fn the_same_call_in_a_row_up_to_the_limit_is_going_round_in_circles() {
        let mut repeats = Repeats::new(3);
        let ls = call("Bash", serde_json::json!({"command": "ls", "timeout": 5}));
        assert_eq!(repeats.call(&ls), None);
        assert_eq!(repeats.call(&ls), None);
        // Another call in between starts the count again.
        assert_eq!(
            repeats.call(&call("Read", serde_json::json!({"path": "a"}))),
            None
        );
        assert_eq!(repeats.call(&ls), None);
        // The same input with its keys in another order is the same.
        let reordered: serde_json::Value =
            serde_json::from_str(r#"{"timeout": 5, "command": "ls"}"#).expect("json");
        assert_eq!(repeats.call(&call("Bash", reordered)), None);
        assert_eq!(
            repeats.call(&ls).as_deref(),
            Some("called Bash with the same input 3 times in a row")
        );
        // Another tool with the same input is another call.
        let mut repeats = Repeats::new(2);
        assert_eq!(repeats.call(&ls), None);
        assert_eq!(repeats.call(&call("Sh", ls.input.clone())), None);
    }

    #[test]
    fn a_limit_of_zero_never_stops_a_run() {
        let mut repeats = Repeats::new(0);
        let ls = call("Bash", serde_json::json!({"command": "ls"}));
        assert!((0..100).all(|_| repeats.call(&ls).is_none()));
    }
}
