use std::process::ExitCode;

fn main() -> ExitCode {
    chatmesh_server::run_main("chatmesh-gateway", chatmesh_gateway::run)
}
