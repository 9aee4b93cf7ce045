//! The gRPC adapters: TaskService, AgentService and StateService as thin
//! adapters over the application services (`tidewright_engine::service`),
//! converting with `crate::wire`; and the port's server, serving a router
//! on the connections the acceptor hands over (with TLS when configured),
//! with server reflection.

pub mod agents;
pub mod state;
mod tasks;

pub use tasks::TaskGrpc;

use std::future::Future;
use std::sync::Arc;

use tokio_stream::StreamExt;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

use tidewright_engine::access::Identity;
use tidewright_engine::service::Call;

use crate::error::Error;
use crate::port::tls;

/// Where a fleet stream begins: the position it replays after.
pub const FLEET_POSITION: &str = "tidewright-fleet-position";

/// A call of an application service from a gRPC request: the identity the
/// interceptor put on it (none when it found no credentials), and its
/// message.
pub fn grpc_call<T>(request: tonic::Request<T>) -> Call<T> {
    let caller = request.extensions().get::<Identity>().cloned();
    Call::from_parts(caller, request.into_inner())
}

/// A gRPC service's impl whose unary methods are rows, one per RPC:
/// `rpc(Request) -> Response = convert, [the service's method], back;`.
/// Each row's method converts its request to the application service's
/// call, makes it, and converts the answer back (see [`serve`]); the
/// methods that stream follow the rows, written out. A macro, because the
/// `async_trait` impl cannot call one inside it.
macro_rules! service {
    (
        impl $($service:ident)::+ for $adapter:ty {
            unary {
                $(
                    $rpc:ident($request:ident) -> $response:ident =
                        $convert:expr, [$($method:tt)+] $(($($extra:expr),+))?, $back:expr;
                )*
            }
            $($streaming:tt)*
        }
    ) => {
        #[tonic::async_trait]
        impl $($service)::+ for $adapter {
            $(
                async fn $rpc(
                    &self,
                    request: tonic::Request<tidewright_api::v1::$request>,
                ) -> Result<tonic::Response<tidewright_api::v1::$response>, tonic::Status> {
                    let make = |c| self.$($method)+(c $($(, $extra)+)?);
                    $crate::grpc::serve(request, $convert, make, $back).await
                }
            )*
            $($streaming)*
        }
    };
}
pub(crate) use service;

/// Serves `router` on `connections` until `signal`.
pub(crate) async fn serve_router(
    router: Router,
    connections: tokio_stream::wrappers::ReceiverStream<tokio::net::TcpStream>,
    tls: Option<Arc<tls::ReloadingConfig>>,
    signal: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(tls::incoming(connections, tls), signal)
                .await
        }
        None => {
            let incoming = connections.map(Ok::<_, std::io::Error>);
            router.serve_with_incoming_shutdown(incoming, signal).await
        }
    }
}

/// Both reflection versions: grpcurl and grpcui speak v1, but Python's
/// grpcio-reflection, Postman and older grpcurl speak only v1alpha. They
/// tell only what the public proto says, so they need no token.
pub(crate) fn with_reflection(server: tonic::transport::Server) -> Result<Router, Error> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tidewright_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok(server
        .trace_fn(tidewright_telemetry::rpc_span)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?))
}

/// One method: convert the request (refusing what does not convert), make
/// the call, convert its answer.
pub(crate) async fn serve<R, C, A, W, F>(
    request: Request<R>,
    convert: impl FnOnce(R) -> Result<C, Error>,
    make: impl FnOnce(Call<C>) -> F,
    back: impl FnOnce(A) -> W,
) -> Result<Response<W>, Status>
where
    F: Future<Output = Result<A, tidewright_engine::Error>>,
{
    let call = grpc_call(request).try_map(convert)?;
    let answer = make(call).await.map_err(Error::from)?;
    Ok(Response::new(back(answer)))
}
