//! Finding a program as exec does: a bare name on the `PATH`, anything
//! else as a path from the working directory; either way a file someone
//! may execute.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where `program` is, run from `cwd` with `path` (a `PATH` value); `None`
/// when it is not there to run.
pub fn find_program(program: &Path, cwd: &Path, path: Option<&str>) -> Option<PathBuf> {
    let runnable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 || program.is_absolute() {
        let at = cwd.join(program);
        return runnable(&at).then_some(at);
    }
    std::env::split_paths(path?)
        .map(|dir| cwd.join(dir).join(program))
        .find(|at| runnable(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_found_on_the_path_and_a_path_from_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        std::fs::write(bin.join("tool"), "#!/bin/sh\n").expect("tool");
        std::fs::write(bin.join("data"), "not a program").expect("data");
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755))
            .expect("mode");
        let path = format!("/nonexistent:{}", bin.display());
        let found = |p: &str| find_program(Path::new(p), dir.path(), Some(&path));
        assert_eq!(found("tool"), Some(bin.join("tool")));
        assert_eq!(found("data"), None, "not executable");
        assert_eq!(found("bin/tool"), Some(dir.path().join("bin/tool")));
        assert_eq!(found("missing"), None);
        assert_eq!(find_program(Path::new("tool"), dir.path(), None), None);
    }
}
