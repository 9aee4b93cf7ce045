//! Task files as users write them: any text through the YAML parser, then
//! validation and a full run.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = serde_yaml::from_str::<tidewright_core::TaskSpec>(text) {
        common::check(&spec);
    }
});
