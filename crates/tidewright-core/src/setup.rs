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

use std::collections::BTreeMap;
use std::time::Duration;

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
    /// How long it may run (`90s`, `15m`, `1h`): past it, the step fails
    /// and nothing is kept. The step's timeout when unset, else 30m.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    /// What it may use of its worker, in place of its step's limits (an
    /// install may need more memory than the agent after it, or less);
    /// the pool's still cap it. Its step's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<crate::step_limits::StepLimits>,
    /// Secrets the setup alone is given, as environment variables
    /// (`NPM_TOKEN: npm-token`): a private registry's token. Read on the
    /// worker as a step's `secretEnv` is, masked in the setup's output,
    /// never given to the step after it; a setup that leaves one in its
    /// `paths` fails its step, and nothing is kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
}

impl SetupSpec {
    /// Its timeout: its own, else its step's (`step_seconds`), else 30m.
    pub fn timeout(&self, step_seconds: Option<u32>) -> Duration {
        crate::verify::parse_duration(&self.timeout)
            .ok()
            .flatten()
            .or(step_seconds.map(|s| Duration::from_secs(u64::from(s))))
            .unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// The longest a setup runs when neither it nor its step says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What a step's setup did on one attempt: said as an event on the step
/// when the checkout is ready (or the setup failed), and kept on the
/// attempt as its setup's line beside the agent's cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupReport {
    /// The seed's key; empty when none of the key files is there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub seed: String,
    pub source: SetupSource,
    /// How the seed was put in the checkout (`overlay`, `reflink`,
    /// `copy`); empty when the setup ran here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// From the setup's start to the checkout being ready: what the
    /// attempt spent on it.
    pub millis: u64,
    /// How long the setup's command ran: on this attempt when it ran
    /// here, else when its seed was made.
    #[serde(default)]
    pub run_millis: u64,
    /// The seed's files and bytes.
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// The setup failed: the step failed with its output.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    /// What else there is to say: why a seed was not kept, or that no
    /// key file is there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl SetupReport {
    /// One line of it, as `watch` and the console say it: "seed 3f2a9c1b0d4e
    /// from the control plane's store, laid over in 12 ms (its setup took
    /// 14.2 s)".
    pub fn summary(&self) -> String {
        let seed = if self.seed.is_empty() {
            "no seed".to_string()
        } else {
            format!("seed {}", &self.seed[..self.seed.len().min(12)])
        };
        let took = |millis: u64| format!("{:.1} s", millis as f64 / 1000.0);
        let mut line = match self.source {
            SetupSource::Ran if self.failed => {
                format!("setup failed after {}", took(self.run_millis))
            }
            SetupSource::Ran if self.seed.is_empty() || !self.note.is_empty() => {
                format!("ran setup in {}", took(self.run_millis))
            }
            SetupSource::Ran => format!(
                "ran setup in {}; {seed} kept ({} files, {})",
                took(self.run_millis),
                self.files,
                crate::human_bytes(self.bytes)
            ),
            SetupSource::Checkout => "already in the checkout".to_string(),
            SetupSource::Worker | SetupSource::Store => format!(
                "{seed} from {}, {} in {} ms (its setup took {})",
                if self.source == SetupSource::Store {
                    "the control plane's store"
                } else {
                    "this worker"
                },
                match self.method.as_str() {
                    "overlay" => "laid over",
                    "reflink" => "reflinked",
                    _ => "copied",
                },
                self.millis,
                took(self.run_millis)
            ),
        };
        if !self.note.is_empty() {
            line.push_str(&format!("; {}", self.note));
        }
        line
    }
}

/// Where a step's setup's paths came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetupSource {
    /// The setup ran in this checkout (and its seed was kept, unless
    /// `note` says why not).
    #[default]
    Ran,
    /// The seed this worker had.
    Worker,
    /// The seed taken from the control plane's store.
    Store,
    /// Already in the checkout: a workspace kept for a resume.
    Checkout,
}

impl SetupSource {
    pub const ALL: [SetupSource; 4] = [
        SetupSource::Ran,
        SetupSource::Worker,
        SetupSource::Store,
        SetupSource::Checkout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SetupSource::Ran => "ran",
            SetupSource::Worker => "worker",
            SetupSource::Store => "store",
            SetupSource::Checkout => "checkout",
        }
    }

    /// The source named `name`; `Ran` for an unknown one.
    pub fn parse(name: &str) -> SetupSource {
        SetupSource::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .unwrap_or_default()
    }
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
    match crate::verify::parse_duration(&setup.timeout) {
        Err(why) => return Err(invalid(format!("{field}.timeout"), why)),
        Ok(Some(d)) if d.is_zero() => {
            return Err(invalid(format!("{field}.timeout"), "must be above zero"));
        }
        Ok(_) => {}
    }
    if let Some(limits) = &setup.limits {
        limits.validate(&format!("{field}.limits"))?;
    }
    for (var, secret) in &setup.secret_env {
        let at = format!("{field}.secretEnv[{var:?}]");
        if var.is_empty() || var.contains(['=', '\0']) {
            return Err(invalid(
                at,
                "an environment variable name must be non-empty, without '=' or NUL",
            ));
        }
        if !crate::secret::valid_name(secret) {
            return Err(invalid(
                at,
                format!(
                    "secret name {secret:?} must be 1 to 253 bytes of letters, digits, '-', '_' and '.', not starting with '.'"
                ),
            ));
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
            ..SetupSpec::default()
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
            (
                SetupSpec {
                    timeout: "ten minutes".into(),
                    ..npm()
                },
                "repo.setup.timeout",
                "a duration is like",
            ),
            (
                SetupSpec {
                    timeout: "0s".into(),
                    ..npm()
                },
                "repo.setup.timeout",
                "above zero",
            ),
            (
                SetupSpec {
                    limits: Some(crate::step_limits::StepLimits {
                        memory: Some("lots".into()),
                        ..Default::default()
                    }),
                    ..npm()
                },
                "repo.setup.limits.memory",
                "is not a size",
            ),
            (
                SetupSpec {
                    limits: Some(crate::step_limits::StepLimits::default()),
                    ..npm()
                },
                "repo.setup.limits",
                "set memory",
            ),
            (
                SetupSpec {
                    secret_env: [("NPM_TOKEN".to_string(), "../token".to_string())].into(),
                    ..npm()
                },
                "repo.setup.secretEnv[\"NPM_TOKEN\"]",
                "secret name",
            ),
            (
                SetupSpec {
                    secret_env: [("A=B".to_string(), "token".to_string())].into(),
                    ..npm()
                },
                "repo.setup.secretEnv[\"A=B\"]",
                "variable name",
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
    fn a_setups_timeout_is_its_own_else_its_steps_else_thirty_minutes() {
        let own = SetupSpec {
            timeout: "90s".into(),
            ..npm()
        };
        assert_eq!(own.timeout(Some(600)), Duration::from_secs(90));
        assert_eq!(npm().timeout(Some(600)), Duration::from_secs(600));
        assert_eq!(npm().timeout(None), Duration::from_secs(1800));
    }

    #[test]
    fn a_setup_report_reads_back_and_its_sources_by_name() {
        let report = SetupReport {
            seed: "ab".repeat(32),
            source: SetupSource::Store,
            method: "overlay".into(),
            millis: 12,
            run_millis: 9000,
            files: 3,
            bytes: 4096,
            ..SetupReport::default()
        };
        let text = serde_json::to_string(&report).expect("json");
        assert_eq!(
            serde_json::from_str::<SetupReport>(&text).ok(),
            Some(report.clone())
        );
        assert_eq!(
            report.summary(),
            "seed abababababab from the control plane's store, laid over in 12 ms (its setup took 9.0 s)"
        );
        let ran = SetupReport {
            source: SetupSource::Ran,
            method: String::new(),
            run_millis: 14_200,
            bytes: 148 << 20,
            ..report.clone()
        };
        assert_eq!(
            ran.summary(),
            "ran setup in 14.2 s; seed abababababab kept (3 files, 148.0 MiB)"
        );
        let unkept = SetupReport {
            note: "larger than --max-seed-bytes".into(),
            ..ran.clone()
        };
        assert_eq!(
            unkept.summary(),
            "ran setup in 14.2 s; larger than --max-seed-bytes"
        );
        for source in SetupSource::ALL {
            assert_eq!(SetupSource::parse(source.as_str()), source);
        }
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
