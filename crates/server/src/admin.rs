use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::probe::Readiness;

/// Serves [`admin_routes`] until `shutdown`.
pub async fn serve_admin(
    listener: TcpListener,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, admin_routes(readiness))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// `/livez`, `/readyz` (503 with the failing dependencies until every probe
/// passes) and Prometheus `/metrics`.
pub fn admin_routes(readiness: Readiness) -> Router {
    let metrics = chatmesh_telemetry::metrics_handle();
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(move || async move { readyz(&readiness) }))
        .route("/metrics", get(move || async move { metrics.render() }))
}

fn readyz(readiness: &Readiness) -> (StatusCode, String) {
    let mut body = String::new();
    for (name, result) in readiness.snapshot() {
        match result {
            Ok(()) => body.push_str(&format!("{name}: ok\n")),
            Err(reason) => body.push_str(&format!("{name}: {reason}\n")),
        }
    }
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}
