//! The Claude Code CLI's stream-json reader on arbitrary lines: it reads
//! what a worker's child prints, so no line may panic it, and a result line
//! it accepts must give an outcome and an output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewright_worker::runtime::claude::stream::{Line, parse_line};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Ok(Line::Result(result)) = parse_line(line) {
            let _ = result.failure(Some(10));
            let output = result.output();
            assert!(output.is_object());
        }
    }
});
