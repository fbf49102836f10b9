use std::process::ExitCode;

fn main() -> ExitCode {
    chatmesh_server::run_main("chatmesh-storage", chatmesh_storage::run)
}
