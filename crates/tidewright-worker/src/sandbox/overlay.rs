//! A seed's directories laid over a step's checkout copy-on-write, inside
//! its sandbox: the sandbox's helper (`tidewright-sandbox-net --overlay`)
//! mounts each in a namespace of the step's own before bubblewrap starts,
//! so the step reads the seed's files where the setup put them, and
//! writes only into an upper directory of its checkout's own. Nothing is
//! copied: a workspace from a seed is ready in the time of a mount, and
//! costs the disk only of what its step changes.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::{Room, Sandbox};

/// One directory of a seed over a step's checkout.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// The seed's directory: read, never written.
    pub lower: PathBuf,
    /// The step's writes, and the kernel's scratch space beside them.
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the step sees it: a directory of its checkout.
    pub target: PathBuf,
}

impl Overlay {
    /// The helper's arguments for it.
    pub(super) fn args(&self) -> [&std::ffi::OsStr; 5] {
        [
            tidewright_sandbox_net::overlay::FLAG.as_ref(),
            self.lower.as_os_str(),
            self.upper.as_os_str(),
            self.work.as_os_str(),
            self.target.as_os_str(),
        ]
    }

    /// Its upper and work directories, made, and its target (empty, as a
    /// mount point): kept as they are when there, so a step resumed in
    /// its checkout finds its writes.
    pub async fn prepare(&self) -> std::io::Result<()> {
        for dir in [&self.upper, &self.work, &self.target] {
            tokio::fs::create_dir_all(dir).await?;
        }
        Ok(())
    }
}

/// Whether this worker's sandbox can lay a seed over a checkout: an
/// overlay mounted by its helper, seen in the sandbox, written only
/// above. Why not, when it cannot. Run once, at start, in `dir`.
pub async fn probe(sandbox: &Sandbox, dir: &Path) -> Result<(), String> {
    let Sandbox::Bubblewrap { helper, .. } = sandbox else {
        return Err("steps are not sandboxed (--sandbox=off)".into());
    };
    if helper.is_none() {
        return Err("the sandbox's helper (tidewright-sandbox-net) was not given".into());
    }
    let probe = dir.join(".overlay-probe");
    let _ = tokio::fs::remove_dir_all(&probe).await;
    let tried = try_one(sandbox, &probe).await;
    let _ = tokio::fs::remove_dir_all(&probe).await;
    tried
}

async fn try_one(sandbox: &Sandbox, probe: &Path) -> Result<(), String> {
    let overlay = Overlay {
        lower: probe.join("seed"),
        upper: probe.join("layers/upper"),
        work: probe.join("layers/work"),
        target: probe.join("checkout/deps"),
    };
    let io = |e: std::io::Error| e.to_string();
    tokio::fs::create_dir_all(&overlay.lower)
        .await
        .map_err(io)?;
    tokio::fs::write(overlay.lower.join("seeded"), "seeded")
        .await
        .map_err(io)?;
    overlay.prepare().await.map_err(io)?;
    let checkout = probe.join("checkout");
    let mut room = Room::new(&checkout, &checkout);
    room.overlays.push(overlay.clone());
    let mut env = std::collections::BTreeMap::new();
    let mut script = Command::new("sh");
    script.args(["-c", "test -f deps/seeded && echo mine > deps/written"]);
    let command = sandbox.confine(script, &mut env, &room);
    let output = super::command_output(command).await.map_err(io)?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    let written_above = overlay.upper.join("written").exists();
    let seed_untouched = !overlay.lower.join("written").exists();
    if written_above && seed_untouched {
        Ok(())
    } else {
        Err("the step's write did not land in its own layer".into())
    }
}
