//! This build, as build.rs recorded it: what `tidewright version` prints
//! and the control plane reports to its clients.

use tidewright_core::build::Build;

pub fn this_build() -> Build {
    Build {
        version: env!("CARGO_PKG_VERSION").to_string(),
        commit: env!("TIDEWRIGHT_COMMIT").to_string(),
        built_at: env!("TIDEWRIGHT_BUILD_TIME")
            .parse::<i64>()
            .map_or(0, |seconds| seconds * 1_000_000),
    }
}
