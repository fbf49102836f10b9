//! Compiles every `.proto` under this directory into `OUT_DIR`, plus one
//! file descriptor set that services hand to gRPC reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "chatmesh/common/v1/common.proto",
    "chatmesh/chat/v1/chat.proto",
    "chatmesh/presence/v1/presence.proto",
    "chatmesh/storage/v1/storage.proto",
    "chatmesh/media/v1/media.proto",
    "chatmesh/gateway/v1/client.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps the build free of system packages; an explicit
    // PROTOC still wins for packagers who bring their own.
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // tonic-prost-build finds protoc through this variable. Build
        // scripts are single-threaded, which is what set_var requires.
        #[allow(unsafe_code, clippy::disallowed_methods)]
        unsafe {
            std::env::set_var("PROTOC", protoc);
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("chatmesh_descriptor.bin"))
        .compile_protos(PROTOS, &["."])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
