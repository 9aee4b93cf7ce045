//! `tidewright-sandbox-net --overlay LOWER UPPER WORK TARGET ... -- PROGRAM
//! [ARG...]`: run just outside a step's sandbox, before bubblewrap. In a
//! mount namespace of its own (and, unless it runs as root, a user
//! namespace mapping only its own user), it mounts an overlay on each
//! TARGET: a seed's directory LOWER read-only under the step's own UPPER,
//! so the step sees the seed's files at once, shares their blocks with
//! every other step, and writes only into UPPER. Then it becomes PROGRAM
//! (bubblewrap), whose bind of the workspace carries the mounts in.
//! Nothing outside the namespace sees them, and they go with its last
//! process.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

/// The flag that names one overlay, followed by its four paths.
pub const FLAG: &str = "--overlay";

/// One overlay: what `FLAG` is followed by.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    pub lower: String,
    pub upper: String,
    pub work: String,
    pub target: String,
}

/// Mounts the overlays `args` names, then execs its program; a failure is
/// said on stderr and exits 127, as the step's.
pub fn main(args: &[String]) -> ExitCode {
    match parse(args).and_then(|(overlays, program)| mount_all(&overlays).map(|()| program)) {
        Ok((program, program_args)) => {
            let e = std::process::Command::new(program)
                .args(program_args)
                .exec();
            eprintln!("tidewright sandbox: could not start {program:?}: {e}");
            ExitCode::from(127)
        }
        Err(e) => {
            eprintln!("tidewright sandbox: {e}");
            ExitCode::from(127)
        }
    }
}

type Program<'a> = (&'a String, &'a [String]);

fn parse(args: &[String]) -> Result<(Vec<Overlay>, Program<'_>), String> {
    let mut overlays = Vec::new();
    let mut at = 0;
    while args.get(at).map(String::as_str) == Some(FLAG) {
        let [lower, upper, work, target] = args
            .get(at + 1..at + 5)
            .and_then(|four| <&[String; 4]>::try_from(four).ok())
            .ok_or_else(|| format!("{FLAG} takes LOWER UPPER WORK TARGET"))?;
        for path in [lower, upper, work, target] {
            // The mount's options are separated by these.
            if !path.starts_with('/') || path.contains([',', ':', '\\']) {
                return Err(format!(
                    "{path:?}: an overlay's paths are absolute, without ',' ':' or '\\'"
                ));
            }
        }
        overlays.push(Overlay {
            lower: lower.clone(),
            upper: upper.clone(),
            work: work.clone(),
            target: target.clone(),
        });
        at += 5;
    }
    if args.get(at).map(String::as_str) != Some("--") {
        return Err(format!(
            "usage: {} {FLAG} LOWER UPPER WORK TARGET ... -- PROGRAM [ARG...]",
            crate::PROGRAM
        ));
    }
    let program = args[at + 1..]
        .split_first()
        .ok_or_else(|| "no program after --".to_string())?;
    Ok((overlays, program))
}

fn mount_all(overlays: &[Overlay]) -> Result<(), String> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let rootless = !uid.is_root();
    if rootless {
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("a user and mount namespace: {e}"))?;
        // Only this user, as itself: the files it owns stay its own.
        for (file, line) in [
            ("/proc/self/setgroups", "deny".to_string()),
            ("/proc/self/uid_map", format!("{uid} {uid} 1")),
            ("/proc/self/gid_map", format!("{gid} {gid} 1")),
        ] {
            std::fs::write(file, line).map_err(|e| format!("{file}: {e}"))?;
        }
    } else {
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("a mount namespace: {e}"))?;
    }
    // Nothing mounted here reaches the machine's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;
    for overlay in overlays {
        let mut options = format!(
            "lowerdir={},upperdir={},workdir={}",
            overlay.lower, overlay.upper, overlay.work
        );
        if rootless {
            // Its own attributes in the user.* namespace, which a user
            // namespace may write.
            options.push_str(",userxattr");
        }
        mount(
            Some("overlay"),
            overlay.target.as_str(),
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| format!("an overlay on {}: {e}", overlay.target))?;
        // The kernel makes WORK/work unreadable to all: its owner could
        // not remove the workspace after the step.
        let _ = std::fs::set_permissions(
            format!("{}/work", overlay.work),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlays_and_the_program_are_read_and_bad_paths_refused() {
        let given = args(&[
            FLAG,
            "/s/l",
            "/w/u",
            "/w/w",
            "/w/t",
            "--",
            "bwrap",
            "--die-with-parent",
        ]);
        let (overlays, (program, rest)) = parse(&given).expect("parsed");
        assert_eq!(
            overlays,
            vec![Overlay {
                lower: "/s/l".into(),
                upper: "/w/u".into(),
                work: "/w/w".into(),
                target: "/w/t".into(),
            }]
        );
        assert_eq!((program.as_str(), rest), ("bwrap", &given[7..]));
        for bad in [
            args(&[FLAG, "/s/l", "/w/u", "--", "bwrap"]),
            args(&[
                FLAG,
                "/s/l,upperdir=/x",
                "/w/u",
                "/w/w",
                "/w/t",
                "--",
                "bwrap",
            ]),
            args(&[FLAG, "rel", "/w/u", "/w/w", "/w/t", "--", "bwrap"]),
            args(&[FLAG, "/s/l", "/w/u", "/w/w", "/w/t", "--"]),
            args(&["bwrap"]),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }
}
