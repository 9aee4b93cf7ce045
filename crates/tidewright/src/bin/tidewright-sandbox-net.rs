//! `tidewright-sandbox-net RELAY... -- PROGRAM [ARG...]`: see the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    tidewright_sandbox_net::main(&args)
}
