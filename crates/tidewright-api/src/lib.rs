//! tidewright's public API: code generated from `proto/tidewright/v1` (no system protoc),
//! the descriptor set for server reflection, and the one place where proto
//! messages convert to and from tidewright-core's domain types; and what every
//! client needs to reach the control plane (its endpoint, its token, and
//! the replica that leads).

pub mod abort;
pub mod client;
pub mod convert;
pub mod leader;
pub mod view;

#[allow(clippy::all, clippy::unwrap_used, missing_docs)]
pub mod v1 {
    tonic::include_proto!("tidewright.v1");
}

/// The encoded descriptors of every tidewright proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tidewright_descriptor");

/// Errors converting between the wire format and tidewright's domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An enum field holds a value this build does not know.
    #[error("{field}: unknown value {value}")]
    UnknownEnum { field: &'static str, value: i32 },
    /// A required field is absent.
    #[error("{0}: required")]
    Missing(&'static str),
    /// A value cannot be used as it is.
    #[error("{0}: {1}")]
    Invalid(&'static str, &'static str),
    /// A client setting (server URL, TLS file) cannot be used.
    #[error("{0}")]
    Client(String),
}
