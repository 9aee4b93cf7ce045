//! Compiles proto/ with protox (pure Rust), so no system `protoc` is needed.
//! The proto files live in this crate (the repository's `proto/` points
//! here), so the crate as published builds on its own.
use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let file = proto_root.join("tidewright/v1/tidewright.proto");
    println!("cargo:rerun-if-changed={}", file.display());

    let descriptors = protox::compile([&file], [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // The same descriptors back gRPC server reflection.
    fs::write(
        out_dir.join("tidewright_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The generated `connect` constructor would clash with the `Connect` RPC;
        // clients build a Channel and call `new`.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
