//! Compiles `proto/onboard/v1/*.proto` with protox (pure Rust, so no `protoc` is needed on any
//! machine) and generates prost messages plus tonic clients and servers.

use std::path::PathBuf;

// `REDACTED`: the messages whose derived `Debug` is left out (shared with the crate's test
// that every message with a token or secret field is on it).
include!("src/redacted.rs");

/// One file per service, as the API sketch asks, and the messages two services share
/// (`delivery.proto`: how secrets leave, ClaimSecret's messages and sealed delivery).
const PROTOS: &[&str] = &[
    "onboard/v1/admin.proto",
    "onboard/v1/audit.proto",
    "onboard/v1/credentials.proto",
    "onboard/v1/delivery.proto",
    "onboard/v1/invitations.proto",
    "onboard/v1/onboarding.proto",
    "onboard/v1/verification.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut compiler = protox::Compiler::new([&root])?;
    // Source info keeps the .proto comments, which become rustdoc and reflection docs.
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;
    // `compile_fds` prints no rerun-if-changed lines, so name every input ourselves.
    for p in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Nor does it write the descriptor set that server reflection serves.
    std::fs::write(
        out.join("onboard_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .skip_debug(REDACTED)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
