//! Submits as they arrive on the wire: any bytes through the protobuf
//! decoder and the conversion to tidewright's domain, then validation and a run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = tidewright_api::v1::SubmitTaskRequest::decode(data)
        && let Some(spec) = request.spec
    {
        common::check(&tidewright_core::TaskSpec::from(spec));
    }
});
