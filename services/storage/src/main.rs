use std::process::ExitCode;

fn main() -> ExitCode {
    // `--check-config [FILE]` loads and validates the configuration, then exits.
    if let Some(code) =
        chatmesh_config::check_config_main::<chatmesh_storage::StorageConfig>("chatmesh-storage")
    {
        return code;
    }
    chatmesh_server::run_main("chatmesh-storage", chatmesh_storage::run)
}
