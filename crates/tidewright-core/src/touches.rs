//! The paths a step says it will change, as globs over its repository's
//! paths (`src/api/**`, `docs/*.md`): `*` and `?` within one path segment,
//! `**` for any number of segments. Two steps whose globs may match a
//! common path must not run at once on one repository and base; whether
//! they may is decided here, conservatively (a false "may" costs a wait, a
//! false "may not" a conflict).

/// The longest glob a step may declare, and the most globs.
pub const MAX_GLOB_BYTES: usize = 512;
pub const MAX_GLOBS: usize = 64;

/// Why `glob` is not one tidewright reads, or `None`.
pub fn glob_problem(glob: &str) -> Option<String> {
    if glob.is_empty() {
        return Some("is empty".into());
    }
    if glob.len() > MAX_GLOB_BYTES {
        return Some(format!("is longer than {MAX_GLOB_BYTES} bytes"));
    }
    if glob.starts_with('/') {
        return Some(format!(
            "{glob:?} is absolute: globs are paths inside the repository"
        ));
    }
    if glob.chars().any(|c| c.is_control()) {
        return Some(format!("{glob:?} holds a control character"));
    }
    for segment in glob.split('/') {
        match segment {
            "" => return Some(format!("{glob:?} has an empty path segment")),
            ".." | "." => {
                return Some(format!(
                    "{glob:?} leaves the repository: no '.' or '..' segments"
                ));
            }
            "**" => {}
            s if s.contains("**") => {
                return Some(format!(
                    "{glob:?}: '**' must be a whole path segment (as in src/**/x.rs)"
                ));
            }
            s if s.contains(['[', ']', '{', '}', '\\']) => {
                return Some(format!(
                    "{glob:?}: only '*', '?' and '**' are wildcards; '[', ']', '{{', '}}' and '\\\\' are not read"
                ));
            }
            _ => {}
        }
    }
    None
}

/// Whether `path` (a repository path, `/`-separated) matches `glob`.
pub fn matches(glob: &str, path: &str) -> bool {
    let glob: Vec<&str> = glob.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    matches_segments(&glob, &path)
}

fn matches_segments(glob: &[&str], path: &[&str]) -> bool {
    match glob.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| matches_segments(rest, &path[skip..])),
        Some((segment, rest)) => match path.split_first() {
            Some((name, path_rest)) => {
                segment_matches(segment.as_bytes(), name.as_bytes())
                    && matches_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// One segment: `*` any run of characters, `?` one.
fn segment_matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| segment_matches(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && segment_matches(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && segment_matches(rest, &name[1..]),
    }
}

/// Whether some path may match both globs. Exact for globs without
/// wildcards; otherwise it may say yes where no path matches both, never
/// no where one does.
pub fn may_overlap(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('/').collect();
    let b: Vec<&str> = b.split('/').collect();
    segments_may_overlap(&a, &b)
}

fn segments_may_overlap(a: &[&str], b: &[&str]) -> bool {
    match (a.split_first(), b.split_first()) {
        (None, None) => true,
        (Some((&"**", _)), _) | (_, Some((&"**", _))) => true,
        (Some((x, a_rest)), Some((y, b_rest))) => {
            segment_may_overlap(x, y) && segments_may_overlap(a_rest, b_rest)
        }
        _ => false,
    }
}

/// Two segments: a literal against a pattern is matched; two patterns
/// may both match a name when their literal beginnings and endings agree.
fn segment_may_overlap(x: &str, y: &str) -> bool {
    let wild = |s: &str| s.contains(['*', '?']);
    match (wild(x), wild(y)) {
        (false, false) => x == y,
        (true, false) => segment_matches(x.as_bytes(), y.as_bytes()),
        (false, true) => segment_matches(y.as_bytes(), x.as_bytes()),
        (true, true) => {
            let head = |s: &str| s[..s.find(['*', '?']).unwrap_or(s.len())].to_string();
            let tail = |s: &str| s[s.rfind(['*', '?']).map_or(0, |i| i + 1)..].to_string();
            let (hx, hy, tx, ty) = (head(x), head(y), tail(x), tail(y));
            (hx.starts_with(&hy) || hy.starts_with(&hx)) && (tx.ends_with(&ty) || ty.ends_with(&tx))
        }
    }
}

/// The first pair of globs, one of each list, that may overlap.
pub fn first_overlap<'a>(a: &'a [String], b: &'a [String]) -> Option<(&'a str, &'a str)> {
    a.iter()
        .flat_map(|x| b.iter().map(move |y| (x.as_str(), y.as_str())))
        .find(|(x, y)| may_overlap(x, y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_paths_segment_by_segment() {
        for (glob, path) in [
            ("src/api/**", "src/api/a.rs"),
            ("src/api/**", "src/api/v1/b.rs"),
            ("src/**/mod.rs", "src/mod.rs"),
            ("src/**/mod.rs", "src/a/b/mod.rs"),
            ("*.md", "README.md"),
            ("docs/?.md", "docs/a.md"),
            ("**", "anything/at/all"),
            ("Cargo.toml", "Cargo.toml"),
        ] {
            assert!(matches(glob, path), "{glob} ~ {path}");
        }
        for (glob, path) in [
            ("src/api/**", "src/web/a.rs"),
            ("*.md", "docs/a.md"),
            ("docs/?.md", "docs/ab.md"),
            ("Cargo.toml", "crates/x/Cargo.toml"),
        ] {
            assert!(!matches(glob, path), "{glob} !~ {path}");
        }
    }

    #[test]
    fn overlaps_are_never_missed_and_disjoint_trees_are_told_apart() {
        for (a, b) in [
            ("src/api/**", "src/api/handlers.rs"),
            ("src/api/**", "src/**"),
            ("**/*.rs", "src/web/a.rs"),
            ("src/*.rs", "src/main*"),
            ("README.md", "README.md"),
            ("src/api/**", "src/api/**"),
        ] {
            assert!(may_overlap(a, b), "{a} and {b} may overlap");
            assert!(may_overlap(b, a), "and the other way round");
        }
        for (a, b) in [
            ("src/api/**", "src/web/**"),
            ("src/*.rs", "src/*.md"),
            ("docs/a.md", "docs/b.md"),
            ("src/api/x.rs", "src/api"),
            ("web/**", "README.md"),
        ] {
            assert!(!may_overlap(a, b), "{a} and {b} cannot overlap");
            assert!(!may_overlap(b, a), "and the other way round");
        }
        let api = vec!["src/api/**".to_string(), "Cargo.toml".to_string()];
        let web = vec!["src/web/**".to_string(), "Cargo.toml".to_string()];
        assert_eq!(
            first_overlap(&api, &web),
            Some(("Cargo.toml", "Cargo.toml"))
        );
    }

    #[test]
    fn a_glob_tidewright_cannot_read_is_refused_saying_why() {
        for (glob, says) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../x", "leaves the repository"),
            ("src//x", "empty path segment"),
            ("src/a**", "whole path segment"),
            ("src/[ab].rs", "are not read"),
            ("src/{a,b}.rs", "are not read"),
        ] {
            let problem = glob_problem(glob).unwrap_or_default();
            assert!(problem.contains(says), "{glob:?}: {problem:?}");
        }
        assert_eq!(glob_problem("src/**/*.rs"), None);
    }
}
