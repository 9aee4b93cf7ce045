//! A repository's setup before a step runs in its checkout: the seed of
//! the checkout's key put in place when this worker has it, or else when
//! the control plane's store has it; else the setup run, in the step's
//! sandbox with its egress, and what it made kept as the seed for the
//! steps after, here and (sent to the store) on every worker (see
//! [`crate::seeds`]). Of the steps that need one seed at once, one runs
//! the setup or takes it from the store; the others wait and take its
//! seed. What happens is said in the step's log, behind `setup:`, and
//! in a setup event when the checkout is ready (or the setup failed): how
//! the seed came, how fast, and what its setup cost when it was made.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tidewright_core::setup::{self, SETUP_FILE, SetupReport, SetupSource, SetupSpec};
use tidewright_core::verify::CheckSpec;
use tidewright_git::worktree::Worktree;
use tokio::sync::{mpsc, oneshot};

use super::attempt::{Attempt, Ended, FromAttempt, Stop};
use super::sandboxed::Own;
use crate::metrics::Fault;
use crate::sandbox::overlay::Overlay;
use crate::secrets::{self, Redactor};
use crate::seeds::{Pinned, Seed, Seeds};

/// What a checkout got of its repository's setup.
#[derive(Default)]
pub(crate) struct Seeded {
    /// The setup's paths, which tidewright leaves out of what it commits.
    pub paths: Vec<String>,
    /// The seed's directories the step's sandbox lays over the checkout:
    /// every process that runs there mounts them.
    pub overlays: Vec<Overlay>,
    /// The seed, kept from eviction while the step uses it.
    _pinned: Option<Pinned>,
}

/// Makes the checkout at `root` (of `tree`'s repository) ready for the
/// step: its setup's paths in place, from a seed or made, and kept out of
/// what git sees of the step's work (the step's own `git add -A` too).
/// `Err` ends the step: a setup that failed, with its output; a setup
/// file that does not parse, naming its field.
pub(crate) async fn provide(
    attempt: &Attempt,
    (root, tree): (&Path, &Worktree),
    redactor: &Arc<Redactor>,
    reports: &mpsc::UnboundedSender<FromAttempt>,
    cancel: &mut oneshot::Receiver<Stop>,
) -> Result<Seeded, Ended> {
    let Some(setup) = setup_of(attempt, root).await? else {
        return Ok(Seeded::default());
    };
    ignore(root, &setup.paths).await;
    let started = Instant::now();
    let mut report = SetupReport::default();
    let placed = put_in_place(
        attempt,
        &setup,
        (root, tree),
        (redactor, reports, cancel),
        &mut report,
    )
    .await;
    // A cancelled step says nothing of its setup: it did not fail.
    let cancelled =
        matches!(&placed, Err(e) if matches!(e.outcome, tidewright_core::Outcome::Cancelled(_)));
    if !cancelled {
        report.failed = placed.is_err();
        report.millis = started.elapsed().as_millis() as u64;
        let _ = reports.send(FromAttempt::Setup {
            attempt: attempt.key.clone(),
            report,
        });
    }
    let (overlays, pinned) = placed?;
    Ok(Seeded {
        paths: setup.paths,
        overlays,
        _pinned: pinned,
    })
}

/// Adds `paths` to the checkout's own `.git/info/exclude`, so that the
/// step's git (an agent's `git add -A`) leaves them out.
async fn ignore(root: &Path, paths: &[String]) {
    let info = root.join(".git/info");
    if tokio::fs::create_dir_all(&info).await.is_err() {
        return;
    }
    let exclude = info.join("exclude");
    let mut text = tokio::fs::read_to_string(&exclude)
        .await
        .unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# the repository's setup (tidewright)\n");
    for path in paths {
        text.push_str(&format!("/{}\n", path.trim_end_matches('/')));
    }
    let _ = tokio::fs::write(&exclude, text).await;
}

/// What a step's setup reads and says with: its masker, where its reports
/// go, and the step's cancel.
type Telling<'a> = (
    &'a Arc<Redactor>,
    &'a mpsc::UnboundedSender<FromAttempt>,
    &'a mut oneshot::Receiver<Stop>,
);

/// Puts the setup's paths in the checkout, and fills `report` with how.
async fn put_in_place(
    attempt: &Attempt,
    setup: &SetupSpec,
    (root, tree): (&Path, &Worktree),
    (redactor, reports, cancel): Telling<'_>,
    report: &mut SetupReport,
) -> Result<(Vec<Overlay>, Option<Pinned>), Ended> {
    let log = |line: String| attempt.log(reports, format!("setup: {line}"));
    // A workspace kept for a resume has them already, copied; one whose
    // seed was laid over it gets the overlays again, over its writes.
    if !Seeds::laid_over(root).await && all_there(root, &setup.paths).await {
        log(format!(
            "{} already in the checkout",
            setup.paths.join(", ")
        ));
        report.source = SetupSource::Checkout;
        return Ok((Vec::new(), None));
    }
    let mut files = Vec::with_capacity(setup.key.len());
    for path in &setup.key {
        files.push((path.clone(), tokio::fs::read(root.join(path)).await.ok()));
    }
    let repo = attempt.repo.as_ref().map(|r| r.url.as_str()).unwrap_or("");
    let Some(key) = setup::seed_key(
        &attempt.tenant,
        &tidewright_core::repo::key(repo),
        setup,
        &files,
    ) else {
        report.note = format!(
            "none of its key files ({}) is in the checkout, so no seed says when it is stale: it runs for every step",
            if setup.key.is_empty() {
                "none named".to_string()
            } else {
                setup.key.join(", ")
            }
        );
        log(report.note.clone());
        report.source = SetupSource::Ran;
        return run(
            attempt,
            setup,
            (root, tree),
            (redactor, reports, cancel),
            report,
        )
        .await
        .map(|_| (Vec::new(), None));
    };
    report.seed = key.clone();
    let seeds = &attempt.host.seeds;
    let short = &key[..12];
    let _making = seeds.lock(&key).await;
    let (found, send) = find(attempt, &key, &log).await;
    if let Some((seed, source)) = found {
        let pinned = seeds.pin(&key);
        if send {
            send_to_store(attempt, &seed);
        }
        report.source = source;
        report.run_millis = seed.build_millis;
        report.files = seed.files;
        report.bytes = seed.bytes;
        return match seeds.put_into(&seed, root).await {
            Ok(placed) => {
                report.method = placed.method.as_str().to_string();
                log(format!(
                    "seed {short} put in place by {} in {} ms ({} files, {} bytes; its setup took {} ms)",
                    placed.method.as_str(),
                    placed.millis,
                    seed.files,
                    seed.bytes,
                    seed.build_millis
                ));
                Ok((placed.overlays, Some(pinned)))
            }
            Err(e) => {
                report.note = format!("putting seed {short} in place: {e}");
                Err(Ended::failed(format!("setup: {}", report.note), None))
            }
        };
    }
    log(format!(
        "no seed {short} on this worker{}: running {}",
        if attempt.host.shared_seeds.is_some() {
            " or in the control plane's store"
        } else {
            ""
        },
        setup.run.join(" ")
    ));
    report.source = SetupSource::Ran;
    let build_millis = run(
        attempt,
        setup,
        (root, tree),
        (redactor, reports, cancel),
        report,
    )
    .await?;
    let seed = Seed {
        key: key.clone(),
        repo: repo.to_string(),
        tenant: attempt.tenant.clone(),
        paths: setup.paths.clone(),
        setup: Some(setup.clone()),
        build_millis,
        built_at: tidewright_core::calendar::now_micros(),
        ..Seed::default()
    };
    match seeds.keep(seed, root).await {
        Ok(kept) => {
            log(format!(
                "seed {short} kept ({} files, {} bytes)",
                kept.files, kept.bytes
            ));
            report.files = kept.files;
            report.bytes = kept.bytes;
            send_to_store(attempt, &kept);
        }
        // The step has what it needs; the next one runs the setup again.
        Err(why) => {
            report.note = format!("seed {short} not kept: {why}");
            log(report.note.clone());
        }
    }
    // What the setup made is the checkout's own now: nothing to lay over.
    Seeds::unlay(root).await;
    Ok((Vec::new(), None))
}

/// Seed `key` for the step, and where it came from: this worker's,
/// unless the store says it was dropped since it was made; else the
/// store's, taken whole. With it, whether the store lacks it, so this
/// worker's is sent there.
async fn find(
    attempt: &Attempt,
    key: &str,
    log: &impl Fn(String),
) -> (Option<(Seed, SetupSource)>, bool) {
    let seeds = &attempt.host.seeds;
    let short = &key[..12];
    let mine = seeds.get(key).await;
    let from_store = |seed: Option<Seed>| seed.map(|s| (s, SetupSource::Store));
    let Some(shared) = &attempt.host.shared_seeds else {
        return (mine.map(|s| (s, SetupSource::Worker)), false);
    };
    if let Some(seed) = mine {
        return match shared.look(&attempt.key, key).await {
            Ok(Some(stored)) if stored.dropped_at > seed.built_at => {
                log(format!(
                    "seed {short} was dropped (tidewright seed delete) after this worker's copy was made"
                ));
                seeds.remove(key).await;
                (from_store(take(attempt, key, log).await), false)
            }
            Ok(stored) => {
                let send = stored.is_none_or(|s| !s.stored);
                (Some((seed, SetupSource::Worker)), send)
            }
            Err(e) => {
                log(format!(
                    "the control plane's store of seeds not reached ({e}): using this worker's seed {short}"
                ));
                (Some((seed, SetupSource::Worker)), false)
            }
        };
    }
    (from_store(take(attempt, key, log).await), false)
}

/// Seed `key` taken from the control plane's store into this worker's.
async fn take(attempt: &Attempt, key: &str, log: &impl Fn(String)) -> Option<Seed> {
    let shared = attempt.host.shared_seeds.as_ref()?;
    let short = &key[..12];
    let started = Instant::now();
    match shared.fetch(&attempt.key, key, &attempt.host.seeds).await {
        Ok(Some(seed)) => {
            log(format!(
                "seed {short} taken from the control plane's store in {} ms",
                started.elapsed().as_millis()
            ));
            Some(seed)
        }
        Ok(None) => None,
        Err(e) => {
            // A corrupt seed is forgotten by the store: this step makes it
            // again, and sends it.
            log(format!(
                "seed {short} not taken from the control plane's store: {e}"
            ));
            None
        }
    }
}

/// Sends this worker's `seed` to the control plane's store for the other
/// workers, after the step if need be: the step does not wait for it.
fn send_to_store(attempt: &Attempt, seed: &Seed) {
    let Some(shared) = attempt.host.shared_seeds.clone() else {
        return;
    };
    let seeds = attempt.host.seeds.clone();
    let Some(sending) = seeds.sending(&seed.key) else {
        return;
    };
    // Not evicted while it is packed.
    let pinned = seeds.pin(&seed.key);
    let (key, seed) = (attempt.key.clone(), seed.clone());
    tokio::spawn(async move {
        let started = Instant::now();
        match shared.send(&key, &seed, &seeds).await {
            Ok(bytes) => tracing::info!(
                seed = %seed.key,
                bytes,
                millis = started.elapsed().as_millis() as u64,
                "sent a seed to the control plane's store"
            ),
            Err(e) => {
                tracing::warn!(seed = %seed.key, error = %e, "a seed was not sent to the control plane's store")
            }
        }
        drop((sending, pinned));
    });
}

/// The step's setup: its task's `repo.setup`, else its repository's own
/// setup file; `None` without either.
async fn setup_of(attempt: &Attempt, root: &Path) -> Result<Option<SetupSpec>, Ended> {
    if let Some(setup) = attempt.repo.as_ref().and_then(|r| r.setup.clone()) {
        return Ok(Some(setup));
    }
    let Ok(text) = tokio::fs::read_to_string(root.join(SETUP_FILE)).await else {
        return Ok(None);
    };
    setup::from_file(&text)
        .map(Some)
        .map_err(|e| Ended::failed(format!("setup: {e}"), None))
}

async fn all_there(root: &Path, paths: &[String]) -> bool {
    for path in paths {
        if tokio::fs::symlink_metadata(root.join(path)).await.is_err() {
            return false;
        }
    }
    true
}

/// Runs the setup in the checkout, sandboxed as the step is but with the
/// setup's own timeout, limits and secrets; how long it took (in `report`
/// too), or the step's end with its output when it failed, or when it
/// left one of its secrets in its paths.
async fn run(
    attempt: &Attempt,
    setup: &SetupSpec,
    (root, tree): (&Path, &Worktree),
    (redactor, reports, cancel): Telling<'_>,
    report: &mut SetupReport,
) -> Result<u64, Ended> {
    let secrets = secrets::resolve(&setup.secret_env, attempt.host.secrets_dir.as_deref())
        .map_err(|why| Ended::fault(Fault::Secrets, format!("setup: {why}")))?;
    // Its own secrets are masked as its step's are.
    let redactor = &Arc::new(redactor.and(secrets.values()));
    let timeout = setup.timeout(attempt.step.timeout_seconds);
    let as_check = CheckSpec {
        name: "setup".into(),
        run: setup.run.clone(),
        timeout: format!("{}s", timeout.as_secs().max(1)),
    };
    let started = Instant::now();
    let (end, output) = super::sandboxed::run_in_sandbox(
        attempt,
        (
            "setup",
            &as_check,
            &Own {
                limits: setup.limits.as_ref(),
                env: secrets.clone(),
            },
        ),
        (root, tree, &[]),
        redactor,
        reports,
        cancel,
    )
    .await;
    report.run_millis = started.elapsed().as_millis() as u64;
    let failed = |why: String, code| {
        // Masked whole, then cut: a secret across the cut is masked too.
        let output = tidewright_core::verify::tail(redactor.redact(output.clone()).trim_end());
        Ended::failed(format!("setup failed ({why}): {output}"), code)
    };
    match end {
        Ok(exited) if exited.status.success() => {}
        Ok(exited) => return Err(failed(exited.failure(), exited.status.code())),
        Err(ended) if matches!(ended.outcome, tidewright_core::Outcome::Cancelled(_)) => {
            return Err(ended);
        }
        Err(ended) => return Err(failed(ended.error().to_string(), None)),
    }
    // What it leaves goes to the step (whose agent must not read a secret
    // only the setup had), and into a seed other steps share.
    let (root, paths) = (root.to_path_buf(), setup.paths.clone());
    let found = tokio::task::spawn_blocking(move || holding_secret(&root, &paths, &secrets))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match found {
        Ok(None) => Ok(report.run_millis),
        Ok(Some((path, var))) => {
            report.note = format!(
                "{path} holds the setup's secret ${var}: it would reach the step and its seed; leave it out of the setup's paths"
            );
            Err(Ended::failed(format!("setup: {}", report.note), None))
        }
        Err(e) => {
            report.note = format!("looking for the setup's secrets in what it made: {e}");
            Err(Ended::failed(format!("setup: {}", report.note), None))
        }
    }
}

/// The first file under `paths` in `root` that holds one of `secrets`'
/// values, and that secret's variable; symbolic links are not followed.
fn holding_secret(
    root: &Path,
    paths: &[String],
    secrets: &BTreeMap<String, String>,
) -> std::io::Result<Option<(String, String)>> {
    use std::io::Read;
    let needles: Vec<(&String, memchr::memmem::Finder)> = secrets
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(var, value)| (var, memchr::memmem::Finder::new(value.as_bytes())))
        .collect();
    let Some(longest) = needles.iter().map(|(_, f)| f.needle().len()).max() else {
        return Ok(None);
    };
    let mut pending: Vec<std::path::PathBuf> = paths.iter().map(|p| root.join(p)).collect();
    let mut buffer = vec![0u8; 1 << 20];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        let mut file = std::fs::File::open(&path)?;
        // Read in pieces, each after the end of the one before it: a
        // secret across two pieces is found too.
        let mut kept = 0;
        loop {
            let read = file.read(&mut buffer[kept..])?;
            if read == 0 {
                break;
            }
            let filled = kept + read;
            if let Some((var, _)) = needles
                .iter()
                .find(|(_, f)| f.find(&buffer[..filled]).is_some())
            {
                let shown = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                return Ok(Some((shown, var.to_string())));
            }
            kept = (longest - 1).min(filled);
            buffer.copy_within(filled - kept..filled, 0);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_left_in_the_setups_paths_is_found_even_across_a_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let secrets: BTreeMap<String, String> =
            [("NPM_TOKEN".to_string(), "npm_s3cret-token".to_string())].into();
        let paths = vec!["node_modules".to_string()];
        std::fs::create_dir_all(root.join("node_modules/pad")).expect("dirs");
        std::fs::write(root.join("node_modules/pad/index.js"), "x").expect("file");
        // Outside the paths, and behind a link: not what the step gets.
        std::fs::write(root.join(".npmrc"), "npm_s3cret-token").expect("rc");
        std::os::unix::fs::symlink(root.join(".npmrc"), root.join("node_modules/rc"))
            .expect("link");
        assert_eq!(holding_secret(root, &paths, &secrets).expect("read"), None);
        // Astride the end of the first piece read.
        let mut big = vec![b'a'; (1 << 20) - 5];
        big.extend_from_slice(b"npm_s3cret-token and more");
        std::fs::write(root.join("node_modules/pad/big.bin"), big).expect("big");
        assert_eq!(
            holding_secret(root, &paths, &secrets).expect("read"),
            Some(("node_modules/pad/big.bin".into(), "NPM_TOKEN".into()))
        );
        assert_eq!(
            holding_secret(root, &paths, &BTreeMap::new()).expect("read"),
            None,
            "no secrets, nothing to find"
        );
    }
}
