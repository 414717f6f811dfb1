//! Compiles `proto/` with protox (pure Rust, so a fresh machine needs no `protoc`) and generates the tonic services.
//! The same descriptor set is written to `OUT_DIR` for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/sentinel/v1/registry.proto",
        "proto/sentinel/v1/ingest.proto",
        "proto/sentinel/v1/enforcement.proto",
        "proto/sentinel/v1/models.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("sentinel_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
