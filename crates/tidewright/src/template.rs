//! `tidewright template list|show|run` and `tidewright submit --template`: templates
//! from the built-in set (`templates/` of the repository, in the binary)
//! and from --templates-dir, rendered here, so a missing or unknown
//! parameter is refused before anything reaches the control plane. With
//! --on-server, the control plane's templates, rendered there (with the
//! same refusals, before it stores anything).

use std::process::ExitCode;

use anyhow::{Context, bail};
use tidewright_core::template::{TemplateFile, catalog};

use crate::args::{SubmitArgs, TemplateCommand, TemplateRunArgs, TemplateSource};
use crate::output::print_table;

fn all(source: &TemplateSource) -> anyhow::Result<Vec<TemplateFile>> {
    catalog(source.templates_dir.as_deref()).context("--templates-dir")
}

fn find(name: &str, source: &TemplateSource) -> anyhow::Result<TemplateFile> {
    let all = all(source)?;
    let names: Vec<String> = all.iter().map(|f| f.name.clone()).collect();
    match all.into_iter().find(|f| f.name == name) {
        Some(found) => Ok(found),
        None => bail!(
            "template {name:?} not found; there are: {}",
            names.join(", ")
        ),
    }
}

/// The task a template makes with `params` (each key=value).
pub fn render(
    name: &str,
    params: &[String],
    source: &TemplateSource,
) -> anyhow::Result<tidewright_core::TaskSpec> {
    let template = find(name, source)?.load()?;
    Ok(template.render(&parameters(params)?)?)
}

/// `-p key=value`s as (key, value).
pub(crate) fn parameters(params: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => bail!("-p {p:?}: a template's parameter is key=value"),
        })
        .collect()
}

/// The control plane's template `name` to run with `params`.
pub fn server_run(name: &str, params: &[String]) -> anyhow::Result<tidewright_client::TemplateRun> {
    let mut run = tidewright_client::TemplateRun::new(name);
    for (key, value) in parameters(params)? {
        if run.parameters.insert(key.clone(), value).is_some() {
            bail!("parameters.{key}: given twice");
        }
    }
    Ok(run)
}

/// A template's parameters as `list` shows them: required ones marked *.
fn marked<'a>(parameters: impl Iterator<Item = (&'a str, bool)>) -> String {
    parameters
        .map(|(name, required)| {
            if required {
                format!("{name}*")
            } else {
                name.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The control plane's template `name`, or why not (naming those it has).
async fn on_server(
    settings: &tidewright_client::Settings,
    name: &str,
) -> anyhow::Result<tidewright_client::v1::TaskTemplate> {
    let offered = tidewright_client::Client::connect(settings.clone())
        .await?
        .templates()
        .await?;
    let names: Vec<String> = offered.iter().map(|t| t.name.clone()).collect();
    match offered.into_iter().find(|t| t.name == name) {
        Some(template) => Ok(template),
        None => bail!(
            "template {name:?} not found on the server; it has: {}",
            names.join(", ")
        ),
    }
}

pub async fn template(
    settings: &tidewright_client::Settings,
    command: TemplateCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        TemplateCommand::List { templates } if templates.on_server => {
            let rows: Vec<Vec<String>> = tidewright_client::Client::connect(settings.clone())
                .await?
                .templates()
                .await?
                .into_iter()
                .map(|t| {
                    let parameters = t.parameters.iter().map(|p| (p.name.as_str(), p.required));
                    vec![
                        t.name.clone(),
                        format!("server: {}", t.origin),
                        marked(parameters),
                        t.description.chars().take(70).collect(),
                    ]
                })
                .collect();
            print_table(&["NAME", "SOURCE", "PARAMETERS", "DESCRIPTION"], &rows);
            Ok(ExitCode::SUCCESS)
        }
        TemplateCommand::List { templates } => {
            let mut rows = Vec::new();
            for found in all(&templates.local)? {
                let template = found.load()?;
                let parameters = template
                    .parameters
                    .iter()
                    .map(|(key, p)| (key.as_str(), p.required));
                let description: String = template.description.chars().take(70).collect();
                rows.push(vec![
                    found.name,
                    found.origin,
                    marked(parameters),
                    description,
                ]);
            }
            print_table(&["NAME", "SOURCE", "PARAMETERS", "DESCRIPTION"], &rows);
            Ok(ExitCode::SUCCESS)
        }
        TemplateCommand::Show { name, templates } if templates.on_server => {
            let template = on_server(settings, &name).await?;
            println!("# {} (server: {})", template.name, template.origin);
            print!("{}", template.file);
            Ok(ExitCode::SUCCESS)
        }
        TemplateCommand::Show { name, templates } => {
            let found = find(&name, &templates.local)?;
            // Checked first: what is shown is a template that runs.
            found.load()?;
            println!("# {} ({})", found.name, found.origin);
            print!("{}", found.text);
            Ok(ExitCode::SUCCESS)
        }
        // A submit, which the command's dispatch sends (`submit_args`).
        TemplateCommand::Run(run) => bail!("template {}: run it as a submit", run.name),
    }
}

/// `tidewright template run` is `tidewright submit --template`: the submit it makes.
pub fn submit_args(run: TemplateRunArgs) -> SubmitArgs {
    SubmitArgs {
        file: None,
        prompt: run.params,
        template: Some(run.name),
        templates: run.templates,
        plan: false,
        plan_only: false,
        options: run.options,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_templates_load_and_render_with_their_required_parameters() {
        let source = TemplateSource {
            templates_dir: None,
        };
        let names: Vec<String> = all(&source)
            .expect("templates")
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "deploy",
                "feature",
                "fix-ci",
                "fix-issue",
                "parallel-feature",
                "pr-command",
                "refactor"
            ]
        );
        let parallel = render(
            "parallel-feature",
            &[
                "feature=Paginate the item list".into(),
                "repo=https://github.com/acme/app.git".into(),
            ],
            &source,
        )
        .expect("renders");
        let repo = parallel.repo.as_ref().expect("a repository");
        assert!(repo.push);
        assert_eq!(
            repo.pull_request.as_ref().map(|p| p.title.as_str()),
            Some("Paginate the item list")
        );
        let touches: Vec<&[String]> = parallel.steps.iter().map(|s| &s.touches[..]).collect();
        assert_eq!(touches[0], ["src/api/**"]);
        let feature = render(
            "feature",
            &["feature=dark mode".into(), "repo=/srv/app.git".into()],
            &source,
        )
        .expect("renders");
        assert_eq!(feature.name, "feature: dark mode");
        let ids: Vec<&str> = feature.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "plan",
                "backend",
                "frontend",
                "tests",
                "run-tests",
                "review"
            ]
        );
        assert!(
            feature.steps[1]
                .claude_code
                .as_ref()
                .expect("agent")
                .model
                .is_none()
        );
        let e = render("feature", &["feature=x".into()], &source).expect_err("no repo");
        assert!(
            e.to_string().starts_with("parameters.repo: required"),
            "{e}"
        );
        let e = render("nope", &[], &source).expect_err("no such template");
        assert!(
            e.to_string().contains(
                "there are: deploy, feature, fix-ci, fix-issue, parallel-feature, pr-command, refactor"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_directory_template_replaces_a_built_in_and_a_bad_one_names_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("feature.yaml"),
            "parameters: {who: {required: true}}\nsteps:\n  - id: hi\n    shell: {command: [echo, \"${{ who }}\"]}\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("README.md"), "not a template").expect("write");
        let source = TemplateSource {
            templates_dir: Some(dir.path().to_path_buf()),
        };
        let spec = render("feature", &["who=me".into()], &source).expect("renders");
        assert_eq!(
            spec.steps[0].shell.as_ref().expect("shell").command,
            ["echo", "me"]
        );
        std::fs::write(
            dir.path().join("bad.yaml"),
            "steps:\n  - id: s\n    shell: {command: [sh, -c, \"echo ${{ x }}\"]}\n",
        )
        .expect("write");
        let e = render("bad", &[], &source).expect_err("bad");
        assert!(format!("{e:#}").contains("bad.yaml"), "{e:#}");
    }
}
