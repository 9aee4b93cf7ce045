//! Seeds, as workers send and take them and people list them.

use tidewright_api::convert::{micros, optional_timestamp};
use tidewright_api::v1;
use tidewright_engine::seeds::StoredSeed;
use tidewright_engine::service::{DeleteSeed, GetSeed, ListSeeds, PutSeed};

pub fn stored_seed(seed: StoredSeed) -> v1::StoredSeed {
    v1::StoredSeed {
        key: seed.key,
        tenant: seed.tenant,
        repo: seed.repo,
        paths: seed.paths,
        setup: seed.setup.map(Into::into),
        task_id: seed.task_id,
        files: seed.files,
        bytes: seed.bytes,
        build_millis: seed.build_millis,
        built_at: optional_timestamp(seed.built_at),
        sha256: seed.sha256,
        stored_bytes: seed.stored_bytes,
        stored_at: optional_timestamp(seed.stored_at),
        used_at: optional_timestamp(seed.used_at),
        uses: seed.uses,
        dropped_at: optional_timestamp(seed.dropped_at),
    }
}

/// A worker's header: what it says of the seed. What the store knows
/// (tenant, blob, uses) it sets itself.
pub fn put_seed(header: v1::SeedHeader) -> PutSeed {
    let seed = header.seed.unwrap_or_default();
    PutSeed {
        attempt: header.attempt.map(Into::into),
        seed: StoredSeed {
            key: seed.key,
            repo: seed.repo,
            paths: seed.paths,
            setup: seed.setup.map(Into::into),
            files: seed.files,
            bytes: seed.bytes,
            build_millis: seed.build_millis,
            built_at: seed.built_at.as_ref().map_or(0, micros),
            ..StoredSeed::default()
        },
    }
}

pub fn get_seed(request: v1::GetSeedRequest) -> GetSeed {
    GetSeed {
        attempt: request.attempt.map(Into::into),
        key: request.key,
        data: request.data,
    }
}

pub fn list_seeds(request: v1::ListSeedsRequest) -> ListSeeds {
    ListSeeds {
        tenant: request.tenant,
        repo: request.repo,
    }
}

pub fn seeds(seeds: Vec<StoredSeed>) -> v1::ListSeedsResponse {
    v1::ListSeedsResponse {
        seeds: seeds.into_iter().map(stored_seed).collect(),
    }
}

pub fn delete_seed(request: v1::DeleteSeedRequest) -> DeleteSeed {
    DeleteSeed { key: request.key }
}
