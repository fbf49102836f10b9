//! The tower layers around the client-facing HTTP routes: a timeout per
//! request, a node-wide limit of requests in flight that answers 503
//! `overloaded` at once instead of queueing, and a span and metrics per
//! request, labelled by route template rather than by path so channel IDs
//! never become metric labels.

use std::time::Instant;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use chatmesh_error::ErrorKind;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tracing::Instrument as _;

use super::fail;
use crate::config::HttpSettings;

/// `router` with every layer applied as `settings` say.
pub(crate) fn apply(router: axum::Router, settings: &HttpSettings) -> axum::Router {
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(refused))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            settings.max_concurrent_requests,
        ))
        .timeout(settings.request_timeout);
    router
        .layer(limits)
        .layer(axum::middleware::from_fn(observe))
}

/// The answer to a request the limit shed or the timeout cut short.
async fn refused(err: tower::BoxError) -> Response {
    if err.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!("chatmesh_gateway_http_shed_total").increment(1);
        fail(
            ErrorKind::Overloaded,
            "the node is at its limit of requests in flight, retry shortly",
        )
    } else if err.is::<tower::timeout::error::Elapsed>() {
        fail(ErrorKind::TimedOut, "the request took too long")
    } else {
        tracing::error!(error = %err, "request failed in the HTTP layers");
        fail(ErrorKind::Internal, "internal error")
    }
}

/// A span per request, and its count and duration by route and status.
async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    metrics::counter!(
        "chatmesh_gateway_http_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => status.to_string(),
    )
    .increment(1);
    metrics::histogram!("chatmesh_gateway_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
