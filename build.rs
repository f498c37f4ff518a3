//! Compiles `proto/` with protox, a pure-Rust protobuf compiler, so a fresh
//! machine needs no system `protoc`. The same descriptor set feeds code
//! generation and server reflection, so what grpcurl sees is what was built.

use std::path::PathBuf;

use prost::Message;

/// Messages that carry a secret. prost derives `Debug` for every field, so
/// these get hand-written, redacting `Debug` impls in `src/grpc/redact.rs`.
const SECRET_BEARING_MESSAGES: &[&str] = &[
    ".latchkey.v1.IssueAppPasswordResponse",
    ".latchkey.v1.AuthenticateRequest",
    ".latchkey.v1.CreateCallerResponse",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/latchkey/v1/protocol.proto",
        "proto/latchkey/v1/app_password.proto",
        "proto/latchkey/v1/legacy_auth.proto",
        "proto/latchkey/v1/account.proto",
        "proto/latchkey/v1/caller.proto",
        "proto/latchkey/v1/audit.proto",
    ];
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("latchkey_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .skip_debug(SECRET_BEARING_MESSAGES)
        .compile_fds(descriptors)?;
    Ok(())
}
