//! The rules of a task's repository, and of its steps' work on it: the
//! URL, ref, commit and credentials, the pull request, the deliver step,
//! and each step's `touches` and `onConflict`. Each refusal names its
//! field.

use crate::error::{Error, invalid};
use crate::spec::StepSpec;

/// A task's repository, each part checked; `field` is its path (`repo`).
pub fn validate_repo(repo: &crate::repo::RepoSpec, field: &str) -> Result<(), Error> {
    let invalid = |part: &str, message: String| Error::Invalid {
        field: format!("{field}.{part}"),
        message,
    };
    crate::repo::transport(&repo.url, &format!("{field}.url"))?;
    if !repo.git_ref.is_empty() && !crate::repo::valid_ref(&repo.git_ref) {
        return Err(invalid(
            "ref",
            format!("{:?} is not a ref git could hold", repo.git_ref),
        ));
    }
    if !repo.commit.is_empty() && !crate::repo::valid_commit(&repo.commit) {
        return Err(invalid(
            "commit",
            format!(
                "{:?} must be a full commit id: 40 (or 64) lowercase hex digits",
                repo.commit
            ),
        ));
    }
    if !repo.credentials_secret.is_empty() && !crate::secret::valid_name(&repo.credentials_secret) {
        return Err(invalid(
            "credentialsSecret",
            format!(
                "{:?} is not a secret name: letters, digits, '-', '_' and '.', not starting with '.'",
                repo.credentials_secret
            ),
        ));
    }
    if let Some(crate::repo::Exclusive::Unknown(name)) = &repo.exclusive {
        return Err(invalid(
            "exclusive",
            format!("{name:?} is not what a task keeps to itself: touches"),
        ));
    }
    if let Some(pr) = &repo.pull_request {
        validate_pull_request(repo, pr, &format!("{field}.pullRequest"))?;
    }
    if let Some(setup) = &repo.setup {
        crate::setup::validate(setup, &format!("{field}.setup"))?;
    }
    Ok(())
}

/// A task's `repo.land`, when it has one: a method tidewright knows, a base
/// branch, and checks (its own, or its verified steps') that each take the
/// rules of a verified step's check.
pub(super) fn validate_land(
    spec: &crate::spec::TaskSpec,
    limits: &super::Limits,
) -> Result<(), Error> {
    let Some(repo) = &spec.repo else {
        return Ok(());
    };
    let Some(land) = &repo.land else {
        return Ok(());
    };
    if let crate::repo::LandMethod::Unknown(name) = &land.method {
        return Err(invalid(
            "repo.land.method",
            format!("{name:?} is not a way tidewright lands: queue"),
        ));
    }
    if !land.base.is_empty() && !crate::repo::valid_ref(&land.base) {
        return Err(invalid(
            "repo.land.base",
            format!("{:?} is not a branch git could hold", land.base),
        ));
    }
    if land.batch > crate::repo::MAX_LAND_BATCH {
        return Err(invalid(
            "repo.land.batch",
            format!(
                "{} is more tasks than land together at most ({})",
                land.batch,
                crate::repo::MAX_LAND_BATCH
            ),
        ));
    }
    if land
        .max_fixes
        .is_some_and(|n| n > crate::repo::MAX_LAND_FIXES)
    {
        return Err(invalid(
            "repo.land.maxFixes",
            format!(
                "{} is more rounds of fixes than a landing gets at most ({})",
                land.max_fixes.unwrap_or_default(),
                crate::repo::MAX_LAND_FIXES
            ),
        ));
    }
    if repo.land_base().is_none() {
        return Err(invalid(
            "repo.land.base",
            "name the branch the task lands on (or give the task's repo.ref)",
        ));
    }
    // A pull request is merged by the landing, so it is opened against
    // the branch the task lands on.
    if let (Some(pr), Some(base)) = (&repo.pull_request, repo.land_base())
        && !pr.base.is_empty()
        && pr.base.strip_prefix("refs/heads/").unwrap_or(&pr.base) != base
    {
        return Err(invalid(
            "repo.pullRequest.base",
            format!(
                "{:?} is not the branch the task lands on ({base:?}): the landing merges the pull request there",
                pr.base
            ),
        ));
    }
    let verified = spec
        .steps
        .iter()
        .any(|s| s.verify.as_ref().is_some_and(|v| !v.checks.is_empty()));
    if land.checks.is_empty() && !verified {
        // The base only gets commits whose checks passed: a landing with
        // nothing to check would be a push.
        return Err(invalid(
            "repo.land.checks",
            "a landing runs checks on the task's work merged onto the base's tip: give checks, or verify a step",
        ));
    }
    super::verify::validate_checks("repo.land", "the landing", &land.checks, limits)
}

/// A followed pull request's parts: a merge method tidewright knows, its
/// rounds of fixes and poll within bounds, an owner that is an agent
/// step; and no landing, which merges the pull request itself.
pub(super) fn validate_follow(spec: &crate::spec::TaskSpec) -> Result<(), Error> {
    let Some(repo) = &spec.repo else {
        return Ok(());
    };
    let Some(pr) = &repo.pull_request else {
        return Ok(());
    };
    if let Some(crate::repo::MergeMethod::Unknown(name)) = &pr.merge {
        return Err(invalid(
            "repo.pullRequest.merge",
            format!("{name:?} is not a way tidewright merges: auto, squash or rebase"),
        ));
    }
    if pr
        .max_fixes
        .is_some_and(|n| n > crate::repo::MAX_LAND_FIXES)
    {
        return Err(invalid(
            "repo.pullRequest.maxFixes",
            format!(
                "{} is more rounds of fixes than a pull request gets at most ({})",
                pr.max_fixes.unwrap_or_default(),
                crate::repo::MAX_LAND_FIXES
            ),
        ));
    }
    if pr.poll_seconds > crate::repo::MAX_PULL_POLL_SECONDS {
        return Err(invalid(
            "repo.pullRequest.pollSeconds",
            format!(
                "{} is longer than tidewright waits between two looks ({} s)",
                pr.poll_seconds,
                crate::repo::MAX_PULL_POLL_SECONDS
            ),
        ));
    }
    if !pr.owner.is_empty() {
        let step = spec.steps.iter().find(|s| s.id == pr.owner);
        let agent = step.is_some_and(|s| {
            s.required_capabilities()
                .iter()
                .any(|c| crate::spec::is_agent_capability(c))
        });
        if !agent {
            return Err(invalid(
                "repo.pullRequest.owner",
                format!(
                    "{:?} is not a step of this task that runs an agent: the owner fixes what fails",
                    pr.owner
                ),
            ));
        }
        // Its fix goes straight into the pull request: a step after it
        // would hold its old work.
        let after: Vec<&str> = spec
            .steps
            .iter()
            .filter(|s| s.deliver.is_none() && s.depends_on.contains(&pr.owner))
            .map(|s| s.id.as_str())
            .collect();
        if !after.is_empty() {
            return Err(invalid(
                "repo.pullRequest.owner",
                format!(
                    "{:?} has steps after it ({}): the owner must be a last step, whose work the pull request holds as it left it",
                    pr.owner,
                    after.join(", ")
                ),
            ));
        }
    }
    if repo.land.is_some() && pr.follows() {
        let part = if pr.merge.is_some() {
            "merge"
        } else {
            "follow"
        };
        return Err(invalid(
            format!("repo.pullRequest.{part}"),
            "a task that lands through its base's queue merges its pull request there: leave merge and follow out",
        ));
    }
    Ok(())
}

fn validate_pull_request(
    repo: &crate::repo::RepoSpec,
    pr: &crate::repo::PullRequestSpec,
    field: &str,
) -> Result<(), Error> {
    use crate::repo::{MAX_BODY_BYTES, MAX_TITLE_BYTES};
    let invalid = |part: &str, message: String| Error::Invalid {
        field: format!("{field}.{part}"),
        message,
    };
    if pr.title.trim().is_empty() {
        return Err(invalid("title", "required".into()));
    }
    if pr.title.len() > MAX_TITLE_BYTES {
        return Err(invalid(
            "title",
            format!(
                "is {} bytes; the limit is {MAX_TITLE_BYTES}",
                pr.title.len()
            ),
        ));
    }
    if pr.body.len() > MAX_BODY_BYTES {
        return Err(invalid(
            "body",
            format!("is {} bytes; the limit is {MAX_BODY_BYTES}", pr.body.len()),
        ));
    }
    if !pr.base.is_empty() && !crate::repo::valid_ref(&pr.base) {
        return Err(invalid(
            "base",
            format!("{:?} is not a branch git could hold", pr.base),
        ));
    }
    if let Some(crate::repo::Forge::Unknown(name)) = &pr.forge {
        return Err(invalid(
            "forge",
            format!("{name:?} is not a forge tidewright knows: github or gitlab"),
        ));
    }
    if !pr.api_url.is_empty() {
        crate::repo::transport(&pr.api_url, &format!("{field}.apiUrl"))?;
        if !pr.api_url.starts_with("https://") && !pr.api_url.starts_with("http://") {
            return Err(invalid(
                "apiUrl",
                format!("{:?} must start with https://", pr.api_url),
            ));
        }
    }
    if crate::repo::forge_of(repo).is_none() {
        return Err(invalid(
            "forge",
            format!(
                "tidewright cannot tell whose API serves {:?}: set github or gitlab, and apiUrl",
                repo.url
            ),
        ));
    }
    Ok(())
}

/// Only the step tidewright adds to a task with a repository delivers, and it
/// holds its name.
pub(super) fn validate_delivery(i: usize, step: &StepSpec, has_repo: bool) -> Result<(), Error> {
    use crate::repo::DELIVER_STEP;
    match (step.deliver.is_some(), step.id == DELIVER_STEP) {
        (true, _) if !has_repo => Err(invalid(
            format!("steps[{i}].deliver"),
            "delivers the task's repository, and the task names none",
        )),
        (true, false) => Err(invalid(
            format!("steps[{i}].id"),
            format!("the step that delivers is named {DELIVER_STEP:?}"),
        )),
        (false, true) if has_repo => Err(invalid(
            format!("steps[{i}].id"),
            format!(
                "{DELIVER_STEP:?} is the step tidewright adds to a task with a repository; name this one otherwise"
            ),
        )),
        _ => Ok(()),
    }
}

/// A step's claims on the repository: its `touches` globs, whether it is
/// strict about them, and its `onConflict` policy.
pub(super) fn validate_step_work(i: usize, step: &StepSpec) -> Result<(), Error> {
    let id = &step.id;
    if step.touches.len() > crate::touches::MAX_GLOBS {
        return Err(invalid(
            format!("steps[{i}].touches"),
            format!(
                "step {id:?} names {} globs; the limit is {}",
                step.touches.len(),
                crate::touches::MAX_GLOBS
            ),
        ));
    }
    for (t, glob) in step.touches.iter().enumerate() {
        if let Some(problem) = crate::touches::glob_problem(glob) {
            return Err(invalid(format!("steps[{i}].touches[{t}]"), problem));
        }
    }
    match &step.on_conflict {
        Some(crate::spec::OnConflict::Unknown(name)) => {
            return Err(invalid(
                format!("steps[{i}].onConflict"),
                format!("{name:?} is not a policy: fail, rerun or agent"),
            ));
        }
        Some(crate::spec::OnConflict::Agent) if step.claude_code.is_none() => {
            return Err(invalid(
                format!("steps[{i}].onConflict"),
                format!(
                    "agent: step {id:?} has no agent to resolve a conflict (it is not a claudeCode step)"
                ),
            ));
        }
        _ => {}
    }
    if step.touches_strict && step.touches.is_empty() {
        return Err(invalid(
            format!("steps[{i}].touchesStrict"),
            format!("step {id:?} is strict about touches it does not name"),
        ));
    }
    Ok(())
}
