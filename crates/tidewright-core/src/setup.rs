//! A repository's setup: the command that installs what its steps need
//! (`npm ci`, `uv sync`, `cargo fetch`, ...), run once per key on a worker,
//! and what it made (its `paths`, such as `node_modules`) kept as a seed
//! that each step whose checkout has the same key gets in its workspace.
//! The key is the hash of the setup itself, the files it names (a
//! lockfile's content), the repository and the tenant: a change to any of
//! them makes a new seed, and no tenant's seed is another's.
//!
//! The setup is the task's `repo.setup`, or the repository's own
//! `.tidewright/setup.yaml` ([`SETUP_FILE`], read from the step's
//! checkout).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, invalid};

/// Where a repository keeps its own setup.
pub const SETUP_FILE: &str = ".tidewright/setup.yaml";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetupSpec {
    /// The command, run in the step's checkout, in its sandbox, with its
    /// egress (to the package registry, say): `["npm", "ci"]`.
    pub run: Vec<String>,
    /// Files in the repository whose content keys the seed: a lockfile,
    /// a toolchain file (`package-lock.json`, `.nvmrc`). With none of them
    /// in the checkout, setup runs for every step, and says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    /// What the setup makes, in the repository, that each step gets:
    /// `["node_modules"]`.
    pub paths: Vec<String>,
}

/// The file form: `setup:` at its top.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupFile {
    setup: SetupSpec,
}

/// The setup a repository's [`SETUP_FILE`] holds, checked; the error names
/// the file and the field.
pub fn from_file(text: &str) -> Result<SetupSpec, Error> {
    let file: SetupFile = serde_yaml::from_str(text).map_err(|e| {
        invalid(
            SETUP_FILE,
            format!("is not a setup (`setup: {{run, key, paths}}`): {e}"),
        )
    })?;
    validate(&file.setup, &format!("{SETUP_FILE}: setup"))?;
    Ok(file.setup)
}

/// Checks a setup; `field` is where it sits (`repo.setup`).
pub fn validate(setup: &SetupSpec, field: &str) -> Result<(), Error> {
    if setup
        .run
        .first()
        .is_none_or(|program| program.trim().is_empty())
    {
        return Err(invalid(
            format!("{field}.run"),
            "is empty: name the command that installs what the steps need (`[npm, ci]`)",
        ));
    }
    if setup.paths.is_empty() {
        return Err(invalid(
            format!("{field}.paths"),
            "is empty: name what the setup makes that each step gets (`[node_modules]`)",
        ));
    }
    for (name, list) in [("paths", &setup.paths), ("key", &setup.key)] {
        for (i, path) in list.iter().enumerate() {
            in_repository(path).map_err(|why| invalid(format!("{field}.{name}[{i}]"), why))?;
            if list[..i].contains(path) {
                return Err(invalid(
                    format!("{field}.{name}[{i}]"),
                    format!("{path:?} is named twice"),
                ));
            }
        }
    }
    Ok(())
}

/// A path inside the repository: relative, of plain names, not git's own.
fn in_repository(path: &str) -> Result<(), String> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if path.is_empty() || path.starts_with('/') {
        return Err(format!(
            "{path:?} is not a path in the repository: it must be relative to its root"
        ));
    }
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(format!(
            "{path:?} is outside the repository or not a plain path: no `..`, `.` or empty parts"
        ));
    }
    if parts[0] == ".git" {
        return Err(format!("{path:?} is git's own, never a seed's"));
    }
    Ok(())
}

/// The key of the seed for `setup` on the repository keyed `repo` (see
/// [`crate::repo::key`]) for `tenant`, given each key file's content in the
/// checkout (`None` when it is not there); `None` when none of them is:
/// nothing says when a seed would be stale.
pub fn seed_key(
    tenant: &str,
    repo: &str,
    setup: &SetupSpec,
    files: &[(String, Option<Vec<u8>>)],
) -> Option<String> {
    if files.iter().all(|(_, content)| content.is_none()) {
        return None;
    }
    let mut hash = Sha256::new();
    // Each part with its length first: no two different keys hash alike
    // by shifting bytes from one part to the next.
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    part(b"tidewright seed 1");
    part(tenant.as_bytes());
    part(repo.as_bytes());
    for arg in &setup.run {
        part(arg.as_bytes());
    }
    part(b"paths");
    for path in &setup.paths {
        part(path.as_bytes());
    }
    part(b"key");
    for (path, content) in files {
        part(path.as_bytes());
        match content {
            Some(content) => part(content),
            None => part(b"absent"),
        }
    }
    Some(crate::hex(&hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npm() -> SetupSpec {
        SetupSpec {
            run: vec!["npm".into(), "ci".into()],
            key: vec!["package-lock.json".into(), ".nvmrc".into()],
            paths: vec!["node_modules".into()],
        }
    }

    fn files(lock: &str) -> Vec<(String, Option<Vec<u8>>)> {
        vec![
            ("package-lock.json".into(), Some(lock.as_bytes().to_vec())),
            (".nvmrc".into(), None),
        ]
    }

    #[test]
    fn a_seed_key_changes_with_the_lockfile_the_setup_the_repository_and_the_tenant() {
        let key = |tenant: &str, repo: &str, setup: &SetupSpec, lock: &str| {
            seed_key(tenant, repo, setup, &files(lock)).expect("a key file is there")
        };
        let base = key("acme", "r1", &npm(), "v1");
        assert_eq!(base.len(), 64);
        assert_eq!(base, key("acme", "r1", &npm(), "v1"), "stable");
        assert_ne!(base, key("acme", "r1", &npm(), "v2"), "a new lockfile");
        assert_ne!(base, key("other", "r1", &npm(), "v1"), "another tenant");
        assert_ne!(base, key("acme", "r2", &npm(), "v1"), "another repository");
        let install = SetupSpec {
            run: vec!["npm".into(), "install".into()],
            ..npm()
        };
        assert_ne!(base, key("acme", "r1", &install, "v1"), "another command");
        let present = seed_key("acme", "r1", &npm(), &files("v1"));
        let mut both = files("v1");
        both[1].1 = Some(b"20\n".to_vec());
        assert_ne!(
            present,
            seed_key("acme", "r1", &npm(), &both),
            "a new .nvmrc"
        );
    }

    #[test]
    fn without_any_key_file_there_is_no_seed() {
        let none = vec![("package-lock.json".to_string(), None)];
        assert_eq!(seed_key("acme", "r1", &npm(), &none), None);
        assert_eq!(seed_key("acme", "r1", &npm(), &[]), None);
    }

    #[test]
    fn each_bad_setup_is_refused_naming_its_field() {
        let cases: Vec<(SetupSpec, &str, &str)> = vec![
            (
                SetupSpec {
                    run: Vec::new(),
                    ..npm()
                },
                "repo.setup.run",
                "is empty",
            ),
            (
                SetupSpec {
                    run: vec![" ".into()],
                    ..npm()
                },
                "repo.setup.run",
                "is empty",
            ),
            (
                SetupSpec {
                    paths: Vec::new(),
                    ..npm()
                },
                "repo.setup.paths",
                "is empty",
            ),
            (
                SetupSpec {
                    paths: vec!["../outside".into()],
                    ..npm()
                },
                "repo.setup.paths[0]",
                "outside the repository",
            ),
            (
                SetupSpec {
                    paths: vec!["node_modules".into(), "/abs".into()],
                    ..npm()
                },
                "repo.setup.paths[1]",
                "relative to its root",
            ),
            (
                SetupSpec {
                    paths: vec![".git/hooks".into()],
                    ..npm()
                },
                "repo.setup.paths[0]",
                "git's own",
            ),
            (
                SetupSpec {
                    key: vec!["a.lock".into(), "a.lock".into()],
                    ..npm()
                },
                "repo.setup.key[1]",
                "named twice",
            ),
        ];
        for (setup, field, says) in cases {
            match validate(&setup, "repo.setup") {
                Err(Error::Invalid {
                    field: got,
                    message,
                }) => {
                    assert_eq!(got, field, "{message}");
                    assert!(message.contains(says), "{field}: {message}");
                }
                other => panic!("{field}: expected a refusal, got {other:?}"),
            }
        }
        assert_eq!(validate(&npm(), "repo.setup"), Ok(()));
    }

    #[test]
    fn a_repositorys_setup_file_is_read_and_checked_naming_the_file() {
        let setup = from_file(
            "setup:\n  run: [npm, ci]\n  key: [package-lock.json]\n  paths: [node_modules]\n",
        )
        .expect("a good file");
        assert_eq!(setup.paths, ["node_modules"]);
        match from_file("setup:\n  run: []\n  paths: [node_modules]\n") {
            Err(Error::Invalid { field, .. }) => {
                assert_eq!(field, ".tidewright/setup.yaml: setup.run");
            }
            other => panic!("{other:?}"),
        }
        match from_file("install: npm ci\n") {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field, SETUP_FILE);
                assert!(message.contains("is not a setup"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
