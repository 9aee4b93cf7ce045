//! What a program a step runs needs of the worker's machine to run at all,
//! found before the step starts: the program's real place (through its
//! links), a venv's base interpreter, a script's interpreter, and the root
//! of the version manager whose shim or proxy it is (a pyenv shim execs
//! `$PYENV_ROOT/libexec/pyenv`, which is on no `PATH`). All of it is bound
//! read-only; none of it may be, or hold, what the worker keeps from steps
//! (its data, its secrets, the home's keys), whatever a program resolves
//! to. And when a step fails reading a path it was not given, which path
//! and the flag that gives it.

use std::path::{Path, PathBuf};

/// A version manager: the programs it puts on `PATH` (under `entry`) are
/// shims or proxies that run what it installed under `root`.
struct Manager {
    name: &'static str,
    /// The variable naming its root, and the root under the home when it
    /// is unset. The step is given the variable too: its home is private,
    /// so the default would point into an empty one.
    root: (&'static str, &'static str),
    /// Where its programs are when that is not under its root, as the
    /// variable naming a directory, its default under the home, and the
    /// folder in it: rustup's proxies are in cargo's `bin`.
    entry: Option<(&'static str, &'static str, &'static str)>,
}

/// Every version manager whose programs the sandbox knows to need a root.
const MANAGERS: &[Manager] = &[
    Manager {
        name: "pyenv",
        root: ("PYENV_ROOT", ".pyenv"),
        entry: None,
    },
    Manager {
        name: "rbenv",
        root: ("RBENV_ROOT", ".rbenv"),
        entry: None,
    },
    Manager {
        name: "nodenv",
        root: ("NODENV_ROOT", ".nodenv"),
        entry: None,
    },
    Manager {
        name: "asdf",
        root: ("ASDF_DATA_DIR", ".asdf"),
        entry: None,
    },
    Manager {
        name: "mise",
        root: ("MISE_DATA_DIR", ".local/share/mise"),
        entry: None,
    },
    Manager {
        name: "volta",
        root: ("VOLTA_HOME", ".volta"),
        entry: None,
    },
    Manager {
        name: "nvm",
        root: ("NVM_DIR", ".nvm"),
        entry: None,
    },
    Manager {
        name: "rustup",
        root: ("RUSTUP_HOME", ".rustup"),
        entry: Some(("CARGO_HOME", ".cargo", "bin")),
    },
];

/// What of a home holds credentials: never bound into a step, nor a
/// directory that holds one of them.
const HOME_SECRETS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".netrc",
    ".git-credentials",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".config/gh",
    ".config/gcloud",
];

/// A version manager found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    pub name: &'static str,
    pub variable: &'static str,
    pub root: PathBuf,
    /// A program in here is one of its shims or proxies.
    pub entry: PathBuf,
}

/// What steps may be given of the machine beyond the system's, found once
/// at the worker's start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    managers: Vec<Managed>,
    /// Never bound, nor anything holding one of them.
    hidden: Vec<PathBuf>,
}

impl HostView {
    /// From this process's environment; `hidden` adds to the home's
    /// credentials (the worker's data, work and secrets directories).
    pub fn of_this_machine(hidden: &[PathBuf]) -> HostView {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        HostView::new(home.as_deref(), |name| std::env::var_os(name), hidden)
    }

    /// From a home and variables: the managers whose roots exist.
    pub fn new(
        home: Option<&Path>,
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
        hidden: &[PathBuf],
    ) -> HostView {
        let place = |(variable, default): (&str, &str)| -> Option<PathBuf> {
            let named = var(variable)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(default)))?;
            let named = std::path::absolute(named).ok()?;
            Some(std::fs::canonicalize(&named).unwrap_or(named))
        };
        let managers = MANAGERS
            .iter()
            .filter_map(|m| {
                let root = place(m.root).filter(|r| r.is_dir())?;
                let entry = match m.entry {
                    Some((variable, default, folder)) => place((variable, default))?.join(folder),
                    None => root.clone(),
                };
                Some(Managed {
                    name: m.name,
                    variable: m.root.0,
                    root,
                    entry,
                })
            })
            .collect();
        let mut all_hidden: Vec<PathBuf> = home
            .into_iter()
            .flat_map(|h| HOME_SECRETS.iter().map(move |s| h.join(s)))
            .collect();
        all_hidden.extend(
            hidden
                .iter()
                .filter_map(|h| std::path::absolute(h).ok())
                .map(|h| std::fs::canonicalize(&h).unwrap_or(h)),
        );
        HostView {
            managers,
            hidden: all_hidden,
        }
    }

    /// Whether `dir` may be bound: it is not, and does not hold, and is
    /// not inside, anything hidden.
    pub fn allowed(&self, dir: &Path) -> bool {
        !self
            .hidden
            .iter()
            .any(|h| h.starts_with(dir) || dir.starts_with(h))
    }

    /// Why `path` may not be bound, when it may not.
    pub fn hidden_by(&self, path: &Path) -> Option<&Path> {
        self.hidden
            .iter()
            .find(|h| h.starts_with(path) || path.starts_with(h))
            .map(PathBuf::as_path)
    }

    /// The managers whose shims or proxies are in `dir` (or under it).
    pub fn managers_of(&self, dir: &Path) -> Vec<&Managed> {
        self.managers
            .iter()
            .filter(|m| dir.starts_with(&m.entry))
            .collect()
    }

    /// The managers found here, for what the worker says of its sandbox.
    pub fn managers(&self) -> &[Managed] {
        &self.managers
    }

    /// What a program found at `found` needs readable besides the system:
    /// where it is named and where it really is (an executable in a `bin/`
    /// with what is around it), a venv with its base interpreter, a
    /// script's interpreter named by its path, and its manager's root.
    /// Unfiltered: the caller drops what is hidden.
    pub fn needs_of(&self, found: &Path) -> Vec<PathBuf> {
        let mut needs = Vec::new();
        self.needs_of_into(found, &mut needs, 0);
        needs
    }

    fn needs_of_into(&self, found: &Path, needs: &mut Vec<PathBuf>, depth: usize) {
        let named_dir = found.parent().map(Path::to_path_buf);
        let real = std::fs::canonicalize(found).ok();
        let real_dir = real.as_deref().and_then(Path::parent).map(installed_with);
        for dir in named_dir.iter().chain(&real_dir) {
            needs.push(dir.clone());
            needs.extend(self.managers_of(dir).into_iter().map(|m| m.root.clone()));
        }
        // A venv's interpreter is a link to its base one, which reads its
        // standard library beside itself; the venv is the named one's.
        if let Some(venv) = named_dir.as_deref().and_then(Path::parent)
            && let Ok(cfg) = std::fs::read_to_string(venv.join("pyvenv.cfg"))
        {
            needs.push(venv.to_path_buf());
            if let Some(home) = venv_home(&cfg) {
                needs.push(installed_with(&home));
                if let Ok(real_home) = std::fs::canonicalize(&home) {
                    needs.push(installed_with(&real_home));
                }
            }
        }
        // A script's interpreter named by its path is run too (one level:
        // an interpreter is a binary, or `env`).
        if depth == 0
            && let Some(interpreter) = real.as_deref().and_then(shebang)
            && interpreter.is_absolute()
        {
            self.needs_of_into(&interpreter, needs, depth + 1);
        }
    }
}

/// A directory holding an executable, widened to what it was installed
/// with: a `bin/` to its prefix (a Python's `lib/`), a file in an npm
/// package to the `node_modules` it sits in (its dependencies).
pub(crate) fn installed_with(dir: &Path) -> PathBuf {
    let dir = match dir.file_name() {
        Some(name) if name == "bin" => dir.parent().unwrap_or(dir),
        _ => dir,
    };
    dir.ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "node_modules"))
        .unwrap_or(dir)
        .to_path_buf()
}

/// The `home` a `pyvenv.cfg` names: the base interpreter's directory.
fn venv_home(cfg: &str) -> Option<PathBuf> {
    cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "home")
            .then(|| PathBuf::from(value.trim()))
            .filter(|p| p.is_absolute())
    })
}

/// The interpreter a script's `#!` line names, when it names one by path.
fn shebang(script: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let read = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    let head = head[..read].strip_prefix(b"#!")?;
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.split_whitespace().next().map(PathBuf::from)
}

/// The paths a failed step's last lines say it could not find: shells'
/// `PATH: No such file or directory` and `PATH: not found`, Python's
/// `can't open file 'PATH'`.
pub(crate) fn paths_not_found(lines: &[String]) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for line in lines {
        let missing = ["No such file or directory", "not found", "can't open file"];
        if !missing.iter().any(|m| line.contains(m)) {
            continue;
        }
        for word in line.split(|c: char| c.is_whitespace() || c == ':' || c == '\'' || c == '"') {
            let word = word.trim_end_matches([',', '.', ')', ']']);
            if word.len() > 1 && word.starts_with('/') {
                let path = PathBuf::from(word);
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn executable(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn view(home: &Path, vars: &[(&str, &Path)], hidden: &[PathBuf]) -> HostView {
        let vars: Vec<(String, PathBuf)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_path_buf()))
            .collect();
        HostView::new(
            Some(home),
            |name| {
                vars.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone().into_os_string())
            },
            hidden,
        )
    }

    #[test]
    fn a_shim_needs_its_managers_root_found_by_its_variable_or_the_home() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = std::fs::canonicalize(dir.path()).expect("real");
        let pyenv = home.join("elsewhere/pyenv");
        executable(&pyenv.join("shims/python3"), "#!/usr/bin/env bash\n");
        std::fs::create_dir_all(home.join(".rustup/toolchains")).expect("rustup");
        executable(&home.join(".cargo/bin/cargo"), "\x7fELF");
        let view = view(&home, &[("PYENV_ROOT", &pyenv)], &[]);
        let names: Vec<&str> = view.managers().iter().map(|m| m.name).collect();
        assert_eq!(names, ["pyenv", "rustup"]);
        let needs = view.needs_of(&pyenv.join("shims/python3"));
        assert!(needs.contains(&pyenv), "{needs:?}");
        // rustup's proxies are in cargo's bin; they need rustup's home.
        let needs = view.needs_of(&home.join(".cargo/bin/cargo"));
        assert!(needs.contains(&home.join(".rustup")), "{needs:?}");
        // Not cargo's home, where its registry tokens are.
        assert!(!view.allowed(&home.join(".cargo")), "{needs:?}");
        assert!(view.allowed(&home.join(".cargo/bin")), "{needs:?}");
    }

    #[test]
    fn a_venvs_python_needs_the_venv_and_its_base_interpreters_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("real");
        let base = root.join("pythons/3.12");
        executable(&base.join("bin/python3.12"), "\x7fELF");
        let venv = root.join("project/.venv");
        std::fs::create_dir_all(venv.join("bin")).expect("venv");
        std::os::unix::fs::symlink(base.join("bin/python3.12"), venv.join("bin/python"))
            .expect("link");
        std::fs::write(
            venv.join("pyvenv.cfg"),
            format!("home = {}\nversion = 3.12.1\n", base.join("bin").display()),
        )
        .expect("cfg");
        let needs = view(&root, &[], &[]).needs_of(&venv.join("bin/python"));
        assert!(needs.contains(&venv), "{needs:?}");
        assert!(needs.contains(&base), "{needs:?}");
    }

    #[test]
    fn a_scripts_interpreter_named_by_its_path_is_needed_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("real");
        executable(&root.join("opt/py/bin/python3"), "\x7fELF");
        let script = root.join("tools/run");
        executable(
            &script,
            &format!(
                "#!{} -u\nprint(1)\n",
                root.join("opt/py/bin/python3").display()
            ),
        );
        let needs = view(&root, &[], &[]).needs_of(&script);
        assert!(needs.contains(&root.join("tools")), "{needs:?}");
        assert!(needs.contains(&root.join("opt/py")), "{needs:?}");
    }

    #[test]
    fn nothing_that_is_or_holds_a_secret_or_the_workers_data_is_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = std::fs::canonicalize(dir.path()).expect("real");
        let data = home.join("project/.tidewright");
        std::fs::create_dir_all(&data).expect("data");
        let view = view(&home, &[], std::slice::from_ref(&data));
        for refused in [
            home.clone(),
            home.join(".ssh"),
            home.join(".ssh/keys"),
            home.join("project"),
            data.join("work/local-1"),
            home.join(".config"),
        ] {
            assert!(!view.allowed(&refused), "{}", refused.display());
        }
        for allowed in [
            home.join(".pyenv"),
            home.join("project/src"),
            home.join(".config/git"),
        ] {
            assert!(view.allowed(&allowed), "{}", allowed.display());
        }
        assert_eq!(
            view.hidden_by(&home.join(".ssh/id")),
            Some(home.join(".ssh").as_path())
        );
    }

    #[test]
    fn the_paths_a_failure_could_not_find_are_read_from_its_lines() {
        let lines = [
            "/root/.pyenv/shims/python3: line 12: /root/.pyenv/libexec/pyenv: No such file or directory",
            "sh: 1: /opt/tool/bin/run: not found",
            "python3: can't open file '/srv/app/main.py': [Errno 2] No such file or directory",
            "an ordinary line naming /usr/bin",
        ]
        .map(String::from);
        assert_eq!(
            paths_not_found(&lines),
            [
                "/root/.pyenv/shims/python3",
                "/root/.pyenv/libexec/pyenv",
                "/opt/tool/bin/run",
                "/srv/app/main.py"
            ]
            .map(PathBuf::from)
        );
    }
}
