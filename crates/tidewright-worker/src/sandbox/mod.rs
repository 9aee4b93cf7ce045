//! A step's sandbox: its process runs under bubblewrap (`bwrap`, Debian's
//! `bubblewrap`) in namespaces of its own, with a root made of the system's
//! programs (read-only), its workspace (read-write), a private `/tmp` and
//! `HOME`, and nothing else of the host: not the worker's token, data or
//! configuration, not another step's workspace, not `~/.ssh`. It holds no
//! capabilities and cannot gain privileges. The worker checks at start that
//! a sandbox can be made, and refuses to run steps when it cannot; only
//! `--sandbox=off` runs them unconfined, and says so.
//!
//! Why bubblewrap: it is what Flatpak and others confine untrusted
//! programs with, maintained, packaged everywhere, and needs no daemon and
//! no privilege where unprivileged user namespaces are allowed. Landlock
//! would confine the filesystem only, and a seccomp filter alone hides
//! nothing; bubblewrap gives the step a root of its own, its own process
//! tree (a killed worker takes the whole tree with it) and, next, its own
//! network namespace.
//!
//! Its parts: what of the host a step sees (`host_view`), its network and
//! the ways out its worker opens (`egress`), its memory, CPU, process and
//! disk limits (`limits`), the model proxy that keeps the providers' keys
//! out of it (`model_proxy`, with when a provider's limit resets,
//! `provider_reset`). The worker makes and checks them all once, at start
//! (`crate::isolation`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::program::find_program;

pub mod egress;
pub mod host_view;
pub mod limits;
pub mod model_proxy;
pub mod overlay;
pub mod provider_reset;
use host_view::{HostView, Managed};

/// The step's `HOME` inside the sandbox: private, empty at the start.
pub const SANDBOX_HOME: &str = "/home/tidewright";

/// The host's files a program commonly needs to run, from `/etc`: its
/// users and groups (names for ids), name resolution, TLS roots, time
/// zone, the dynamic linker's cache. Missing ones are skipped.
const ETC: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/gitconfig",
    "/etc/mime.types",
];

/// Top-level system directories: bound read-only, or made the same
/// symbolic link they are on the host (`/bin -> usr/bin` on merged-/usr
/// systems).
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"];

/// Whether steps run sandboxed: the default, or `--sandbox=off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    #[default]
    On,
    Off,
}

/// How a worker sandboxes its steps.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    pub mode: SandboxMode,
    /// The bubblewrap executable.
    pub bwrap: PathBuf,
    /// Directories steps may read besides the system's (tools installed
    /// outside `/usr`); the directories on the worker's `PATH` and its
    /// agent CLIs' are added.
    pub read_only: Vec<PathBuf>,
    /// Directories every step may read and write, seeing each other's
    /// writes (a build cache): what is there is no step's own.
    pub shared: Vec<PathBuf>,
    /// What no step may read, nor a directory holding it, whatever a
    /// program resolves to: the worker's data, work and secrets
    /// directories (the home's keys are always hidden).
    pub hidden: Vec<PathBuf>,
    /// The pool's egress allow-list (`--egress-allow`); `None`: none.
    pub egress_allow: Option<Vec<String>>,
    /// Names the egress proxy resolves itself (`--egress-host
    /// NAME=ADDRESS`).
    pub egress_hosts: Vec<String>,
    /// `tidewright-sandbox-net`, run first in each sandbox to relay its ways
    /// out; without it a sandboxed step has no network at all.
    pub init: Option<PathBuf>,
    /// Where the worker lays out, at start, what a step sees of `/etc`,
    /// bound in one mount; `None` binds each entry on its own (a mount
    /// each, at every step's start).
    pub etc_dir: Option<PathBuf>,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            mode: SandboxMode::On,
            bwrap: "bwrap".into(),
            read_only: Vec::new(),
            shared: Vec::new(),
            hidden: Vec::new(),
            egress_allow: None,
            egress_hosts: Vec::new(),
            init: None,
            etc_dir: None,
        }
    }
}

/// What the worker made of its settings at start.
#[derive(Debug, Clone)]
pub enum Sandbox {
    Bubblewrap {
        bwrap: PathBuf,
        /// `bubblewrap 0.8.0`, as the program says it.
        version: String,
        read_only: Vec<PathBuf>,
        shared: Vec<PathBuf>,
        /// What a step sees of `/etc`, laid out once (see [`lay_out_etc`]).
        etc: Option<PathBuf>,
        /// What its programs may need of the machine, and what never.
        view: HostView,
        /// `tidewright-sandbox-net`, which mounts a seed's overlays before
        /// bubblewrap starts (see [`overlay`]).
        helper: Option<PathBuf>,
    },
    /// `--sandbox=off`: steps run as the worker's user with its view of
    /// the machine.
    Off,
}

/// What one step's process may see besides the system's programs.
#[derive(Clone)]
pub(crate) struct Room<'a> {
    pub workspace: &'a Path,
    /// Where its process starts: the workspace or its worktree.
    pub cwd: &'a Path,
    /// Read-only besides its tools: the objects of the mirror its
    /// repository borrows (its commits go into its own repository).
    pub readable: Vec<PathBuf>,
    /// Host directories placed in the private home, as (host directory,
    /// path under the home): an agent CLI's transcripts of this workspace,
    /// which a resume reads.
    pub home_state: Vec<(PathBuf, PathBuf)>,
    /// Programs the worker runs the step with (its agent CLI): their
    /// directories are readable.
    pub programs: Vec<PathBuf>,
    /// The step's own program (a shell step's command), run as it is
    /// named (a venv's interpreter is the venv's only by its name): what it
    /// needs is readable.
    pub command: Option<PathBuf>,
    /// Secret files placed read-only in the private home, as (the file on
    /// the worker, path under the home).
    pub home_secrets: Vec<(PathBuf, PathBuf)>,
    /// Its ways out of its network namespace; with none it has no network
    /// at all.
    pub network: Option<&'a crate::sandbox::egress::Gate>,
    /// A seed's directories laid over its checkout, mounted by the
    /// sandbox's helper before bubblewrap starts.
    pub overlays: Vec<overlay::Overlay>,
}

impl Room<'_> {
    /// A room of the workspace and its working directory only.
    pub fn new<'a>(workspace: &'a Path, cwd: &'a Path) -> Room<'a> {
        Room {
            workspace,
            cwd,
            readable: Vec::new(),
            home_state: Vec::new(),
            programs: Vec::new(),
            command: None,
            home_secrets: Vec::new(),
            network: None,
            overlays: Vec::new(),
        }
    }
}

impl Sandbox {
    /// Checks that a sandbox can be made here by making one (bubblewrap
    /// running `true`), unless the settings say `off`. The error says why
    /// and how to fix it, in one line.
    pub async fn make(settings: &SandboxSettings) -> Result<Sandbox, String> {
        if settings.mode == SandboxMode::Off {
            return Ok(Sandbox::Off);
        }
        let fix = "install bubblewrap (Debian: apt-get install bubblewrap) where unprivileged user namespaces are allowed, or run steps unsandboxed with --sandbox=off";
        let etc = match &settings.etc_dir {
            Some(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || lay_out_etc(&dir).map(|()| dir))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|made| made.map_err(|e| e.to_string()))
                    .map(Some)
                    .map_err(|e| format!("steps cannot be sandboxed: laying out their /etc: {e}"))?
            }
            None => None,
        };
        let key = ProbeKey {
            bwrap: settings.bwrap.clone(),
            read_only: settings.read_only.clone(),
            shared: settings.shared.clone(),
            etc: etc.is_some(),
        };
        let passed = probed(&key);
        let version = match &passed {
            Some(version) => version.clone(),
            None => {
                let said = Command::new(&settings.bwrap)
                    .arg("--version")
                    .stdin(Stdio::null())
                    .output()
                    .await
                    .map_err(|e| {
                        format!(
                            "steps cannot be sandboxed: {}: {e}; {fix}",
                            settings.bwrap.display()
                        )
                    })?;
                String::from_utf8_lossy(&said.stdout).trim().to_string()
            }
        };
        let sandbox = Sandbox::Bubblewrap {
            bwrap: settings.bwrap.clone(),
            version: version.clone(),
            read_only: settings.read_only.clone(),
            shared: settings.shared.clone(),
            etc,
            view: HostView::of_this_machine(&settings.hidden),
            helper: settings.init.clone(),
        };
        if passed.is_some() {
            return Ok(sandbox);
        }
        let probe = std::env::temp_dir();
        let mut env = BTreeMap::new();
        let command = sandbox.confine(
            Command::new("true"),
            &mut env,
            &Room::new(&probe, Path::new("/")),
        );
        let output = command_output(command)
            .await
            .map_err(|e| format!("steps cannot be sandboxed: running bubblewrap: {e}; {fix}"))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            let said = said.trim();
            return Err(format!(
                "steps cannot be sandboxed: bubblewrap failed ({}): {said}; {fix}",
                output.status
            ));
        }
        remember(key, version);
        Ok(sandbox)
    }

    /// Whether a confined command needs a process group made for it: one
    /// in the sandbox makes its own session.
    pub(crate) fn own_group(&self) -> bool {
        matches!(self, Sandbox::Off)
    }

    /// How steps are isolated, as `tidewright get agents` shows it.
    pub fn isolation(&self) -> String {
        match self {
            Sandbox::Bubblewrap {
                version,
                view,
                read_only,
                ..
            } => {
                let mut said =
                    format!("{version}: namespaces user, pid, ipc, uts, cgroup; no capabilities");
                // What steps may read beyond the system and their PATH.
                let tools: Vec<String> = view
                    .managers()
                    .iter()
                    .filter(|m| view.allowed(&m.root))
                    .map(|m| format!("{} {}", m.name, m.root.display()))
                    .chain(read_only.iter().map(|d| d.display().to_string()))
                    .collect();
                if !tools.is_empty() {
                    said.push_str(&format!("; reads {}", tools.join(", ")));
                }
                said
            }
            Sandbox::Off => format!("{} (--sandbox=off)", tidewright_core::UNSANDBOXED),
        }
    }

    /// `command` as it runs in this sandbox, with `room` in view; `env`
    /// is the process's environment, its home and temporary directory
    /// made the sandbox's. In the sandbox the process leads a session of
    /// its own (so it has no terminal to write into), and so a process
    /// group, which a stop signals as a whole; unsandboxed, the caller
    /// gives it a group of its own ([`Sandbox::own_group`]).
    pub(crate) fn confine(
        &self,
        command: Command,
        env: &mut BTreeMap<String, String>,
        room: &Room,
    ) -> Command {
        let Sandbox::Bubblewrap {
            bwrap,
            read_only,
            shared,
            etc,
            view,
            helper,
            ..
        } = self
        else {
            return command;
        };
        // A version manager's shims find its root by a variable whose
        // default is under the home, which is the sandbox's own.
        let path_var = env.get("PATH");
        let programs = room_programs(room, path_var);
        for managed in managed_in(view, &path_dirs(path_var), &programs) {
            env.entry(managed.variable.to_string())
                .or_insert_with(|| managed.root.display().to_string());
        }
        env.insert("HOME".into(), SANDBOX_HOME.into());
        env.insert("TMPDIR".into(), "/tmp".into());
        if let Some(gate) = room.network {
            env.extend(gate.env().iter().cloned());
        }
        let std = command.as_std();
        let mut wrapped = Command::new("setsid");
        // A seed's overlays are mounted first, by the helper, which then
        // becomes bubblewrap. Only a worker that has the helper lays them
        // (see `overlay::probe`).
        if let (Some(helper), false) = (helper, room.overlays.is_empty()) {
            wrapped.arg(helper);
            for overlay in &room.overlays {
                wrapped.args(overlay.args());
            }
            wrapped.arg("--");
        }
        wrapped.arg(bwrap);
        let host = Host {
            read_only,
            shared,
            etc: etc.as_deref(),
            view,
        };
        wrapped.args(bwrap_args(room, &host, env.get("PATH")));
        if let Some(gate) = room.network {
            wrapped.args(gate.init());
        }
        // A program the room names (an agent CLI) runs by its real path:
        // the directory it is named in is bound, but a link there (npm's
        // `.bin/`) may lead, through a linked directory (a prefix behind a
        // link), to a path the sandbox does not have. It is the same
        // program: node loads a main script by its real path anyway.
        let program = std.get_program();
        let real = room
            .programs
            .iter()
            .find(|named| named.as_os_str() == program)
            .and_then(|named| find_program(named, room.cwd, env.get("PATH").map(String::as_str)))
            .and_then(|found| std::fs::canonicalize(found).ok());
        wrapped.arg(real.as_deref().map_or(program, Path::as_os_str));
        wrapped.args(std.get_args());
        wrapped
    }
}

impl Sandbox {
    /// Why a step that failed with `lines` last on its stderr may have
    /// failed for want of a path: the first path they say was not found
    /// that is on the worker but out of the step's view, with the flag
    /// that gives it (or why no flag may); for an exit of 127 that names
    /// none, that a program it ran was not found.
    pub(crate) fn unseen(
        &self,
        room: &Room,
        path_var: Option<&String>,
        lines: &[String],
        code: Option<i32>,
    ) -> Option<String> {
        let Sandbox::Bubblewrap {
            read_only,
            shared,
            view,
            ..
        } = self
        else {
            return None;
        };
        let tools = tool_dirs(room, read_only, view, path_var);
        let seen = |path: &Path| {
            SYSTEM_DIRS.iter().any(|s| path.starts_with(s))
                || path.starts_with(room.workspace)
                || tools
                    .iter()
                    .chain(shared)
                    .chain(&room.readable)
                    .any(|d| path.starts_with(d))
        };
        for path in host_view::paths_not_found(lines) {
            if seen(&path) || std::fs::symlink_metadata(&path).is_err() {
                continue;
            }
            if let Some(hidden) = view.hidden_by(&path) {
                return Some(format!(
                    "{} is on the worker, but steps may not read it ({} is kept from them)",
                    path.display(),
                    hidden.display()
                ));
            }
            // Its version manager's root, else its directory.
            let dir = view
                .managers()
                .iter()
                .find(|m| path.starts_with(&m.root))
                .map(|m| m.root.clone())
                .or_else(|| {
                    if path.is_dir() {
                        Some(path.clone())
                    } else {
                        path.parent().map(host_view::installed_with)
                    }
                })?;
            return Some(format!(
                "{} is on the worker but not in the step's sandbox; the workers' --sandbox-read-only {} gives it",
                path.display(),
                dir.display()
            ));
        }
        (code == Some(127)).then(|| {
            "a program it ran was not found in its sandbox (on its PATH, or readable there); the workers' --sandbox-read-only DIR gives steps a directory".to_string()
        })
    }
}

async fn command_output(mut command: Command) -> std::io::Result<std::process::Output> {
    command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
}

/// What a sandbox was probed with: the workers of one process (`tidewright up`
/// runs several) share the machine, so the first probe that passes proves
/// it for the rest, and each starts without running bubblewrap again.
#[derive(PartialEq)]
struct ProbeKey {
    bwrap: PathBuf,
    read_only: Vec<PathBuf>,
    shared: Vec<PathBuf>,
    /// With `/etc` bound as one directory, or entry by entry.
    etc: bool,
}

/// The probes that passed in this process, with the version each found.
/// A failure is not kept: it is said, and the next start tries again.
static PROBED: std::sync::Mutex<Vec<(ProbeKey, String)>> = std::sync::Mutex::new(Vec::new());

fn probed(key: &ProbeKey) -> Option<String> {
    let passed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    passed
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, version)| version.clone())
}

fn remember(key: ProbeKey, version: String) {
    let mut passed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    if !passed.iter().any(|(k, _)| *k == key) {
        passed.push((key, version));
    }
}

/// What of the worker's machine every step sees, besides its room.
struct Host<'a> {
    read_only: &'a [PathBuf],
    shared: &'a [PathBuf],
    etc: Option<&'a Path>,
    view: &'a HostView,
}

/// Lays out in `dir` (made anew) what a step sees of `/etc`: the entries
/// of [`ETC`] the host has, a file by its contents (a link followed, as a
/// bind would), a directory as it is (its links kept as links, pointing
/// where they did), but for private keys (`ssl/private`). One bind of it
/// costs a step's start one mount instead of one per entry. `hosts` is
/// always there, for a step's own to be bound over. Blocking.
fn lay_out_etc(dir: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(dir).is_ok() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    for entry in ETC {
        let from = Path::new(entry);
        let Some(name) = from.file_name() else {
            continue;
        };
        match std::fs::metadata(from) {
            Ok(meta) if meta.is_dir() => copy_tree(from, &dir.join(name))?,
            Ok(_) => {
                std::fs::copy(from, dir.join(name))?;
            }
            Err(_) => {}
        }
    }
    let hosts = dir.join("hosts");
    if !hosts.exists() {
        std::fs::write(hosts, "127.0.0.1 localhost\n::1 localhost\n")?;
    }
    Ok(())
}

/// Copies the tree at `from` to `to`, links as links; what cannot be read
/// (a key only root may read) is left out.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let (source, target) = (entry.path(), to.join(&name));
        if name == "private" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            match std::fs::copy(&source, &target) {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                other => {
                    other?;
                }
            }
        }
    }
    Ok(())
}

/// bubblewrap's arguments up to the program: namespaces, then the root's
/// mounts in order (a later mount may sit inside an earlier one), then the
/// working directory.
fn bwrap_args(room: &Room, host: &Host, path_var: Option<&String>) -> Vec<OsString> {
    let Host {
        read_only,
        shared,
        etc,
        view,
    } = *host;
    let mut args: Vec<OsString> = Vec::new();
    let mut add = |parts: &[&dyn AsRef<std::ffi::OsStr>]| {
        args.extend(parts.iter().map(|p| p.as_ref().to_os_string()));
    };
    add(&[
        &"--unshare-user",
        &"--unshare-pid",
        &"--unshare-ipc",
        &"--unshare-uts",
        &"--unshare-cgroup-try",
        // A network of its own: loopback only, its ways out the gate's.
        &"--unshare-net",
        &"--hostname",
        &"tidewright-step",
        // The worker's death (even by SIGKILL) ends the sandbox, and with
        // its first process the whole process namespace.
        &"--die-with-parent",
        &"--cap-drop",
        &"ALL",
    ]);
    for dir in SYSTEM_DIRS {
        let dir = Path::new(dir);
        match std::fs::read_link(dir) {
            Ok(target) => add(&[&"--symlink", &target, &dir]),
            Err(_) if dir.is_dir() => add(&[&"--ro-bind", &dir, &dir]),
            Err(_) => {}
        }
    }
    match etc {
        Some(dir) => add(&[&"--ro-bind", &dir, &"/etc"]),
        None => {
            for file in ETC {
                add(&[&"--ro-bind-try", file, file]);
            }
        }
    }
    add(&[
        &"--proc",
        &"/proc",
        &"--dev",
        &"/dev",
        &"--tmpfs",
        &"/tmp",
        &"--perms",
        &"0700",
        &"--tmpfs",
        &SANDBOX_HOME,
    ]);
    for (host, under_home) in &room.home_state {
        add(&[&"--bind", host, &Path::new(SANDBOX_HOME).join(under_home)]);
    }
    for (host, under_home) in &room.home_secrets {
        add(&[
            &"--ro-bind",
            host,
            &Path::new(SANDBOX_HOME).join(under_home),
        ]);
    }
    for dir in tool_dirs(room, read_only, view, path_var) {
        add(&[&"--ro-bind", &dir, &dir]);
    }
    for (host, inside) in room.network.iter().flat_map(|gate| gate.binds()) {
        add(&[&"--ro-bind", &host, &inside]);
    }
    for dir in shared {
        add(&[&"--bind", dir, dir]);
    }
    add(&[&"--bind", &room.workspace, &room.workspace]);
    // Last: read-only even where a shared directory holds them.
    for dir in &room.readable {
        add(&[&"--ro-bind", dir, dir]);
    }
    // The root bwrap made holds nothing but the mount points above; read-only,
    // a write outside the workspace, /tmp and the home fails as it would
    // on the host, instead of vanishing with the sandbox.
    add(&[&"--remount-ro", &"/", &"--chdir", &room.cwd, &"--"]);
    args
}

/// The programs a step's room names, found as its process will find
/// them: its agent CLI, its command, the network relay.
fn room_programs(room: &Room, path_var: Option<&String>) -> Vec<PathBuf> {
    let init = room.network.map(|gate| gate.program().to_path_buf());
    room.programs
        .iter()
        .chain(&room.command)
        .chain(&init)
        .filter_map(|program| find_program(program, room.cwd, path_var.map(String::as_str)))
        .collect()
}

/// The directories of a `PATH` value.
fn path_dirs(path_var: Option<&String>) -> Vec<PathBuf> {
    path_var
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default()
}

/// The version managers whose shims or proxies a step may run: in the
/// directories on its `PATH`, or among its `programs` (as found).
fn managed_in<'a>(
    view: &'a HostView,
    on_path: &[PathBuf],
    programs: &[PathBuf],
) -> Vec<&'a Managed> {
    let dirs = on_path
        .iter()
        .map(PathBuf::as_path)
        .chain(programs.iter().filter_map(|p| p.parent()));
    let mut managed: Vec<&Managed> = Vec::new();
    for dir in dirs {
        for m in view.managers_of(dir) {
            if view.allowed(&m.root) && !managed.contains(&m) {
                managed.push(m);
            }
        }
    }
    managed
}

/// The directories a step may read beyond the system's: those it is told
/// of; what its programs need (see [`HostView::needs_of`]); those on its
/// `PATH` (where its tools are) with the roots of the version managers
/// whose shims are there. Each once, the system's own left out (already
/// there), none that is not an absolute, existing directory, and none the
/// worker keeps from steps, but what it was told.
fn tool_dirs(
    room: &Room,
    read_only: &[PathBuf],
    view: &HostView,
    path_var: Option<&String>,
) -> Vec<PathBuf> {
    let on_path = path_dirs(path_var);
    // Found once: what each needs, and whose shims they are.
    let programs = room_programs(room, path_var);
    let managed: Vec<PathBuf> = managed_in(view, &on_path, &programs)
        .into_iter()
        .map(|m| m.root.clone())
        .collect();
    let found = programs
        .iter()
        .flat_map(|found| view.needs_of(found))
        .chain(on_path)
        .chain(managed)
        .filter(|dir| view.allowed(dir));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for dir in read_only.iter().cloned().chain(found) {
        let system = SYSTEM_DIRS.iter().any(|s| dir.starts_with(s));
        if dir.is_absolute() && dir.is_dir() && !system && !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    // One inside another is already there.
    let outer = dirs.clone();
    dirs.retain(|d| !outer.iter().any(|o| o != d && d.starts_with(o)));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The arguments after `flag`, at each place it appears.
    fn after(args: &[String], flag: &str) -> Vec<(String, String)> {
        args.windows(3)
            .filter(|w| w[0] == flag)
            .map(|w| (w[1].clone(), w[2].clone()))
            .collect()
    }

    #[test]
    fn a_room_binds_its_workspace_writable_and_tools_and_borrowed_objects_read_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = dir.path().join("work/t/s/attempt-1");
        let tools = dir.path().join("tools");
        std::fs::create_dir_all(&workspace).expect("workspace");
        std::fs::create_dir_all(&tools).expect("tools");
        let mut room = Room::new(&workspace, &workspace);
        let objects = dir.path().join("mirror/objects");
        room.readable.push(objects.clone());
        let path = format!("/usr/bin:{}:relative:/nonexistent", tools.display());
        let host = Host {
            read_only: &[],
            shared: &[],
            etc: None,
            view: &HostView::default(),
        };
        let args = strings(&bwrap_args(&room, &host, Some(&path)));

        let ws = workspace.display().to_string();
        assert!(after(&args, "--bind").contains(&(ws.clone(), ws.clone())));
        let tools = tools.display().to_string();
        // Only existing absolute directories outside the system's.
        assert_eq!(after(&args, "--ro-bind-try").len(), ETC.len());
        let read_only: Vec<String> = after(&args, "--ro-bind")
            .into_iter()
            .map(|(from, _)| from)
            .filter(|from| !SYSTEM_DIRS.contains(&from.as_str()))
            .collect();
        assert_eq!(read_only, vec![tools, objects.display().to_string()]);
        assert_eq!(
            after(&args, "--bind"),
            vec![(ws.clone(), ws.clone())],
            "nothing but the workspace is writable"
        );
        // The workspace may lie under /tmp: its bind comes after the
        // private /tmp, or the tmpfs would hide it.
        let at = |s: &str| args.iter().position(|a| a == s).expect(s);
        assert!(at("/tmp") < at(&ws));
        assert!(args.contains(&"--die-with-parent".to_string()));
        assert!(args.windows(2).any(|w| w == ["--cap-drop", "ALL"]));
        assert_eq!(args.last().map(String::as_str), Some("--"));
    }

    #[test]
    fn etc_laid_out_once_is_one_bind_and_holds_no_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        // Made anew: what an earlier start left goes.
        std::fs::create_dir_all(etc.join("stale")).expect("stale");
        lay_out_etc(&etc).expect("laid out");
        assert!(!etc.join("stale").exists());
        for entry in ETC {
            let name = Path::new(entry).file_name().expect("a name");
            if let Ok(meta) = std::fs::metadata(entry)
                && meta.is_file()
                && let Ok(host) = std::fs::read(entry)
            {
                assert_eq!(
                    std::fs::read(etc.join(name)).expect("copied"),
                    host,
                    "{entry}"
                );
            }
        }
        assert!(
            etc.join("hosts").is_file(),
            "a step's hosts is bound over it"
        );
        assert!(!etc.join("ssl/private").exists(), "no private key");
        if let Ok(certs) = std::fs::read_dir("/etc/ssl/certs") {
            let links = certs
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
                .count();
            let copied = std::fs::read_dir(etc.join("ssl/certs"))
                .expect("certs")
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
                .count();
            assert_eq!(copied, links, "links stay links");
        }

        let workspace = dir.path().join("ws");
        std::fs::create_dir_all(&workspace).expect("workspace");
        let room = Room::new(&workspace, &workspace);
        let host = Host {
            read_only: &[],
            shared: &[],
            etc: Some(&etc),
            view: &HostView::default(),
        };
        let args = strings(&bwrap_args(&room, &host, None));
        assert!(after(&args, "--ro-bind-try").is_empty());
        assert!(after(&args, "--ro-bind").contains(&(etc.display().to_string(), "/etc".into())));
    }

    /// A bubblewrap that says its version and runs nothing, counting each
    /// call in `calls`.
    fn counting_bwrap(dir: &Path) -> (PathBuf, PathBuf) {
        let calls = dir.join("calls");
        let bwrap = dir.join("bwrap");
        std::fs::write(
            &bwrap,
            format!(
                "#!/bin/sh\necho call >> {}\necho 'bubblewrap 9.9'\n",
                calls.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&bwrap, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("mode");
        (bwrap, calls)
    }

    #[tokio::test]
    async fn the_workers_of_one_process_probe_the_sandbox_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bwrap, calls) = counting_bwrap(dir.path());
        let settings = SandboxSettings {
            bwrap,
            ..SandboxSettings::default()
        };
        let count = || {
            std::fs::read_to_string(&calls)
                .unwrap_or_default()
                .lines()
                .count()
        };
        for _ in 0..3 {
            let sandbox = Sandbox::make(&settings).await.expect("made");
            assert_eq!(
                sandbox.isolation().split(':').next(),
                Some("bubblewrap 9.9")
            );
        }
        assert_eq!(count(), 2, "its version and one run, once");
        // With /etc as one directory it is another sandbox: probed once more.
        let with_etc = SandboxSettings {
            etc_dir: Some(dir.path().join("etc")),
            ..settings.clone()
        };
        Sandbox::make(&with_etc).await.expect("made");
        Sandbox::make(&with_etc).await.expect("made");
        assert_eq!(count(), 4);
    }

    #[test]
    fn off_leaves_the_command_and_its_environment_as_they_are() {
        let mut env = BTreeMap::from([("HOME".to_string(), "/root".to_string())]);
        let command = Sandbox::Off.confine(
            Command::new("sh"),
            &mut env,
            &Room::new(Path::new("/w"), Path::new("/w")),
        );
        assert_eq!(command.as_std().get_program(), "sh");
        assert_eq!(env["HOME"], "/root");
    }

    #[test]
    fn a_sandboxed_command_gets_a_private_home_and_tmp_and_runs_under_bubblewrap() {
        let sandbox = Sandbox::Bubblewrap {
            bwrap: "/usr/bin/bwrap".into(),
            version: "bubblewrap 0.8.0".into(),
            read_only: Vec::new(),
            shared: Vec::new(),
            etc: None,
            view: HostView::default(),
            helper: None,
        };
        let mut env = BTreeMap::from([
            ("HOME".to_string(), "/root".to_string()),
            ("TMPDIR".to_string(), "/var/tmp/worker".to_string()),
        ]);
        let mut command = Command::new("sh");
        command.args(["-c", "echo hi"]);
        let command = sandbox.confine(
            command,
            &mut env,
            &Room::new(Path::new("/w"), Path::new("/w")),
        );
        let std = command.as_std();
        assert_eq!(std.get_program(), "setsid");
        let args: Vec<String> = std.get_args().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(args[0], "/usr/bin/bwrap");
        assert_eq!(&args[args.len() - 4..], ["--", "sh", "-c", "echo hi"]);
        assert_eq!(env["HOME"], SANDBOX_HOME);
        assert_eq!(env["TMPDIR"], "/tmp");
    }
}
