//! The seeds routes: the seeds the control plane keeps for every worker,
//! listed and dropped (`tidewright seed list|delete`, the console's Seeds
//! page).

use tidewright_api::view::{SeedView, seed_view};
use tidewright_engine::service::{DeleteSeed, ListSeeds};

use super::*;

#[derive(Serialize, ToSchema)]
pub(super) struct SeedList {
    /// The most recently used first.
    seeds: Vec<SeedView>,
}

/// `?tenant=…&repo=…`
#[utoipa::path(get, path = "/seeds", tag = "seeds",
    summary = "The seeds kept, of the tenants the caller sees: repository, key, size, age, uses, build time (ListSeeds)",
    params(
        ("tenant" = Option<String>, Query, description = "only this tenant's"),
        ("repo" = Option<String>, Query, description = "only this repository's"),
    ),
    responses((status = 200, body = SeedList), Refused))]
pub(super) async fn list_seeds(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<SeedList> {
    let mut request = ListSeeds::default();
    for (name, value) in query {
        match name.as_str() {
            "tenant" => request.tenant = value,
            "repo" => request.repo = value,
            other => return Err(Error::invalid(other, "not a filter of seeds").into()),
        }
    }
    let seeds = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.seeds.list_seeds(r).await
    })
    .await?;
    Ok(Json(SeedList {
        seeds: wire::seeds(seeds).seeds.iter().map(seed_view).collect(),
    }))
}

#[utoipa::path(delete, path = "/seeds/{seed}", tag = "seeds",
    summary = "Drop a seed from the store and from every worker; the next step that needs it runs its setup again (DeleteSeed)",
    params(("seed" = String, Path, description = "the seed's key: 64 lowercase hex digits")),
    responses((status = 204, description = "dropped"), (status = 404, body = ErrorBody), Refused))]
pub(super) async fn delete_seed(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(seed): Path<String>,
) -> Result<StatusCode, ApiError> {
    call(
        &app,
        &headers,
        Access::Change,
        DeleteSeed { key: seed },
        |s, r| async move { s.seeds.delete_seed(r).await },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
