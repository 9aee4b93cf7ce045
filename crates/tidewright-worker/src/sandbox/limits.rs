//! A step's limits: memory and processes in a cgroup of its own, below the
//! worker's (cgroup v2 where it is delegated, v1's `memory` and `pids`
//! controllers where they are writable), open files, CPU time and file
//! size as rlimits, and its workspace's disk by measure ([`DiskWatch`]). A
//! step that hits the memory, process or disk limit ends with a reason
//! that names it, not a bare exit code. The pool's limits and a step's own
//! merge narrowest-wins. What applies here is found at start and said in
//! `tidewright get agents`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tidewright_core::StepLimits;
use tidewright_core::step_limits::{format_bytes as size, narrowest, parse_bytes};
use tokio::process::Command;

/// What each step may use; `None` leaves it unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSettings {
    pub memory_bytes: Option<u64>,
    pub processes: Option<u64>,
    pub open_files: Option<u64>,
    pub cpu_seconds: Option<u64>,
    /// What the step's workspace may hold.
    pub disk_bytes: Option<u64>,
}

/// How the limits are held here, found at start.
#[derive(Debug, Clone)]
pub struct Limits {
    settings: LimitSettings,
    cgroups: Cgroups,
}

/// Where a step's cgroup is made.
#[derive(Debug, Clone, PartialEq)]
enum Cgroups {
    /// The unified hierarchy: the worker's own cgroup, delegated.
    V2(PathBuf),
    /// v1: the worker's cgroups of the `memory` and `pids` controllers.
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
    /// None can be made: why.
    None(String),
}

/// The cgroup of one attempt, while it runs.
pub(crate) struct StepCgroup {
    /// Each directory the process joins (one on v2, one per controller on
    /// v1).
    dirs: Vec<PathBuf>,
    v2: bool,
    settings: LimitSettings,
}

impl Limits {
    /// Finds how `settings` can be held on this machine: in a cgroup made
    /// below the worker's own, if it may make one there.
    /// Probed whatever the pool asks: a step may ask for its own.
    pub fn probe(settings: LimitSettings) -> Limits {
        let cgroups =
            probe_cgroups(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
        Limits { settings, cgroups }
    }

    /// One step's limits: its own and the pool's, the lower of each. A
    /// memory or process limit this worker cannot hold is refused, as the
    /// pool's is at start, not left unenforced.
    pub(crate) fn for_step(&self, step: Option<&StepLimits>) -> Result<LimitSettings, String> {
        let pool = &self.settings;
        let Some(step) = step else {
            return Ok(pool.clone());
        };
        // Checked at submit; a size that does not parse here limits nothing
        // more than the pool does.
        let bytes = |size: &Option<String>| size.as_deref().and_then(|s| parse_bytes(s).ok());
        let settings = LimitSettings {
            memory_bytes: narrowest(pool.memory_bytes, bytes(&step.memory)),
            processes: narrowest(pool.processes, step.processes),
            open_files: narrowest(pool.open_files, step.open_files),
            cpu_seconds: narrowest(pool.cpu_seconds, step.cpu_seconds),
            disk_bytes: narrowest(pool.disk_bytes, bytes(&step.disk)),
        };
        let held = |memory: bool| match &self.cgroups {
            Cgroups::V2(_) => true,
            Cgroups::V1 { memory: m, pids } => {
                if memory {
                    m.is_some()
                } else {
                    pids.is_some()
                }
            }
            Cgroups::None(_) => false,
        };
        for (asked, memory, what) in [
            (settings.memory_bytes, true, "memory"),
            (settings.processes, false, "processes"),
        ] {
            if asked.is_some() && !held(memory) {
                let why = match &self.cgroups {
                    Cgroups::None(why) => why.clone(),
                    _ => format!("no writable cgroup of the {what} controller"),
                };
                return Err(format!(
                    "the step's {what} limit cannot be held on this worker: {why}"
                ));
            }
        }
        Ok(settings)
    }

    /// What is limited and how, as `tidewright get agents` shows it.
    pub fn describe(&self) -> String {
        let s = &self.settings;
        let mut held = Vec::new();
        let how = match &self.cgroups {
            Cgroups::V2(_) => "cgroup v2",
            Cgroups::V1 { .. } => "cgroup v1",
            Cgroups::None(_) => "",
        };
        if let Some(bytes) = s.memory_bytes {
            held.push(match &self.cgroups {
                Cgroups::V2(_)
                | Cgroups::V1 {
                    memory: Some(_), ..
                } => {
                    format!("memory {} ({how})", size(bytes))
                }
                _ => format!("memory {} NOT HELD", size(bytes)),
            });
        }
        if let Some(n) = s.processes {
            held.push(match &self.cgroups {
                Cgroups::V2(_) | Cgroups::V1 { pids: Some(_), .. } => {
                    format!("processes {n} ({how})")
                }
                _ => format!("processes {n} NOT HELD"),
            });
        }
        if let Some(n) = s.open_files {
            held.push(format!("open files {n} (rlimit)"));
        }
        if let Some(n) = s.cpu_seconds {
            held.push(format!("cpu {n}s (rlimit)"));
        }
        if let Some(bytes) = s.disk_bytes {
            held.push(format!(
                "disk {} (the workspace measured, files by rlimit)",
                size(bytes)
            ));
        }
        if held.is_empty() {
            return match &self.cgroups {
                Cgroups::None(_) => "limits none".into(),
                _ => format!("limits none (a step's own: {how})"),
            };
        }
        let mut text = format!("limits {}", held.join(", "));
        if let Cgroups::None(why) = &self.cgroups
            && text.contains("NOT HELD")
        {
            text.push_str(&format!(": no cgroup ({why})"));
        }
        text
    }

    /// The memory or process limit is asked for but cannot be held here.
    pub fn unheld(&self) -> Option<String> {
        self.describe()
            .contains("NOT HELD")
            .then(|| self.describe())
    }

    /// Makes `name`'s cgroup with the limits written; `None` when no
    /// cgroup limit applies.
    pub(crate) fn enter(
        &self,
        name: &str,
        s: &LimitSettings,
    ) -> std::io::Result<Option<StepCgroup>> {
        let (dirs, v2) = match &self.cgroups {
            Cgroups::None(_) => return Ok(None),
            Cgroups::V2(parent) => {
                let dir = parent.join(name);
                std::fs::create_dir_all(&dir)?;
                if let Some(bytes) = s.memory_bytes {
                    std::fs::write(dir.join("memory.max"), bytes.to_string())?;
                    // No swap to spill into: the limit is the limit.
                    let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(n) = s.processes {
                    std::fs::write(dir.join("pids.max"), n.to_string())?;
                }
                (vec![dir], true)
            }
            Cgroups::V1 { memory, pids } => {
                let mut dirs = Vec::new();
                if let (Some(parent), Some(bytes)) = (memory, s.memory_bytes) {
                    let dir = parent.join(name);
                    std::fs::create_dir_all(&dir)?;
                    std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
                    let _ =
                        std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                    dirs.push(dir);
                }
                if let (Some(parent), Some(n)) = (pids, s.processes) {
                    let dir = parent.join(name);
                    std::fs::create_dir_all(&dir)?;
                    std::fs::write(dir.join("pids.max"), n.to_string())?;
                    dirs.push(dir);
                }
                (dirs, false)
            }
        };
        Ok((!dirs.is_empty()).then(|| StepCgroup {
            dirs,
            v2,
            settings: s.clone(),
        }))
    }

    /// `command` under the rlimits, joining `cgroup` before it starts (a
    /// shell joins, then becomes it), so nothing it forks is outside.
    pub(crate) fn wrap(
        command: Command,
        cgroup: Option<&StepCgroup>,
        s: &LimitSettings,
    ) -> Command {
        let std = command.as_std();
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(cgroup) = cgroup {
            let mut join = String::new();
            for (i, _) in cgroup.dirs.iter().enumerate() {
                join.push_str(&format!("echo $$ > \"${}\"/cgroup.procs && ", i + 1));
            }
            join.push_str(&format!("shift {} && exec \"$@\"", cgroup.dirs.len()));
            argv.extend(["sh".into(), "-c".into(), join.into(), "sh".into()]);
            argv.extend(cgroup.dirs.iter().map(|d| d.as_os_str().to_os_string()));
        }
        if s.open_files.is_some() || s.cpu_seconds.is_some() || s.disk_bytes.is_some() {
            argv.push("prlimit".into());
            if let Some(n) = s.open_files {
                argv.push(format!("--nofile={n}:{n}").into());
            }
            if let Some(n) = s.cpu_seconds {
                argv.push(format!("--cpu={n}:{n}").into());
            }
            // No one file past the workspace's limit, however fast it is
            // written: the measure between looks cannot be outrun by one.
            if let Some(n) = s.disk_bytes {
                argv.push(format!("--fsize={n}:{n}").into());
            }
            argv.push("--".into());
        }
        if argv.is_empty() {
            return command;
        }
        argv.push(std.get_program().to_os_string());
        argv.extend(std.get_args().map(|a| a.to_os_string()));
        let mut wrapped = Command::new(&argv[0]);
        wrapped.args(&argv[1..]);
        wrapped
    }
}

impl StepCgroup {
    /// Which limit ended the step, when one did: its memory (the kernel
    /// killed a process of it for want of memory), or its processes (a fork
    /// was refused at the limit).
    pub(crate) fn verdict(&self) -> Option<String> {
        let read =
            |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        for dir in &self.dirs {
            let (oom, pids) = if self.v2 {
                (
                    counter(&read(dir, "memory.events"), "oom_kill"),
                    counter(&read(dir, "pids.events"), "max"),
                )
            } else {
                (
                    counter(&read(dir, "memory.oom_control"), "oom_kill"),
                    counter(&read(dir, "pids.events"), "max"),
                )
            };
            if oom > 0
                && let Some(bytes) = self.settings.memory_bytes
            {
                return Some(format!("oom: memory limit {}", size(bytes)));
            }
            if pids > 0
                && let Some(n) = self.settings.processes
            {
                return Some(format!("pids limit {n}"));
            }
        }
        None
    }

    /// Removes the cgroup once its processes are gone (their exit may
    /// trail the main process's by a moment).
    pub(crate) async fn remove(self) {
        for dir in self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

/// The worker's own cgroups, from `/proc/self/cgroup`, where it may make
/// one of its own below: v2 when the unified hierarchy is mounted with
/// controllers, else v1's `memory` and `pids`.
fn probe_cgroups(own: &str) -> Cgroups {
    let root = Path::new("/sys/fs/cgroup");
    let path_of = |controller: &str| {
        own.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let found = match controller {
                "" => controllers.is_empty(),
                name => controllers.split(',').any(|c| c == name),
            };
            found.then(|| path.trim_start_matches('/').to_string())
        })
    };
    let writable = |dir: &Path| {
        let probe = dir.join(format!("tidewright-probe-{}", std::process::id()));
        let ok = std::fs::create_dir(&probe).is_ok();
        let _ = std::fs::remove_dir(&probe);
        ok
    };
    if root.join("cgroup.controllers").exists()
        && let Some(path) = path_of("")
    {
        let dir = root.join(path);
        let controllers =
            std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        if controllers.contains("memory") && controllers.contains("pids") && writable(&dir) {
            return Cgroups::V2(dir);
        }
        return Cgroups::None(format!(
            "cgroup v2 at {} is not delegated to this worker with memory and pids",
            dir.display()
        ));
    }
    let v1 = |controller: &str| {
        let dir = root.join(controller).join(path_of(controller)?);
        writable(&dir).then_some(dir)
    };
    match (v1("memory"), v1("pids")) {
        (None, None) => Cgroups::None("no writable cgroup of the memory or pids controller".into()),
        (memory, pids) => Cgroups::V1 { memory, pids },
    }
}

/// The value of `name` in a `key value` per line file.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// A step's workspace, measured while it runs: no filesystem here can be
/// told to hold one directory to a size without privilege (a quota, a
/// mount), so the worker adds up what it holds (blocks in use, so a
/// sparse file counts what it takes) and stops the step at its limit. A
/// look takes longer the more files there are; the next waits ten times
/// as long, at least [`DiskWatch::EVERY`].
pub(crate) struct DiskWatch {
    dir: PathBuf,
    limit: u64,
}

impl DiskWatch {
    const EVERY: Duration = Duration::from_millis(250);

    pub(crate) fn new(dir: &Path, limit: Option<u64>) -> Option<DiskWatch> {
        Some(DiskWatch {
            dir: dir.to_path_buf(),
            limit: limit?,
        })
    }

    /// Resolves once the workspace holds its limit or more.
    pub(crate) async fn full(&self) {
        loop {
            let started = std::time::Instant::now();
            if self.measure().await >= self.limit {
                return;
            }
            tokio::time::sleep((started.elapsed() * 10).max(Self::EVERY)).await;
        }
    }

    /// `disk limit 64 MiB` when the workspace holds its limit or more.
    pub(crate) async fn verdict(&self) -> Option<String> {
        (self.measure().await >= self.limit).then(|| format!("disk limit {}", size(self.limit)))
    }

    async fn measure(&self) -> u64 {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || disk_use(&dir))
            .await
            .unwrap_or(0)
    }
}

/// The bytes of disk the files under `dir` take, links not followed.
fn disk_use(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_sizes_read_as_the_kernel_and_people_write_them() {
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(counter(oom, "oom_kill"), 2);
        assert_eq!(counter("max 0\n", "max"), 0);
        assert_eq!(counter("", "max"), 0);
    }

    #[tokio::test]
    async fn a_workspace_is_full_at_its_limit_and_the_rest_is_its_pools() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("sub");
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 256 * 1024]).expect("write");
        let roomy = DiskWatch::new(dir.path(), Some(1 << 20)).expect("watch");
        assert_eq!(roomy.verdict().await, None);
        let tight = DiskWatch::new(dir.path(), Some(128 << 10)).expect("watch");
        assert_eq!(tight.verdict().await.as_deref(), Some("disk limit 128 KiB"));
        tokio::time::timeout(Duration::from_secs(5), tight.full())
            .await
            .expect("full at once");

        let limits = Limits {
            settings: LimitSettings {
                memory_bytes: Some(1 << 30),
                disk_bytes: Some(1 << 30),
                ..Default::default()
            },
            cgroups: Cgroups::V2("/sys/fs/cgroup/w".into()),
        };
        let step = StepLimits {
            memory: Some("2GiB".into()),
            disk: Some("64MiB".into()),
            processes: Some(8),
            ..Default::default()
        };
        let merged = limits.for_step(Some(&step)).expect("held");
        assert_eq!(merged.memory_bytes, Some(1 << 30), "the pool's is lower");
        assert_eq!(merged.disk_bytes, Some(64 << 20), "the step's is lower");
        assert_eq!(merged.processes, Some(8));
        let unheld = Limits {
            settings: LimitSettings::default(),
            cgroups: Cgroups::None("no cgroup here".into()),
        };
        let refused = unheld
            .for_step(Some(&step))
            .expect_err("cannot hold memory");
        assert!(refused.contains("memory limit cannot be held"), "{refused}");
        let disk_only = StepLimits {
            disk: Some("1MiB".into()),
            ..Default::default()
        };
        assert!(unheld.for_step(Some(&disk_only)).is_ok());
    }

    #[test]
    fn a_step_cgroup_says_which_limit_it_hit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = LimitSettings {
            memory_bytes: Some(64 << 20),
            processes: Some(32),
            ..Default::default()
        };
        let cgroup = StepCgroup {
            dirs: vec![dir.path().to_path_buf()],
            v2: true,
            settings,
        };
        std::fs::write(dir.path().join("memory.events"), "oom 0\noom_kill 0\n").expect("events");
        std::fs::write(dir.path().join("pids.events"), "max 0\n").expect("events");
        assert_eq!(cgroup.verdict(), None);
        std::fs::write(dir.path().join("pids.events"), "max 3\n").expect("events");
        assert_eq!(cgroup.verdict().as_deref(), Some("pids limit 32"));
        std::fs::write(dir.path().join("memory.events"), "oom 1\noom_kill 1\n").expect("events");
        assert_eq!(
            cgroup.verdict().as_deref(),
            Some("oom: memory limit 64 MiB")
        );
    }

    #[test]
    fn the_worker_s_own_cgroups_are_read_per_controller() {
        let own = "4:memory:/process_api/abc\n8:pids:/\n0::/\n";
        // On this machine or another: the probe never panics, and says why
        // when it finds none.
        match probe_cgroups(own) {
            Cgroups::None(why) => assert!(!why.is_empty()),
            Cgroups::V1 { memory, pids } => {
                if let Some(memory) = memory {
                    assert!(memory.ends_with("process_api/abc"), "{memory:?}");
                }
                if let Some(pids) = pids {
                    assert!(pids.ends_with("pids"), "{pids:?}");
                }
            }
            Cgroups::V2(dir) => assert!(dir.starts_with("/sys/fs/cgroup")),
        }
    }

    #[test]
    fn a_command_joins_its_cgroup_then_runs_under_its_rlimits() {
        let limits = Limits {
            settings: LimitSettings {
                open_files: Some(256),
                cpu_seconds: Some(60),
                processes: Some(32),
                disk_bytes: Some(1 << 20),
                ..Default::default()
            },
            cgroups: Cgroups::None("test".into()),
        };
        let cgroup = StepCgroup {
            dirs: vec!["/sys/fs/cgroup/pids/w/s".into()],
            v2: false,
            settings: limits.settings.clone(),
        };
        let mut command = Command::new("setsid");
        command.args(["bwrap", "--", "sh"]);
        let wrapped = Limits::wrap(command, Some(&cgroup), &limits.settings);
        let std = wrapped.as_std();
        assert_eq!(std.get_program(), "sh");
        let args: Vec<String> = std.get_args().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            args,
            [
                "-c",
                "echo $$ > \"$1\"/cgroup.procs && shift 1 && exec \"$@\"",
                "sh",
                "/sys/fs/cgroup/pids/w/s",
                "prlimit",
                "--nofile=256:256",
                "--cpu=60:60",
                "--fsize=1048576:1048576",
                "--",
                "setsid",
                "bwrap",
                "--",
                "sh"
            ]
        );
    }
}
