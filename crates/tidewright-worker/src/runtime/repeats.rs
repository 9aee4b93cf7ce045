//! An agent going round in circles: the same tool called with the same
//! input time after time, or turn after turn that leaves its work as it
//! was. The stall policy stops such a run as stalled, as it stops a
//! silent one, since none is getting anywhere.

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

/// The turns in a row a run may take without changing its work before it
/// is stopped as stalled, when the worker is not told otherwise.
pub const DEFAULT_UNCHANGED_TURNS: u32 = 40;

/// The most files a fingerprint of the work reads; past it, the work
/// counts as changed (whether it did is not worth the time to find out).
const MOST_FILES: usize = 50_000;

/// Counts a run's turns in a row (each a response of its model that
/// called tools) after which the files of its working directory are as
/// they were.
#[derive(Debug)]
pub struct Unchanged {
    limit: u32,
    dir: std::path::PathBuf,
    last: Option<u64>,
    turns: u32,
}

impl Unchanged {
    /// `limit` 0 never stops a run.
    pub fn new(limit: u32, dir: &std::path::Path) -> Self {
        Unchanged {
            limit,
            dir: dir.to_path_buf(),
            last: None,
            turns: 0,
        }
    }

    /// Counts a turn, its work as it is now; why the run is stalled once
    /// `limit` turns in a row found it unchanged. Blocking: it reads the
    /// directory.
    pub fn turn(&mut self) -> Option<String> {
        if self.limit == 0 {
            return None;
        }
        let now = fingerprint(&self.dir);
        if now.is_some() && now == self.last {
            self.turns += 1;
        } else {
            self.last = now;
            self.turns = 0;
        }
        (self.turns >= self.limit)
            .then(|| format!("its work did not change over its last {} turns", self.turns))
    }
}

/// A hash of what is under `dir`, git's own directory aside: each file's
/// path, size and modification time. `None` past [`MOST_FILES`] or when
/// it cannot be read.
fn fingerprint(dir: &std::path::Path) -> Option<u64> {
    let mut entries = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(at) = dirs.pop() {
        for entry in std::fs::read_dir(&at).ok()?.flatten() {
            if entry.file_name() == ".git" {
                continue;
            }
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            entries.push((entry.path(), meta.len(), modified));
            if entries.len() > MOST_FILES {
                return None;
            }
        }
    }
    entries.sort();
    let mut hasher = DefaultHasher::new();
    entries.hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A call of `tool` with `input`, as a stream gives one.
    pub(crate) fn call(tool: &str, input: serde_json::Value) -> ToolCall {
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

    #[test]
    fn turns_that_leave_the_work_as_it_was_up_to_the_limit_stall_the_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(".git")).expect("dir");
        std::fs::write(dir.path().join("a.txt"), "a").expect("write");
        let mut unchanged = Unchanged::new(2, dir.path());
        assert_eq!(unchanged.turn(), None, "the first turn sees the work");
        assert_eq!(unchanged.turn(), None);
        // A change starts the count again; git's own files are not work.
        std::fs::write(dir.path().join("b.txt"), "b").expect("write");
        std::fs::write(dir.path().join(".git/index"), "i").expect("write");
        assert_eq!(unchanged.turn(), None);
        std::fs::write(dir.path().join(".git/index"), "j").expect("write");
        assert_eq!(unchanged.turn(), None);
        assert_eq!(
            unchanged.turn().as_deref(),
            Some("its work did not change over its last 2 turns")
        );
        let mut never = Unchanged::new(0, dir.path());
        assert!((0..10).all(|_| never.turn().is_none()));
    }
}
