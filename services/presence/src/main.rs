use std::process::ExitCode;

fn main() -> ExitCode {
    chatmesh_server::run_main("chatmesh-presence", chatmesh_presence::run)
}
