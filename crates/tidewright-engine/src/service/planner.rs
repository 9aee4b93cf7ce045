//! What planning a prompt task needs from outside: a model that answers a
//! plan. The control plane's planner calls Anthropic's API; the services
//! know only this.

use tidewright_core::plan::Plan;

use crate::error::Error;

/// What one planning call gave: the model's plan as it answered it (kept
/// for inspection, valid or not) and the steps read from it, or why none
/// could be.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan_json: String,
    pub plan: Result<Plan, String>,
}

#[async_trait::async_trait]
pub trait Planner: Send + Sync {
    /// A plan of `prompt`, for a fleet whose workers offer these sets of
    /// capabilities. A model that does not answer is `Error::Unavailable`.
    async fn plan(&self, prompt: &str, capability_sets: &[Vec<String>]) -> Result<Planned, Error>;
}
