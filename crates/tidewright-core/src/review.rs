//! A review by another agent, as a gate: `review: {runtime: codex,
//! mustPass: true}` on an agent step has a reviewer agent read the step's
//! diff, in a checkout of its own whose changes are never kept, and
//! answer approve or request changes, with comments on lines. Requested
//! changes go back into the author's session, as a failed check does,
//! within the review's rounds; with `mustPass` the step is done only once
//! the reviewer approves.
//!
//! At submit, the step is followed by a step of its own, `<step>.review`
//! (see [`expand::with_reviews`]), on the reviewer's runtime; what depended
//! on the step waits for it too.

use serde::{Deserialize, Serialize};

pub mod expand;

/// The reviewing step's id is the reviewed step's and this.
pub const SUFFIX: &str = ".review";

/// Rounds of requested changes when a review names none.
pub const DEFAULT_ROUNDS: u32 = 2;

/// The most rounds a review may name.
pub const MAX_ROUNDS: u32 = 10;

/// The most comments a verdict keeps, and the longest of each.
pub const MAX_COMMENTS: usize = 50;
const MAX_COMMENT_BYTES: usize = 2000;

/// The review a step asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewSpec {
    /// The reviewer's agent runtime (`claude-code`, `codex`, `gemini-cli`,
    /// `qwen-code`): best another model family than the author's.
    pub runtime: String,
    /// The step succeeds only once the reviewer approves; otherwise, its
    /// rounds spent, the task goes on with the last verdict on record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub must_pass: bool,
    /// The times the author is sent back the reviewer's comments, at most
    /// (1 to 10); 2 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 10)))]
    pub rounds: Option<u32>,
    /// What the reviewer looks for besides the task's ask.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub focus: String,
}

impl ReviewSpec {
    pub fn rounds(&self) -> u32 {
        self.rounds.unwrap_or(DEFAULT_ROUNDS)
    }
}

/// The step that reviews another, as tidewright writes it; a task file
/// never sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewOf {
    /// The reviewed step's id.
    pub step: String,
    pub must_pass: bool,
    pub rounds: u32,
}

/// What the reviewer answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub verdict: Decision,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub comments: Vec<Comment>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    #[default]
    RequestChanges,
}

/// A comment on a line of the diff's new side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub path: String,
    #[serde(default)]
    pub line: u32,
    pub body: String,
}

impl Verdict {
    /// The verdict in a reviewer's answer: the last JSON object in it that
    /// reads as one (an agent may think aloud before it). Why not.
    pub fn read(answer: &str) -> Result<Verdict, String> {
        let found = answer
            .match_indices('{')
            .rev()
            .filter_map(|(at, _)| {
                let mut values = serde_json::Deserializer::from_str(&answer[at..]).into_iter();
                values.next()?.ok()
            })
            .find_map(|value: serde_json::Value| serde_json::from_value::<Verdict>(value).ok());
        let mut verdict = found.ok_or_else(|| {
            let mut said = answer.trim().to_string();
            crate::truncate_at_char_boundary(&mut said, 300);
            format!(
                "the reviewer's answer holds no verdict (a JSON object with \"verdict\": \"approve\" or \"request_changes\"): {said:?}"
            )
        })?;
        verdict.comments.truncate(MAX_COMMENTS);
        for comment in &mut verdict.comments {
            crate::truncate_at_char_boundary(&mut comment.body, MAX_COMMENT_BYTES);
        }
        Ok(verdict)
    }

    pub fn approved(&self) -> bool {
        self.verdict == Decision::Approve
    }

    /// What the author's session is told: the reviewer's words and each
    /// comment by its line, in round `round` of `most`.
    pub fn told(&self, reviewer: &str, (round, most): (u32, u32)) -> String {
        let mut text = format!(
            "A reviewer ({reviewer}) read your change and requested changes (review round {round} of {most})."
        );
        if !self.summary.is_empty() {
            text.push_str(&format!("\n\n{}", self.summary));
        }
        if !self.comments.is_empty() {
            text.push_str("\n\nIts comments:");
            for c in &self.comments {
                text.push_str(&format!("\n- {}:{}: {}", c.path, c.line, c.body));
            }
        }
        text.push_str(
            "\n\nMake the changes it asks for where you agree with them, keep the task's checks passing, and commit.",
        );
        text
    }

    /// One line for the step's events.
    pub fn line(&self) -> String {
        let what = if self.approved() {
            "approved"
        } else {
            "changes requested"
        };
        let comments = match self.comments.len() {
            0 => String::new(),
            1 => " (1 comment)".into(),
            n => format!(" ({n} comments)"),
        };
        let mut line = format!("{what}{comments}");
        if !self.summary.is_empty() {
            line.push_str(": ");
            line.push_str(&self.summary);
        }
        crate::truncate_at_char_boundary(&mut line, 300);
        line
    }
}

/// What the reviewer is told before its own instructions: the task's ask
/// and the change, as a diff of the step's work.
pub fn briefing(step: &str, asked: &str, diff: &str) -> String {
    format!(
        "Step {step:?} of this task was asked:\n\n{asked}\n\nIts agent made this change, which is checked out in your working directory:\n\n```diff\n{diff}\n```\n\n"
    )
}

/// The reviewer's own instructions (its step's prompt).
pub fn instructions(focus: &str) -> String {
    let mut text = String::from(
        "Review the change above as a careful senior engineer: does it do what was asked, correctly, and is it clear? You may read files and run commands (the tests, say), but nothing you change is kept.",
    );
    if !focus.is_empty() {
        text.push_str(&format!(" Look in particular at: {focus}"));
    }
    text.push_str(
        "\n\nAnswer with one JSON object and nothing after it: {\"verdict\": \"approve\" or \"request_changes\", \"summary\": \"one or two sentences\", \"comments\": [{\"path\": \"file\", \"line\": N, \"body\": \"what to change and why\"}]}. Request changes only for what should change before this lands.",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_the_last_json_object_of_the_answer() {
        let answer = r#"I ran the tests: {"passed": 3}. My review:
{"verdict": "request_changes", "summary": "Works, but unclear.", "comments": [{"path": "calc.py", "line": 1, "body": "Use a def with a docstring."}]}"#;
        let verdict = Verdict::read(answer).expect("a verdict");
        assert!(!verdict.approved());
        assert_eq!(verdict.comments[0].path, "calc.py");
        assert_eq!(
            verdict.line(),
            "changes requested (1 comment): Works, but unclear."
        );
        let told = verdict.told("codex", (1, 2));
        assert!(
            told.starts_with(
                "A reviewer (codex) read your change and requested changes (review round 1 of 2)."
            ),
            "{told}"
        );
        assert!(
            told.contains("\n- calc.py:1: Use a def with a docstring."),
            "{told}"
        );
        let approved = Verdict::read(r#"{"verdict":"approve"}"#).expect("approve");
        assert!(approved.approved());
        assert_eq!(approved.line(), "approved");
    }

    #[test]
    fn an_answer_without_a_verdict_is_said_so() {
        for answer in ["Looks good to me!", r#"{"verdict": "maybe"}"#, ""] {
            let why = Verdict::read(answer).expect_err("no verdict");
            assert!(
                why.starts_with("the reviewer's answer holds no verdict"),
                "{why}"
            );
        }
    }

    #[test]
    fn a_verdict_keeps_its_comments_within_bounds() {
        let comments: Vec<String> = (0..80)
            .map(|n| {
                format!(
                    r#"{{"path":"a.py","line":{n},"body":"{}"}}"#,
                    "x".repeat(3000)
                )
            })
            .collect();
        let answer = format!(
            r#"{{"verdict":"request_changes","comments":[{}]}}"#,
            comments.join(",")
        );
        let verdict = Verdict::read(&answer).expect("a verdict");
        assert_eq!(verdict.comments.len(), MAX_COMMENTS);
        assert!(
            verdict
                .comments
                .iter()
                .all(|c| c.body.len() <= MAX_COMMENT_BYTES)
        );
    }
}
