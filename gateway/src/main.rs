use std::process::ExitCode;

fn main() -> ExitCode {
    // `--check-config [FILE]` loads and validates the configuration, then exits.
    if let Some(code) =
        chatmesh_config::check_config_main::<chatmesh_gateway::GatewayConfig>("chatmesh-gateway")
    {
        return code;
    }
    chatmesh_server::run_main("chatmesh-gateway", chatmesh_gateway::run)
}
