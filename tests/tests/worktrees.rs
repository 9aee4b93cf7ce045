//! A worker's repositories, against a real git server over smart HTTP with
//! basic auth: one mirror per repository, cloned once and fetched only for
//! a commit it lacks (one fetch at a time however many steps ask), a
//! repository per step on its own branch, borrowing the mirror's objects,
//! what a step leaves uncommitted committed by tidewright (and nothing the step
//! planted in its repository run), and a step that deletes or rewrites
//! its branch refused. The server's access log counts the fetches.

use std::path::Path;

use tidewright_git::mirror::Mirrors;
use tidewright_git::worktree::TIDEWRIGHT_AUTHOR;
use tidewright_git::{Credentials, Error, Part};
use tidewright_tests::git_server::{GitServer, PASSWORD, USER, git};

/// The clones and fetches the server answered: each begins with a
/// successful ref advertisement.
fn fetches(server_dir: &Path) -> usize {
    let log =
        std::fs::read_to_string(server_dir.join("git-server/nginx-access.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("/info/refs?service=git-upload-pack HTTP/1.1\" 200"))
        .count()
}

fn credentials() -> Credentials {
    Credentials::parse(&format!("{USER}:{PASSWORD}"))
}

/// What a step does in its worktree: commits one change itself, leaves
/// another uncommitted.
fn work_in(worktree: &Path) {
    std::fs::write(worktree.join("src.txt"), "one\ntwo\n").expect("write");
    git(worktree, &["add", "src.txt"]);
    git(worktree, &["commit", "-q", "-m", "the step's own commit"]);
    std::fs::write(worktree.join("README.md"), "hello\nmore\n").expect("write");
    std::fs::write(worktree.join("notes.txt"), "left uncommitted\n").expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_get_worktrees_from_one_mirror_fetched_only_for_a_missing_commit()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = GitServer::start(dir.path())?;
    let first = server.create_repo("app", &[("README.md", "hello\n")]);
    let url = server.url("app");
    let mirrors = std::sync::Arc::new(Mirrors::new(
        dir.path().join("mirrors"),
        tidewright_git::program(),
    ));

    // Four steps ask at once for a mirror nobody has: one clone.
    let mut asking = Vec::new();
    for _ in 0..4 {
        let mirrors = mirrors.clone();
        let (url, first) = (url.clone(), first.clone());
        asking.push(tokio::spawn(async move {
            mirrors.ensure(&url, &first, Some(&credentials())).await
        }));
    }
    let mut mirror = None;
    for asked in asking {
        mirror = Some(asked.await??);
    }
    let mirror = mirror.expect("a mirror");
    assert_eq!(fetches(dir.path()), 1, "one clone for four steps");

    // A commit it has: no fetch. A commit it lacks: one.
    mirrors.ensure(&url, &first, Some(&credentials())).await?;
    assert_eq!(fetches(dir.path()), 1);
    let second = server.commit("app", &[("lib.txt", "x\n")], "second");
    mirrors.ensure(&url, &second, Some(&credentials())).await?;
    assert_eq!(fetches(dir.path()), 2);

    // Two steps' worktrees at once, each on its own branch from its base.
    let a = mirror
        .add_worktree(
            &dir.path().join("work/a"),
            "tidewright/t1/a",
            &first,
            &first,
        )
        .await?;
    let b = mirror
        .add_worktree(
            &dir.path().join("work/b"),
            "tidewright/t1/b",
            &second,
            &second,
        )
        .await?;
    assert_eq!(
        std::fs::read_to_string(a.path().join("README.md"))?,
        "hello\n"
    );
    assert!(
        !a.path().join("lib.txt").exists(),
        "a starts from the first commit"
    );
    assert!(b.path().join("lib.txt").exists(), "b from the second");

    work_in(a.path());
    let done = a.finish("tidewright: t1/a left this uncommitted").await?;
    assert!(done.committed_for_the_step);
    assert_eq!(done.base, first);
    assert_eq!(done.branch, "tidewright/t1/a");
    assert_eq!(done.files_changed, 3);
    assert_eq!(
        done.changed_paths,
        vec!["README.md", "notes.txt", "src.txt"],
        "what the step committed and what it left"
    );
    assert_eq!((done.insertions, done.deletions), (4, 0));
    let author = git(
        mirror.path(),
        &["log", "-1", "--format=%an <%ae>", &done.head],
    );
    assert_eq!(
        author,
        format!("{} <{}>", TIDEWRIGHT_AUTHOR.0, TIDEWRIGHT_AUTHOR.1)
    );
    assert_eq!(
        git(
            mirror.path(),
            &["show", &format!("{}:notes.txt", done.head)]
        ),
        "left uncommitted",
        "what it left is in tidewright's commit"
    );
    assert_eq!(
        git(mirror.path(), &["rev-parse", &format!("{}^", done.head)]),
        git(a.path(), &["rev-parse", "HEAD"]),
        "on top of the step's own"
    );
    a.remove().await?;
    assert!(!dir.path().join("work/a").exists());
    assert_eq!(
        git(mirror.path(), &["rev-parse", "refs/heads/tidewright/t1/a"]),
        done.head,
        "the step's branch outlives its worktree"
    );

    // A step that did nothing: its head is its base.
    let nothing = b.finish("tidewright: nothing").await?;
    assert!(!nothing.committed_for_the_step);
    assert_eq!(nothing.head, second);
    assert!(nothing.changed_paths.is_empty());
    b.remove().await?;

    // A retry of a step starts again from its base on the same branch.
    let again = mirror
        .add_worktree(
            &dir.path().join("work/a2"),
            "tidewright/t1/a",
            &first,
            &first,
        )
        .await?;
    assert_eq!(git(again.path(), &["rev-parse", "HEAD"]), first);
    again.remove().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_deletes_or_rewrites_its_branch_is_refused_and_bad_credentials_name_the_secret()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = GitServer::start(dir.path())?;
    let first = server.create_repo("app", &[("README.md", "hello\n")]);
    let second = server.commit("app", &[("lib.txt", "x\n")], "second");
    let url = server.url("app");
    let mirrors = Mirrors::new(dir.path().join("mirrors"), tidewright_git::program());

    match mirrors
        .ensure(&url, &first, Some(&Credentials::parse("alice:wrong")))
        .await
    {
        Err(Error::Refused {
            part: Part::CredentialsSecret,
            message,
        }) => assert!(!message.contains("wrong"), "{message}"),
        other => panic!("{other:?}"),
    }
    match mirrors.ensure(&url, &first, None).await {
        Err(Error::Refused {
            part: Part::Url,
            message,
        }) => {
            assert!(message.contains("asks for credentials"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let mirror = mirrors.ensure(&url, &second, Some(&credentials())).await?;
    let gone = "0".repeat(40);
    match mirrors.ensure(&url, &gone, Some(&credentials())).await {
        Err(Error::Local(message)) => assert!(message.contains(&gone), "{message}"),
        other => panic!("{other:?}"),
    }

    let rewritten = mirror
        .add_worktree(
            &dir.path().join("work/r"),
            "tidewright/t/r",
            &second,
            &second,
        )
        .await?;
    git(rewritten.path(), &["reset", "-q", "--hard", &first]);
    match rewritten.finish("tidewright").await {
        Err(Error::Rewritten(message)) => assert!(message.contains("rewrote"), "{message}"),
        other => panic!("{other:?}"),
    }
    rewritten.remove().await?;

    let deleted = mirror
        .add_worktree(
            &dir.path().join("work/d"),
            "tidewright/t/d",
            &second,
            &second,
        )
        .await?;
    git(deleted.path(), &["checkout", "-q", "--detach"]);
    git(deleted.path(), &["branch", "-q", "-D", "tidewright/t/d"]);
    match deleted.finish("tidewright").await {
        Err(Error::Rewritten(message)) => assert!(message.contains("deleted"), "{message}"),
        other => panic!("{other:?}"),
    }
    deleted.remove().await?;

    let left = mirror
        .add_worktree(
            &dir.path().join("work/l"),
            "tidewright/t/l",
            &second,
            &second,
        )
        .await?;
    git(left.path(), &["checkout", "-q", "-b", "elsewhere"]);
    match left.finish("tidewright").await {
        Err(Error::Rewritten(message)) => assert!(message.contains("left its branch"), "{message}"),
        other => panic!("{other:?}"),
    }
    left.remove().await?;

    // Eviction spares a mirror a worktree is made of, and removes it once
    // none is.
    let kept = mirror
        .add_worktree(
            &dir.path().join("work/k"),
            "tidewright/t/k",
            &second,
            &second,
        )
        .await?;
    assert!(mirrors.evict(0).await?.is_empty());
    kept.remove().await?;
    assert_eq!(mirrors.evict(0).await?, vec![mirror.path().to_path_buf()]);
    assert!(!mirror.path().exists());
    Ok(())
}

/// What a step may plant in its own repository for tidewright's git to run:
/// hooks (where git looks and where `core.hooksPath` says), a
/// `core.fsmonitor` command, a clean filter its `.gitattributes` selects,
/// a pack-objects hook for `git fetch` to run. tidewright reads the repository through git's transport and commits in
/// the mirror, so none of them runs, and the step's work still comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidewright_reads_a_steps_repository_without_running_what_the_step_planted_in_it()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = GitServer::start(dir.path())?;
    let first = server.create_repo("app", &[("README.md", "hello\n")]);
    let url = server.url("app");
    let mirrors = Mirrors::new(dir.path().join("mirrors"), tidewright_git::program());
    let mirror = mirrors.ensure(&url, &first, Some(&credentials())).await?;
    let tree = mirror
        .add_worktree(&dir.path().join("work/s"), "tidewright/t/s", &first, &first)
        .await?;
    let ran = dir.path().join("ran");
    let run = format!("#!/bin/sh\necho \"$0\" >> {}\n", ran.display());
    let git_dir = tree.path().join(".git");
    let hooks = git_dir.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    let evil = dir.path().join("evil.sh");
    let executable = |path: &Path| -> std::io::Result<()> {
        std::fs::write(path, &run)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
    };
    executable(&evil)?;
    for hook in [
        "pre-commit",
        "post-commit",
        "post-checkout",
        "reference-transaction",
    ] {
        executable(&hooks.join(hook))?;
    }
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(git_dir.join("config"))?;
    std::io::Write::write_all(
        &mut config,
        format!(
            "[core]\n\tfsmonitor = {evil}\n\thooksPath = {hooks}\n[filter \"x\"]\n\tclean = {evil}\n\tprocess = {evil}\n\trequired = true\n[uploadpack]\n\tpackObjectsHook = {evil}\n",
            evil = evil.display(),
            hooks = hooks.display()
        )
        .as_bytes(),
    )?;
    std::fs::write(tree.path().join(".gitattributes"), "* filter=x\n")?;
    std::fs::write(tree.path().join("work.txt"), "the step's work\n")?;
    let done = tree.finish("tidewright: left").await?;
    assert!(
        !ran.exists(),
        "tidewright's git ran {}",
        std::fs::read_to_string(&ran)?
    );
    assert!(done.committed_for_the_step);
    assert_eq!(done.changed_paths, vec![".gitattributes", "work.txt"]);
    assert_eq!(
        git(mirror.path(), &["show", &format!("{}:work.txt", done.head)]),
        "the step's work"
    );
    tree.remove().await?;
    Ok(())
}

/// The spares of `mirror` ready under `spares`, by the commit each is at.
fn spares_at(spares: &Path, mirror: &tidewright_git::mirror::Mirror) -> Vec<String> {
    let dir = spares.join(mirror.path().file_name().expect("a name"));
    let mut at: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with("making-"))
                .map(|name| name.split('-').next().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    at.sort();
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_takes_a_spare_worktree_and_spares_are_refilled_bounded_and_evicted_with_their_mirror()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = GitServer::start(dir.path())?;
    let first = server.create_repo("app", &[("README.md", "hello\n")]);
    let second = server.commit("app", &[("lib.txt", "x\n")], "second");
    let url = server.url("app");
    let spares = dir.path().join("spares");
    let mirrors = Mirrors::new(dir.path().join("mirrors"), tidewright_git::program())
        .with_spares(spares.clone(), 2);
    let mirror = mirrors.ensure(&url, &second, Some(&credentials())).await?;

    assert_eq!(mirror.refill(&first).await?, 2);
    assert_eq!(mirror.refill(&first).await?, 0, "two are ready already");
    assert_eq!(
        spares_at(&spares, &mirror),
        vec![first.clone(), first.clone()]
    );
    // What changed in a spare since it was made is not a step's to inherit.
    let mirror_spares = spares.join(mirror.path().file_name().expect("a name"));
    for spare in std::fs::read_dir(&mirror_spares)? {
        std::fs::write(spare?.path().join("README.md"), "tampered\n")?;
    }

    // A root step takes one at its own start; a dependent step, starting
    // from a later commit near the task's, takes the other.
    let a = mirror
        .add_worktree(&dir.path().join("work/a"), "tidewright/t/a", &first, &first)
        .await?;
    let b = mirror
        .add_worktree(
            &dir.path().join("work/b"),
            "tidewright/t/b",
            &second,
            &first,
        )
        .await?;
    assert!(spares_at(&spares, &mirror).is_empty(), "both were taken");
    for (tree, head, branch) in [
        (&a, &first, "tidewright/t/a"),
        (&b, &second, "tidewright/t/b"),
    ] {
        assert_eq!(&git(tree.path(), &["rev-parse", "HEAD"]), head);
        assert_eq!(
            git(tree.path(), &["symbolic-ref", "HEAD"]),
            format!("refs/heads/{branch}")
        );
        assert_eq!(git(tree.path(), &["status", "--porcelain"]), "");
    }
    assert!(!a.path().join("lib.txt").exists() && b.path().join("lib.txt").exists());
    assert_eq!(
        std::fs::read_to_string(a.path().join("README.md"))?,
        "hello\n"
    );
    let done = b.finish("tidewright: nothing").await?;
    assert_eq!(
        (done.base.as_str(), done.head.as_str()),
        (second.as_str(), second.as_str())
    );

    // Without a spare, a worktree is checked out as before.
    let c = mirror
        .add_worktree(&dir.path().join("work/c"), "tidewright/t/c", &first, &first)
        .await?;
    assert_eq!(git(c.path(), &["rev-parse", "HEAD"]), first);

    // A spare that cannot become the step's repository (broken since it
    // was made) is removed, and the step's is checked out anew.
    mirror.refill(&first).await?;
    for spare in std::fs::read_dir(&mirror_spares)? {
        std::fs::write(spare?.path().join(".git/HEAD"), "not a ref\n")?;
    }
    let d = mirror
        .add_worktree(&dir.path().join("work/d"), "tidewright/t/d", &first, &first)
        .await?;
    assert_eq!(git(d.path(), &["rev-parse", "HEAD"]), first);
    assert_eq!(git(d.path(), &["status", "--porcelain"]), "");
    assert_eq!(
        spares_at(&spares, &mirror),
        vec![first.clone()],
        "the broken spare it took went"
    );
    d.remove().await?;

    // Two commits' spares at most, the oldest other ones going first; a
    // half-made spare a crash left long ago is removed.
    let third = server.commit("app", &[("more.txt", "y\n")], "third");
    mirrors.ensure(&url, &third, Some(&credentials())).await?;
    assert_eq!(mirror.refill(&second).await?, 2);
    let abandoned = spares
        .join(mirror.path().file_name().expect("a name"))
        .join(format!("making-{third}-crashed"));
    std::fs::create_dir_all(&abandoned)?;
    std::fs::File::open(&abandoned)?
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))?;
    assert_eq!(mirror.refill(&third).await?, 2);
    assert!(!abandoned.exists());
    let mut expected = vec![second.clone(), second.clone(), third.clone(), third.clone()];
    expected.sort();
    assert_eq!(
        spares_at(&spares, &mirror),
        expected,
        "the oldest of the other commits' three went"
    );

    // Spares do not hold a mirror back from eviction; they go with it.
    assert!(mirrors.evict(0).await?.is_empty(), "a and c are steps'");
    a.remove().await?;
    b.remove().await?;
    c.remove().await?;
    assert_eq!(mirrors.evict(0).await?, vec![mirror.path().to_path_buf()]);
    assert!(
        !spares
            .join(mirror.path().file_name().expect("a name"))
            .exists()
    );
    assert!(!dir.path().join("work/a").exists());
    Ok(())
}
