//! A seed as programs read it: `tidewright seed list -o json`, the HTTP API
//! and the console.

use serde::Serialize;

use super::rfc3339;
use crate::v1;

/// What a repository's setup made, kept by the control plane for every
/// worker.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeedView {
    /// 64 hex digits: a hash of the tenant, the repository, the setup and
    /// its key files.
    pub key: String,
    pub tenant: String,
    pub repo: String,
    /// The setup's paths it holds.
    pub paths: Vec<String>,
    /// Files and bytes unpacked.
    pub files: u64,
    pub bytes: u64,
    /// Bytes as kept: packed and compressed.
    pub stored_bytes: u64,
    /// How long its setup ran.
    pub build_millis: u64,
    pub built_at: Option<String>,
    pub stored_at: Option<String>,
    /// How many steps took it, and when the last did.
    pub uses: u64,
    pub used_at: Option<String>,
}

pub fn seed_view(s: &v1::StoredSeed) -> SeedView {
    SeedView {
        key: s.key.clone(),
        tenant: s.tenant.clone(),
        repo: s.repo.clone(),
        paths: s.paths.clone(),
        files: s.files,
        bytes: s.bytes,
        stored_bytes: s.stored_bytes,
        build_millis: s.build_millis,
        built_at: rfc3339(&s.built_at),
        stored_at: rfc3339(&s.stored_at),
        uses: s.uses,
        used_at: rfc3339(&s.used_at),
    }
}
