//! What `tidewright version` says of the build: the commit it was built from
//! and when. The commit is git's (`git rev-parse HEAD` in the checkout), or,
//! in a crate unpacked from crates.io, the one `cargo package` recorded in
//! `.cargo_vcs_info.json`. The date is SOURCE_DATE_EPOCH's when it is set
//! (release builds set it, so the same commit builds the same binary),
//! else the day this script ran.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let manifest = Path::new(&manifest);
    let commit = git_commit(manifest)
        .or_else(|| packaged_commit(manifest))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=TIDEWRIGHT_COMMIT={commit}");
    println!("cargo:rustc-env=TIDEWRIGHT_BUILD_TIME={}", build_time());
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A new commit changes HEAD, or the branch HEAD names (a loose ref, or
    // one in packed-refs). Only files that exist: cargo runs a script whose
    // watched file is missing on every build, and relinks tidewright each time.
    if let Some(git_dir) = git(manifest, &["rev-parse", "--absolute-git-dir"]) {
        // A worktree (`git worktree add`) has a HEAD of its own, but its
        // branches are the common dir's, as every checkout's are.
        let common = git(
            manifest,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        )
        .unwrap_or_else(|| git_dir.clone());
        let mut watched = vec![format!("{git_dir}/HEAD"), format!("{common}/packed-refs")];
        if let Some(head_ref) = git(manifest, &["symbolic-ref", "-q", "HEAD"]) {
            watched.push(format!("{common}/{head_ref}"));
        }
        for path in watched.iter().filter(|p| Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn git_commit(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "HEAD"])?;
    let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"]).is_some();
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

/// `{"git": {"sha1": "…"}, …}`, read without a JSON parser: the build
/// script's dependencies would be every build's.
fn packaged_commit(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".cargo_vcs_info.json")).ok()?;
    let after = text.split("\"sha1\"").nth(1)?;
    let commit: String = after
        .chars()
        .skip_while(|c| !c.is_ascii_hexdigit())
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (commit.len() >= 40).then_some(commit)
}

/// Seconds since the epoch; `tidewright version` shows the day.
fn build_time() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
}
