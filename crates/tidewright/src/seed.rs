//! `tidewright seed list|delete|rebuild`: repositories' seeds, kept by the
//! control plane for every worker.

use std::process::ExitCode;

use tidewright_api::view::{SeedView, seed_view};
use tidewright_client::{Client, Settings, Submit, v1};

use crate::args::SeedCommand;
use crate::client::connect;
use crate::output::{age, bytes, duration, emit, print_table};

/// The fewest hex digits of a key that name a seed.
const SHORTEST_KEY: usize = 12;

pub async fn seed(settings: &Settings, command: SeedCommand) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    match command {
        SeedCommand::List {
            tenant,
            repo,
            output,
        } => {
            let seeds = client
                .seeds(
                    tenant.as_deref().unwrap_or_default(),
                    repo.as_deref().unwrap_or_default(),
                )
                .await?;
            let views: Vec<SeedView> = seeds.iter().map(seed_view).collect();
            if !emit(&views, views.iter().map(|v| &v.key), output)? {
                table(&seeds);
            }
        }
        SeedCommand::Delete { key } => {
            let seed = named(&client, &key).await?;
            client.delete_seed(&seed.key).await?;
            println!(
                "seed {} of {} dropped: the next step that needs it runs its setup again",
                short(&seed.key),
                seed.repo
            );
        }
        SeedCommand::Rebuild { key } => {
            let seed = named(&client, &key).await?;
            let Some(setup) = seed.setup.clone() else {
                anyhow::bail!(
                    "seed {} does not say which setup made it (a worker older than this control plane kept it): delete it instead",
                    short(&seed.key)
                );
            };
            client.delete_seed(&seed.key).await?;
            let submitted = client
                .submit(Submit {
                    spec: rebuilding(&seed, setup, made_on(&client, &seed).await),
                    idempotency_key: None,
                    tenant: seed.tenant.clone(),
                })
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "seed {} was dropped, but the task to make it again was refused ({e}): the next step that needs it makes it",
                        short(&seed.key)
                    )
                })?;
            println!(
                "seed {} of {} dropped; task {} makes it again (tidewright watch {})",
                short(&seed.key),
                seed.repo,
                submitted.task_id,
                submitted.task_id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The one seed the caller sees whose key is `key`, or begins with it.
async fn named(client: &Client, key: &str) -> anyhow::Result<v1::StoredSeed> {
    let hex = key.len() <= 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex || key.len() < SHORTEST_KEY {
        anyhow::bail!(
            "key: {key:?} is not a seed's key: give its first {SHORTEST_KEY} or more lowercase hex digits"
        );
    }
    let mut found: Vec<v1::StoredSeed> = client
        .seeds("", "")
        .await?
        .into_iter()
        .filter(|s| s.key.starts_with(key))
        .collect();
    match found.len() {
        0 => {
            anyhow::bail!("key: no seed {key} is kept (tidewright seed list shows those that are)")
        }
        1 => Ok(found.remove(0)),
        n => anyhow::bail!("key: {key} begins {n} seeds' keys: give more of it"),
    }
}

/// The repository as the task that made the seed named it (its
/// credentials' secret too), when that task is still kept.
async fn made_on(client: &Client, seed: &v1::StoredSeed) -> Option<v1::RepoSpec> {
    if seed.task_id.is_empty() {
        return None;
    }
    let task = client.get(&seed.task_id).await.ok()?;
    task.spec?.repo
}

/// A task whose one step, on the seed's repository's default branch,
/// finds no seed and so runs the setup, which keeps one.
fn rebuilding(
    seed: &v1::StoredSeed,
    setup: v1::SetupSpec,
    made_on: Option<v1::RepoSpec>,
) -> v1::TaskSpec {
    let made_on = made_on.unwrap_or_default();
    v1::TaskSpec {
        name: format!("seed rebuild {}", short(&seed.key)),
        repo: Some(v1::RepoSpec {
            url: seed.repo.clone(),
            credentials_secret: made_on.credentials_secret,
            setup: Some(setup),
            ..v1::RepoSpec::default()
        }),
        steps: vec![v1::StepSpec {
            id: "setup".into(),
            runtime: Some(v1::step_spec::Runtime::Shell(v1::ShellRuntime {
                command: vec!["true".into()],
                ..v1::ShellRuntime::default()
            })),
            ..v1::StepSpec::default()
        }],
        ..v1::TaskSpec::default()
    }
}

fn short(key: &str) -> &str {
    &key[..key.len().min(SHORTEST_KEY)]
}

fn table(seeds: &[v1::StoredSeed]) {
    let now = tidewright_api::convert::now_micros();
    let since = |ts: &Option<prost_types::Timestamp>| {
        ts.as_ref().map_or(
            "-".into(),
            |t| age(now - tidewright_api::convert::micros(t)),
        )
    };
    let rows: Vec<Vec<String>> = seeds
        .iter()
        .map(|s| {
            vec![
                short(&s.key).to_string(),
                s.tenant.clone(),
                s.repo.clone(),
                s.paths.join(","),
                bytes(s.bytes),
                bytes(s.stored_bytes),
                duration(s.build_millis as i64 * 1000),
                since(&s.built_at),
                s.uses.to_string(),
                since(&s.used_at),
            ]
        })
        .collect();
    print_table(
        &[
            "KEY", "TENANT", "REPO", "PATHS", "SIZE", "STORED", "SETUP", "AGE", "USES", "USED",
        ],
        &rows,
    );
}
