//! The parts that need no remote, and `resolve` against a real repository
//! on disk (the smart-HTTP server with authentication is in `tests/`).

use super::*;

#[test]
fn a_secret_is_a_user_and_password_or_a_token_and_never_prints() {
    let both = Credentials::parse("alice:s3cret\n");
    assert_eq!(
        (both.username.as_str(), both.password.as_str()),
        ("alice", "s3cret")
    );
    let token = Credentials::parse("ghp_abc123");
    assert_eq!(
        (token.username.as_str(), token.password.as_str()),
        ("tidewright", "ghp_abc123")
    );
    assert_eq!(format!("{both:?}"), "Credentials(alice:***)");
    assert!(!format!("{token:?}").contains("ghp_abc123"));
}

#[test]
fn a_ref_is_found_as_named_then_as_a_branch_then_as_a_tag_peeled() {
    let listing = "\
1111111111111111111111111111111111111111\tHEAD
2222222222222222222222222222222222222222\trefs/heads/main
3333333333333333333333333333333333333333\trefs/tags/v1
4444444444444444444444444444444444444444\trefs/tags/v1^{}
5555555555555555555555555555555555555555\trefs/tags/v2
";
    let commit = |name| pick(listing, name);
    assert_eq!(
        commit("HEAD").as_deref(),
        Some("1111111111111111111111111111111111111111")
    );
    assert_eq!(
        commit("main").as_deref(),
        Some("2222222222222222222222222222222222222222")
    );
    assert_eq!(
        commit("refs/heads/main").as_deref(),
        Some("2222222222222222222222222222222222222222")
    );
    assert_eq!(
        commit("v1").as_deref(),
        Some("4444444444444444444444444444444444444444"),
        "an annotated tag names its commit"
    );
    assert_eq!(
        commit("refs/tags/v1").as_deref(),
        Some("4444444444444444444444444444444444444444")
    );
    assert_eq!(
        commit("v2").as_deref(),
        Some("5555555555555555555555555555555555555555")
    );
    assert_eq!(commit("mian"), None);
}

#[test]
fn gits_complaints_name_the_part_at_fault() {
    let part = |stderr: &str, creds: bool| match remote_refusal("u", stderr, creds) {
        Error::Refused { part, .. } => Some(part),
        _ => None,
    };
    let denied = "fatal: Authentication failed for 'http://127.0.0.1/r.git/'";
    assert_eq!(part(denied, true), Some(Part::CredentialsSecret));
    let asks = "fatal: could not read Username for 'https://h': terminal prompts disabled";
    assert_eq!(part(asks, false), Some(Part::Url));
    let missing = "fatal: repository 'http://127.0.0.1/nope.git/' not found";
    assert_eq!(part(missing, false), Some(Part::Url));
    // A port that holds "403" is not a refusal of the credentials.
    let on_port = "fatal: repository 'http://127.0.0.1:43403/nope.git/' not found";
    assert_eq!(part(on_port, true), Some(Part::Url));
    let forbidden =
        "fatal: unable to access 'http://h/r.git/': The requested URL returned error: 403";
    assert_eq!(part(forbidden, true), Some(Part::CredentialsSecret));
    let down = "fatal: unable to access 'http://127.0.0.1:9/r.git/': Failed to connect to 127.0.0.1 port 9: Connection refused";
    assert!(matches!(
        remote_refusal("u", down, false),
        Error::Unavailable(_)
    ));
    let curl = "fatal: unable to access 'http://127.0.0.1:9/r.git/': Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server";
    assert!(matches!(
        remote_refusal("u", curl, false),
        Error::Unavailable(_)
    ));
    // A push of what is no fast-forward: the branch moved, and git's last
    // line is only a hint (git 2.47's stderr of `push --porcelain`).
    let moved = "error: failed to push some refs to '/tmp/r.git'\nhint: Updates were rejected because the remote contains work that you do not\nhint: have locally. This is usually caused by another repository pushing to\nhint: the same ref. If you want to integrate the remote changes, use\nhint: 'git pull' before pushing again.\nhint: See the 'Note about fast-forwards' in 'git push --help' for details.";
    match remote_refusal("u", moved, true) {
        Error::Local(said) => assert_eq!(
            said,
            "u refused the push: it is no fast-forward of the branch, which moved since it was fetched"
        ),
        other => panic!("not a moved branch: {other:?}"),
    }
    // A full disk mid-fetch: git's last line blames the unpack, not the
    // disk, and not the remote.
    let full = "error: unable to write file .git/objects/ab/cdef: No space left on device\nfatal: unpack-objects failed";
    match remote_refusal("u", full, true) {
        Error::NoSpace(line) => assert!(line.contains("No space left on device"), "{line}"),
        other => panic!("not a full disk: {other:?}"),
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {output:?}");
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

#[tokio::test]
async fn a_ref_resolves_to_the_commit_the_remote_has_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("r");
    std::fs::create_dir(&repo).expect("dir");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a.txt"), "a").expect("file");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["tag", "-a", "v1", "-m", "one"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "second"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    let url = format!("file://{}", repo.display());

    let resolve = |name: &'static str| {
        let url = url.clone();
        async move { resolve(&program(), &url, name, None, REMOTE_TIMEOUT).await }
    };
    assert_eq!(resolve("HEAD").await.expect("HEAD"), second);
    assert_eq!(resolve("main").await.expect("main"), second);
    assert_eq!(resolve("v1").await.expect("tag"), first, "the tag's commit");
    match resolve("mian").await {
        Err(Error::Refused {
            part: Part::Ref,
            message,
        }) => {
            assert!(message.contains("\"mian\""), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let missing = format!("file://{}", dir.path().join("nope").display());
    match crate::resolve(&program(), &missing, "HEAD", None, REMOTE_TIMEOUT).await {
        Err(Error::Refused {
            part: Part::Url, ..
        }) => {}
        other => panic!("{other:?}"),
    }
}
