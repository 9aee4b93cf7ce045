//! Secrets by name: one file per secret in a process's secrets directory,
//! as a mounted Kubernetes Secret lays them out. The rule for a name and
//! the reading of one, for every process that holds such a directory (a
//! worker, for steps' `secretEnv` and repositories' credentials; the
//! control plane, for repositories).

use std::path::Path;

/// A secret's name is a file name in the directory: no path separators,
/// no hidden files.
pub fn valid_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The value of secret `name` in `dir`, without the line end that
/// `echo value > file` leaves; why not, naming the file, never the value.
pub fn read(dir: Option<&Path>, name: &str) -> Result<String, String> {
    let dir =
        dir.ok_or_else(|| "this process has no secrets directory (--secrets-dir)".to_string())?;
    // The control plane checks names at submit; a reader does not trust that.
    if !valid_name(name) {
        return Err("not a secret name".into());
    }
    let path = dir.join(name);
    let mut value =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_a_plain_file_name_read_without_its_line_end() {
        assert!(valid_name("github-token") && valid_name("a.b_c"));
        for bad in ["", ".hidden", "a/b", "..", &"x".repeat(254)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token"), "s3cret\r\n").expect("write");
        assert_eq!(read(Some(dir.path()), "token").as_deref(), Ok("s3cret"));
        let why = |name: &str, dir: Option<&Path>| read(dir, name).err().unwrap_or_default();
        assert!(why("../token", Some(dir.path())).contains("not a secret name"));
        assert!(why("token", None).contains("--secrets-dir"));
        assert!(why("other", Some(dir.path())).contains("other"));
    }
}
