//! What an agent's session says, one item at a time, the same for every
//! agent CLI: a message it took, what it said, a tool call and the call's
//! output. Each runtime on the worker reads its CLI's stream into these;
//! the control plane keeps them as its step's events, and
//! [`crate::replay`] makes its timeline of them.

use serde::{Deserialize, Serialize};

/// The longest text an item keeps, in bytes (a tool's output, a file the
/// agent wrote): the rest is cut, and the cut said.
pub const MAX_ITEM_BYTES: usize = 16 * 1024;

/// One item of an agent's session, as its CLI streamed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum SessionItem {
    /// A message to the agent, as its session took it: the step's prompt,
    /// a person's steering message, its checks' feedback. Starts a turn.
    Prompt { text: String },
    /// What the agent said.
    Text { text: String },
    /// A tool the agent called; `input` is its arguments as JSON.
    Call {
        id: String,
        tool: String,
        input: String,
    },
    /// What the call `id` answered.
    Output {
        id: String,
        output: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        error: bool,
    },
}

impl SessionItem {
    /// Each of its texts made by `f` (masking, cutting).
    pub fn map_texts(self, mut f: impl FnMut(String) -> String) -> SessionItem {
        match self {
            SessionItem::Prompt { text } => SessionItem::Prompt { text: f(text) },
            SessionItem::Text { text } => SessionItem::Text { text: f(text) },
            SessionItem::Call { id, tool, input } => SessionItem::Call {
                id: f(id),
                tool: f(tool),
                input: f(input),
            },
            SessionItem::Output { id, output, error } => SessionItem::Output {
                id: f(id),
                output: f(output),
                error,
            },
        }
    }
}

/// `text` cut to [`MAX_ITEM_BYTES`], the cut said: what a session item
/// keeps of a long text.
pub fn cut(mut text: String) -> String {
    if text.len() <= MAX_ITEM_BYTES {
        return text;
    }
    let whole = text.len();
    crate::truncate_at_char_boundary(&mut text, MAX_ITEM_BYTES);
    text.push_str(&format!(
        "\n… ({} of {whole} bytes cut)",
        whole - text.len()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_text_is_cut_and_says_so() {
        let long = "é".repeat(MAX_ITEM_BYTES);
        let cut = cut(long);
        assert!(cut.len() < MAX_ITEM_BYTES + 64, "{}", cut.len());
        assert!(cut.ends_with(&format!(
            "({} of {} bytes cut)",
            MAX_ITEM_BYTES,
            MAX_ITEM_BYTES * 2
        )));
        assert_eq!(super::cut("short".into()), "short");
    }

    #[test]
    fn items_keep_their_shape_through_json() {
        let item = SessionItem::Output {
            id: "c".into(),
            output: "x".into(),
            error: true,
        };
        let json = serde_json::to_string(&item).expect("an item is JSON");
        assert_eq!(
            json,
            r#"{"kind":"output","id":"c","output":"x","error":true}"#
        );
        assert_eq!(
            serde_json::from_str::<SessionItem>(&json).expect("its JSON reads back"),
            item
        );
    }
}
