use std::process::ExitCode;

fn main() -> ExitCode {
    chatmesh_server::run_main("chatmesh-media", chatmesh_media::run)
}
