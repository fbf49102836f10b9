use std::process::ExitCode;

fn main() -> ExitCode {
    // `--check-config [FILE]` loads and validates the configuration, then exits.
    if let Some(code) =
        chatmesh_config::check_config_main::<chatmesh_media::MediaConfig>("chatmesh-media")
    {
        return code;
    }
    chatmesh_server::run_main("chatmesh-media", chatmesh_media::run)
}
