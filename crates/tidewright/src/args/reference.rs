//! The CLI reference in the book (`docs/src/cli.md`), made from the clap
//! definitions themselves, so the page cannot drift from `--help`.

use clap::CommandFactory;

use super::Cli;

/// The page: what each command prints for `--help`, the whole tree, depth
/// first.
pub fn markdown() -> String {
    let root = Cli::command();
    let mut page = String::from(
        "# The CLI\n\n\
         Every command's `--help`, as the binary prints it. This page is made\n\
         from the CLI's own definitions (`TIDEWRIGHT_WRITE_DOCS=1 cargo test -p tidewright`\n\
         writes it) and `make test` fails when it differs.\n",
    );
    write(&mut page, &root, &[]);
    page
}

/// The page says which variable a flag reads, as a machine that sets none
/// prints it (`[env: TIDEWRIGHT_SERVER=]`), never what this one holds.
fn without_env_values(help: &str) -> String {
    let mut out = String::with_capacity(help.len());
    let mut rest = help;
    while let Some(at) = rest.find("[env: ") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let Some(end) = from.find(']') else {
            rest = from;
            break;
        };
        let inside = &from[..end];
        match inside.split_once('=') {
            Some((name, _)) => {
                out.push_str(name);
                out.push('=');
            }
            None => out.push_str(inside),
        }
        rest = &from[end..];
    }
    out.push_str(rest);
    out
}

fn write(page: &mut String, root: &clap::Command, path: &[&str]) {
    let mut command = root;
    for name in path {
        command = command.find_subcommand(name).expect("a subcommand");
    }
    // `help` is clap's own; a hidden command is not for people.
    if command.is_hide_set() || path.last() == Some(&"help") {
        return;
    }
    let args = std::iter::once("tidewright")
        .chain(path.iter().copied())
        .chain(std::iter::once("--help"));
    let help = match root.clone().try_get_matches_from(args) {
        Err(shown) => without_env_values(&shown.render().to_string()),
        Ok(_) => String::new(),
    };
    let title = std::iter::once("tidewright")
        .chain(path.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    page.push_str(&format!(
        "\n## {title}\n\n```text\n{}\n```\n",
        help.trim_end()
    ));
    for sub in command.get_subcommands() {
        let mut deeper = path.to_vec();
        deeper.push(sub.get_name());
        write(page, root, &deeper);
    }
}
