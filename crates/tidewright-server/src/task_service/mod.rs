//! TaskService on the wire: `grpc` serves the application services
//! (`tidewright_engine::service`) over gRPC as thin adapters, and `wire`
//! converts between v1 messages and the services' calls and answers, for
//! gRPC and the JSON API alike.

mod grpc;
pub mod wire;

pub use grpc::TaskGrpc;
pub use wire::task_to_proto;

/// Where a fleet stream begins: the position it replays after.
pub const FLEET_POSITION: &str = "tidewright-fleet-position";

#[cfg(test)]
mod tests;
