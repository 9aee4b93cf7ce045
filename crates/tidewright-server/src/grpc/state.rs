//! StateService over gRPC: each method converts its request to the state
//! service's call (`wire`), makes it, and converts the answer back.

use tidewright_api::v1;
use tidewright_engine::service::State;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::grpc::{grpc_call, serve};
use crate::wire;

/// The state service, served as StateService.
#[derive(Clone)]
pub struct StateGrpc(pub State);

type MessageStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::TopicMessage, Status>> + Send>>;

#[tonic::async_trait]
impl v1::state_service_server::StateService for StateGrpc {
    async fn get_state(
        &self,
        request: Request<v1::GetStateRequest>,
    ) -> Result<Response<v1::StateValue>, Status> {
        serve(
            request,
            |r| Ok(wire::get_state(r)),
            |c| self.0.get_state(c),
            |(key, entry)| wire::state_value(key, entry),
        )
        .await
    }

    async fn list_state(
        &self,
        request: Request<v1::ListStateRequest>,
    ) -> Result<Response<v1::ListStateResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::list_state(r)),
            |c| self.0.list_state(c),
            wire::state_page,
        )
        .await
    }

    async fn put_state(
        &self,
        request: Request<v1::PutStateRequest>,
    ) -> Result<Response<v1::StateValue>, Status> {
        serve(
            request,
            |r| Ok(wire::put_state(r)),
            |c| self.0.put_state(c),
            |(key, entry)| wire::state_value(key, entry),
        )
        .await
    }

    async fn delete_state(
        &self,
        request: Request<v1::DeleteStateRequest>,
    ) -> Result<Response<v1::DeleteStateResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::delete_state(r)),
            |c| self.0.delete_state(c),
            |()| v1::DeleteStateResponse {},
        )
        .await
    }

    async fn publish(
        &self,
        request: Request<v1::PublishRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::publish(r)),
            |c| self.0.publish(c),
            |delivered| v1::PublishResponse { delivered },
        )
        .await
    }

    type SubscribeStream = MessageStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let call = grpc_call(request).try_map(|r| Ok::<_, Error>(wire::subscribe(r)))?;
        let messages = self.0.subscribe(call).await.map_err(Error::from)?;
        Ok(Response::new(Box::pin(messages.map(|message| {
            message
                .map(wire::topic_message)
                .map_err(|e| Status::from(Error::from(e)))
        }))))
    }
}
