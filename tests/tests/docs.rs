//! The book and the README as a reader meets them: every link leads
//! somewhere (a file that exists, a heading that exists), every page is in
//! the book's table of contents, and the CLI page says what the real
//! binary's `--help` says.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use tidewright_tests::{repo_root, tidewright_bin};

/// The pages to check: the README and every page of the book.
fn pages() -> Vec<PathBuf> {
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    let mut book: Vec<PathBuf> = std::fs::read_dir(root.join("docs/src"))
        .expect("docs/src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    book.sort();
    pages.extend(book);
    pages
}

/// The text outside code: fenced blocks and inline code are not links.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut inline = false;
        for c in line.chars() {
            if c == '`' {
                inline = !inline;
            } else if !inline {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// Every `[text](target)` of the prose.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut found = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        found.push(after[..end].to_string());
        rest = &after[end..];
    }
    found
}

/// The anchor GitHub and mdBook give a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(page: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(page).expect("page");
    let mut fenced = false;
    let mut anchors = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            anchors.insert(slug(line.trim_start_matches('#')));
        }
    }
    anchors
}

#[test]
fn every_link_of_the_readme_and_the_book_leads_somewhere() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        for target in links(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
                || target.is_empty()
            {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a folder").join(path)
            };
            if !file.exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
                continue;
            }
            if let Some(anchor) = anchor
                && !anchors(&file).contains(anchor)
            {
                broken.push(format!("{}: {target} (no such heading)", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_of_the_book_is_in_its_table_of_contents() {
    let root = repo_root();
    let summary = std::fs::read_to_string(root.join("docs/src/SUMMARY.md")).expect("SUMMARY.md");
    let listed: BTreeSet<String> = links(&summary).into_iter().collect();
    let missing: Vec<String> = pages()
        .iter()
        .filter(|p| p.starts_with(root.join("docs/src")))
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .filter(|name| name != "SUMMARY.md" && !listed.contains(name))
        .collect();
    assert!(missing.is_empty(), "pages outside SUMMARY.md: {missing:?}");
}

/// The page is made from the CLI's definitions (a unit test of tidewright
/// holds it to them); this holds it to what the built binary prints.
#[test]
fn the_cli_page_says_what_the_binary_prints() {
    let page = std::fs::read_to_string(repo_root().join("docs/src/cli.md")).expect("cli.md");
    for command in [
        vec![],
        vec!["up"],
        vec!["server"],
        vec!["worker"],
        vec!["get", "task"],
    ] {
        let mut run = Command::new(tidewright_bin());
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("TIDEWRIGHT_")) {
            run.env_remove(name);
        }
        let output = run
            .args(&command)
            .arg("--help")
            .output()
            .expect("tidewright --help");
        assert!(output.status.success(), "tidewright {command:?} --help");
        let help = String::from_utf8(output.stdout).expect("utf-8");
        let section = format!(
            "## {}\n\n```text\n{}\n```\n",
            std::iter::once("tidewright")
                .chain(command.iter().copied())
                .collect::<Vec<_>>()
                .join(" "),
            help.trim_end()
        );
        assert!(
            page.contains(&section),
            "docs/src/cli.md does not hold `tidewright {}` --help as printed:\n{help}",
            command.join(" ")
        );
    }
}

/// The architecture page's path through a submit names at most twelve
/// files, each of which exists, and every function it names (a `snake_case`
/// name in backticks) is defined in the file of its step.
#[test]
fn the_architecture_pages_path_names_files_and_functions_that_exist() {
    let page = std::fs::read_to_string(repo_root().join("docs/src/architecture.md"))
        .expect("architecture.md");
    let path = page
        .split("## The life of a task, file by file")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the page follows a task");
    // Its steps: each starts "N. **`file`**".
    let mut steps: Vec<String> = Vec::new();
    for line in path.lines() {
        let numbered = line
            .split_once(". **`")
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if numbered {
            steps.push(line.to_string());
        } else if let Some(step) = steps.last_mut() {
            step.push(' ');
            step.push_str(line.trim());
        }
    }
    assert!(
        (6..=12).contains(&steps.len()),
        "the path has {} steps; a newcomer reads at most twelve files",
        steps.len()
    );
    for step in &steps {
        let file = step
            .split("**`")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .expect("a step names its file");
        let text = std::fs::read_to_string(repo_root().join(file))
            .unwrap_or_else(|e| panic!("{file}, named by the architecture page: {e}"));
        let named: Vec<&str> = step
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|name| {
                name.starts_with(|c: char| c.is_ascii_lowercase())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
            .collect();
        for name in named {
            assert!(
                text.contains(&format!("fn {name}(")) || text.contains(&format!("fn {name}<")),
                "the architecture page names `{name}` in {file}, which defines no such function"
            );
        }
    }
}

/// The architecture page's table has a row for every crate of the
/// workspace.
#[test]
fn the_architecture_page_names_every_crate() {
    let page = std::fs::read_to_string(repo_root().join("docs/src/architecture.md"))
        .expect("architecture.md");
    let crates = std::fs::read_dir(repo_root().join("crates")).expect("crates/");
    let mut missing = Vec::new();
    for entry in crates {
        let name = entry.expect("an entry").file_name();
        let name = name.to_string_lossy();
        if !page.contains(&format!("| `{name}` |")) {
            missing.push(name.to_string());
        }
    }
    if !page.contains("| `tidewright-tests` (`tests/`) |") {
        missing.push("tidewright-tests".into());
    }
    assert!(
        missing.is_empty(),
        "docs/src/architecture.md has no row for {missing:?}"
    );
}
