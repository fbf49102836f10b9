use std::process::ExitCode;

fn main() -> ExitCode {
    chatmesh_server::run_main("chatmesh-chat", chatmesh_chat::run)
}
