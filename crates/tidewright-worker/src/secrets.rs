//! Secrets for steps: read on the worker from its secrets directory (one
//! file per secret, as a mounted Kubernetes Secret lays them out), handed to
//! the step as environment variables, and masked in everything the step
//! sends back: log lines, progress messages, errors and output. The values
//! never travel to the control plane, so they cannot reach its store,
//! events or metrics.

use std::collections::BTreeMap;
use std::path::Path;

/// What a masked secret looks like.
pub const MASK: &str = "***";

/// Reads each secret the step names; `env var -> value`.
pub fn resolve(
    secret_env: &BTreeMap<String, String>,
    dir: Option<&Path>,
) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for (var, name) in secret_env {
        let value = tidewright_core::secret::read(dir, name)
            .map_err(|why| format!("secret {name:?} for ${var}: {why}"))?;
        values.insert(var.clone(), value);
    }
    Ok(values)
}

/// Secret files of one attempt, on the worker: a directory only its user
/// can read, bound into the step's private home file by file, and removed
/// when dropped (the attempt's end).
pub struct SecretFiles {
    /// None for a step that names no file.
    dir: Option<std::path::PathBuf>,
    /// (the file on the worker, its path under the home).
    files: Vec<(std::path::PathBuf, std::path::PathBuf)>,
}

impl SecretFiles {
    /// Reads each secret `files` names (path under the home -> secret
    /// name) and writes it, read-only, into a private directory; the
    /// values too, for masking.
    pub fn write(
        files: &BTreeMap<String, String>,
        dir: Option<&Path>,
    ) -> Result<(SecretFiles, Vec<String>), String> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if files.is_empty() {
            let none = SecretFiles {
                dir: None,
                files: Vec::new(),
            };
            return Ok((none, Vec::new()));
        }
        let private = std::env::temp_dir().join(format!(
            "tidewright-secrets-{}",
            crate::sandbox::model_proxy::random_hex()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(|e| format!("making {}: {e}", private.display()))?;
        let mut made = SecretFiles {
            dir: Some(private.clone()),
            files: Vec::new(),
        };
        let mut values = Vec::new();
        for (n, (path, name)) in files.iter().enumerate() {
            let value = tidewright_core::secret::read(dir, name)
                .map_err(|why| format!("secret {name:?} for the file ~/{path}: {why}"))?;
            let file = private.join(n.to_string());
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o400)
                .open(&file)
                .map_err(|e| format!("writing the file ~/{path}: {e}"))?;
            std::io::Write::write_all(&mut out, value.as_bytes())
                .map_err(|e| format!("writing the file ~/{path}: {e}"))?;
            made.files.push((file, path.into()));
            values.push(value);
        }
        Ok((made, values))
    }

    /// (the file on the worker, its path under the home), for the sandbox.
    pub fn files(&self) -> &[(std::path::PathBuf, std::path::PathBuf)] {
        &self.files
    }
}

impl Drop for SecretFiles {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Replaces secret values in text the step produced.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    needles: Vec<String>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a String>) -> Redactor {
        let mut needles = Vec::new();
        for secret in secrets {
            if secret.is_empty() {
                continue;
            }
            needles.push(secret.clone());
            // In JSON output a secret appears escaped.
            if let Ok(quoted) = serde_json::to_string(secret) {
                let escaped = &quoted[1..quoted.len() - 1];
                if escaped != secret {
                    needles.push(escaped.to_string());
                }
            }
            // Logs come line by line: a multi-line secret (a PEM key) is
            // masked line by line too.
            if secret.contains('\n') {
                needles.extend(
                    secret
                        .lines()
                        .map(str::trim)
                        .filter(|l| l.len() >= 8)
                        .map(str::to_string),
                );
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Redactor { needles }
    }

    /// This one's secrets and `more`: a setup's own, besides its step's.
    pub fn and<'a>(&'a self, more: impl IntoIterator<Item = &'a String>) -> Redactor {
        Redactor::new(self.needles.iter().chain(more))
    }

    pub fn redact(&self, text: String) -> String {
        if !self.needles.iter().any(|n| text.contains(n.as_str())) {
            return text;
        }
        let mut text = text;
        for needle in &self.needles {
            text = text.replace(needle.as_str(), MASK);
        }
        text
    }

    /// Masks secrets in a file's bytes, text or not (a checkpoint's
    /// workspace files).
    pub fn redact_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        match String::from_utf8(bytes) {
            Ok(text) => self.redact(text).into_bytes(),
            Err(not_text) => {
                let mut bytes = not_text.into_bytes();
                for needle in &self.needles {
                    bytes = replace_bytes(&bytes, needle.as_bytes(), MASK.as_bytes());
                }
                bytes
            }
        }
    }
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_masked_in_bytes_that_are_not_text() {
        let r = Redactor::new(&["sk-live-abc".to_string()]);
        let mut bytes = vec![0xff, 0x00];
        bytes.extend_from_slice(b"sk-live-abc");
        bytes.push(0xfe);
        bytes.extend_from_slice(b"sk-live-abc");
        assert_eq!(r.redact_bytes(bytes), b"\xff\x00***\xfe***".to_vec());
        assert_eq!(r.redact_bytes(b"a sk-live-abc".to_vec()), b"a ***".to_vec());
    }

    #[test]
    fn every_form_of_a_secret_is_masked() {
        let secrets = [
            "sk-live-abc".to_string(),
            "quote\"d".to_string(),
            "-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\n-----END KEY-----".to_string(),
        ];
        let r = Redactor::new(&secrets);
        assert_eq!(r.redact("key=sk-live-abc!".into()), "key=***!");
        assert_eq!(r.redact(r#"{"k":"quote\"d"}"#.into()), r#"{"k":"***"}"#);
        assert_eq!(r.redact("AAAABBBBCCCCDDDD".into()), "***");
        assert_eq!(r.redact("nothing here".into()), "nothing here");
    }

    #[test]
    fn secrets_come_from_files_and_missing_ones_say_which() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("api-key"), "s3cr3t\n").expect("write");
        let wanted = BTreeMap::from([("API_KEY".to_string(), "api-key".to_string())]);
        assert_eq!(
            resolve(&wanted, Some(dir.path())).expect("resolves")["API_KEY"],
            "s3cr3t"
        );
        let missing = BTreeMap::from([("X".to_string(), "nope".to_string())]);
        assert!(
            resolve(&missing, Some(dir.path()))
                .expect_err("missing")
                .contains("\"nope\"")
        );
        assert!(
            resolve(&wanted, None)
                .expect_err("no dir")
                .contains("--secrets-dir")
        );
        let sneaky = BTreeMap::from([("X".to_string(), "../etc/passwd".to_string())]);
        assert!(resolve(&sneaky, Some(dir.path())).is_err());
    }
}
