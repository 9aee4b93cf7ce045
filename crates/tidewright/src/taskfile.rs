//! Task files: YAML in the shape of the `Task` resource's spec.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use tidewright_core::TaskSpec;

pub fn load(path: &Path) -> anyhow::Result<TaskSpec> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    parse(&text).with_context(|| format!("{}", path.display()))
}

pub fn parse(text: &str) -> anyhow::Result<TaskSpec> {
    Ok(tidewright_client::parse_task(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_examples_parse_and_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        // As a control plane naming a grader model sees them: the
        // attempts example has a judge.
        let limits = tidewright_core::Limits {
            grader: Some("claude-sonnet-4-5".into()),
            ..tidewright_core::Limits::default()
        };
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let spec = load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                tidewright_core::validate(&spec, &limits)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                count += 1;
            }
        }
        assert!(count > 0, "no examples found");
    }

    #[test]
    fn mistakes_name_the_field() {
        let err =
            parse("name: x\nsteps:\n  - id: a\n    shel: {command: [true]}\n").expect_err("typo");
        assert!(format!("{err:#}").contains("shel"), "{err:#}");
        assert!(parse("  \n").is_err());
    }
}
