//! A call of an application service from a gRPC request: the identity the
//! interceptor put on it (none when it found no credentials), and its
//! message.

use tidewright_engine::access::Identity;
use tidewright_engine::service::Call;

pub fn grpc_call<T>(request: tonic::Request<T>) -> Call<T> {
    let caller = request.extensions().get::<Identity>().cloned();
    Call::from_parts(caller, request.into_inner())
}
