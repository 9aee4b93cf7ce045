//! StateService over gRPC: each method converts its request to the state
//! service's call (`wire`), makes it, and converts the answer back.

use tidewright_api::v1;
use tidewright_engine::service::State;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::grpc::{grpc_call, service};
use crate::wire;

/// The state service, served as StateService.
#[derive(Clone)]
pub struct StateGrpc(pub State);

type MessageStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::TopicMessage, Status>> + Send>>;

service! {
    impl v1::state_service_server::StateService for StateGrpc {
        unary {
            get_state(GetStateRequest) -> StateValue =
                |r| Ok(wire::get_state(r)), [0.get_state],
                |(key, entry)| wire::state_value(key, entry);
            list_state(ListStateRequest) -> ListStateResponse =
                |r| Ok(wire::list_state(r)), [0.list_state], wire::state_page;
            put_state(PutStateRequest) -> StateValue =
                |r| Ok(wire::put_state(r)), [0.put_state],
                |(key, entry)| wire::state_value(key, entry);
            delete_state(DeleteStateRequest) -> DeleteStateResponse =
                |r| Ok(wire::delete_state(r)), [0.delete_state], |()| v1::DeleteStateResponse {};
            publish(PublishRequest) -> PublishResponse =
                |r| Ok(wire::publish(r)), [0.publish],
                |delivered| v1::PublishResponse { delivered };
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
}
