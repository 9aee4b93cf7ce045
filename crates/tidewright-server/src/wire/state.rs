//! StateService's messages (shared state and topics) and the services'
//! calls, each way.

use tidewright_api::convert::{optional_timestamp, timestamp};
use tidewright_api::v1;
use tidewright_engine::service::{
    DeleteState, GetState, ListState, Publish, PutState, StatePage, StateRef, Subscribe,
    TopicMessage,
};
use tidewright_store::{StateEntry, StateKey};

fn state_ref(reference: Option<v1::StateRef>) -> Option<StateRef> {
    reference.map(|r| StateRef {
        tenant: r.tenant,
        scope: r.scope,
        key: r.key,
    })
}

pub fn get_state(request: v1::GetStateRequest) -> GetState {
    GetState {
        reference: state_ref(request.r#ref),
    }
}

pub fn list_state(request: v1::ListStateRequest) -> ListState {
    ListState {
        tenant: request.tenant,
        scope: request.scope,
        after_key: request.after_key,
        page_size: request.page_size,
    }
}

pub fn put_state(request: v1::PutStateRequest) -> PutState {
    PutState {
        reference: state_ref(request.r#ref),
        value_json: request.value_json,
        ttl_seconds: request.ttl_seconds,
        expect_version: request.expect_version,
    }
}

pub fn delete_state(request: v1::DeleteStateRequest) -> DeleteState {
    DeleteState {
        reference: state_ref(request.r#ref),
        expect_version: request.expect_version,
    }
}

pub fn publish(request: v1::PublishRequest) -> Publish {
    Publish {
        topic: state_ref(request.topic),
        message_json: request.message_json,
    }
}

pub fn subscribe(request: v1::SubscribeRequest) -> Subscribe {
    Subscribe {
        topic: state_ref(request.topic),
    }
}

pub fn state_value(key: StateKey, entry: StateEntry) -> v1::StateValue {
    v1::StateValue {
        r#ref: Some(v1::StateRef {
            tenant: key.tenant,
            scope: key.scope,
            key: key.key,
        }),
        value_json: entry.value_json,
        version: entry.version,
        updated_at: Some(timestamp(entry.updated_at)),
        expires_at: optional_timestamp(entry.expires_at),
    }
}

pub fn state_page(page: StatePage) -> v1::ListStateResponse {
    v1::ListStateResponse {
        values: page
            .values
            .into_iter()
            .map(|(key, entry)| state_value(key, entry))
            .collect(),
        next_after_key: page.next_after_key,
    }
}

pub fn topic_message(message: TopicMessage) -> v1::TopicMessage {
    v1::TopicMessage {
        topic: message.topic,
        message_json: message.message_json,
        time: Some(timestamp(message.time)),
        sender: message.sender,
    }
}
