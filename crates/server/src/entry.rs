use std::future::Future;
use std::process::ExitCode;

use chatmesh_config::{Env, TelemetryConfig, Validate};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// What `run_main` needs from a binary's configuration.
pub trait ServiceConfig: DeserializeOwned + Validate {
    /// The logging and trace export settings.
    fn telemetry(&self) -> &TelemetryConfig;
}

/// The body of every service's `main`: loads the configuration from the
/// file in `CHATMESH_CONFIG` and `CHATMESH_*` overrides, sets up telemetry,
/// then runs `service` until SIGTERM or Ctrl-C. A bad configuration exits
/// with status 2 and a message naming the field; a service failure with 1.
pub fn run_main<C, F, Fut>(binary: &'static str, service: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let env: Env = std::env::vars().collect();
    let config: C = match chatmesh_config::load_from_env(&env) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{binary}: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("{binary}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = match chatmesh_telemetry::init(binary, config.telemetry()) {
            Ok(guard) => guard,
            Err(err) => {
                eprintln!("{binary}: {err:#}");
                return ExitCode::from(2);
            }
        };
        let shutdown = CancellationToken::new();
        let signals = crate::shutdown_on_signal(shutdown.clone());
        let result = service(config, shutdown.clone()).await;
        shutdown.cancel();
        let _ = signals.await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "service failed");
                eprintln!("{binary}: {err:#}");
                ExitCode::FAILURE
            }
        }
    })
}
