//! The tower layers around every gRPC server: a per-request timeout, a
//! concurrency limit that sheds load instead of queueing, and a span and
//! metrics per request.
//!
//! Requests beyond `server.max_concurrent_requests` are answered at once
//! with `overloaded` (gRPC `UNAVAILABLE`, retryable), so a caller retries on
//! another instance instead of waiting behind a queue with no bound; a
//! request that runs past `server.request_timeout` is answered with
//! `timed_out`. Health checks and reflection bypass both, so an instance
//! that is busy is not also reported unhealthy. The limit and the timeout
//! are tower's [`ConcurrencyLimit`] (over one semaphore shared by every connection), [`LoadShed`] and [`Timeout`]; the
//! layer here routes around them and turns their errors into statuses that
//! carry chatmesh's error kinds.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chatmesh_error::{ClientError, ErrorKind};
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codegen::http;
use tower::limit::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::timeout::Timeout;
use tower::{Layer, Service, ServiceExt as _};
use tracing::Instrument as _;

/// Limits of one gRPC server's API requests.
#[derive(Debug, Clone)]
pub struct GrpcLimits {
    /// How long one request may take to answer.
    pub request_timeout: Duration,
    /// Requests in flight at once, across every connection.
    pub max_concurrent_requests: usize,
}

/// The layer that applies [`GrpcLimits`], spans and metrics.
#[derive(Debug, Clone)]
pub struct GrpcLayer {
    timeout: Duration,
    permits: Arc<Semaphore>,
}

impl GrpcLayer {
    /// A layer enforcing `limits`; every service it wraps shares its permits.
    pub fn new(limits: &GrpcLimits) -> Self {
        Self {
            timeout: limits.request_timeout,
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
        }
    }
}

impl<S> Layer<S> for GrpcLayer
where
    S: Clone,
{
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let limited = LoadShed::new(ConcurrencyLimit::with_semaphore(
            Timeout::new(inner.clone(), self.timeout),
            self.permits.clone(),
        ));
        Guarded {
            plain: inner,
            limited,
            permits: self.permits.clone(),
        }
    }
}

/// A gRPC service behind [`GrpcLayer`].
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    plain: S,
    limited: LoadShed<ConcurrencyLimit<Timeout<S>>>,
    // The limit's permits, to refuse at once, before any span or label is
    // made, while none is free.
    permits: Arc<Semaphore>,
}

/// Health and reflection: cheap, and what decides whether the instance
/// gets calls at all, so never shed.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// `/pkg.Service/Method` as (`pkg.Service`, `Method`).
fn split_path(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (trimmed.to_owned(), String::new()),
    }
}

fn answer(kind: ErrorKind) -> http::Response<Body> {
    ClientError::generic(kind).to_status().into_http()
}

/// The refusal of a request over the limit. Overload is when refusing
/// must cost least, so its headers are encoded once.
fn overloaded() -> http::Response<Body> {
    static HEADERS: std::sync::OnceLock<http::HeaderMap> = std::sync::OnceLock::new();
    let headers = HEADERS.get_or_init(|| answer(ErrorKind::Overloaded).headers().clone());
    let mut response = http::Response::new(Body::empty());
    *response.headers_mut() = headers.clone();
    response
}

fn shed(service: &str) -> http::Response<Body> {
    metrics::counter!("chatmesh_grpc_server_shed_total", "service" => service.to_owned())
        .increment(1);
    overloaded()
}

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is decided per request below, by the clone that serves
        // it: that is where the limit sheds.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if exempt(req.uri().path()) {
            let plain = self.plain.clone();
            return Box::pin(plain.oneshot(req));
        }
        let (service, method) = split_path(req.uri().path());
        if self.permits.available_permits() == 0 {
            return Box::pin(std::future::ready(Ok(shed(&service))));
        }
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        if chatmesh_telemetry::exporting() {
            // The caller's trace continues here.
            let metadata = tonic::metadata::MetadataMap::from_headers(req.headers().clone());
            chatmesh_telemetry::set_parent_from_metadata(&span, &metadata);
        }
        let limited = self.limited.clone();
        Box::pin(
            async move {
                let started = Instant::now();
                let response = match limited.oneshot(req).await {
                    Ok(response) => response,
                    Err(err) if err.is::<tower::load_shed::error::Overloaded>() => shed(&service),
                    Err(err) if err.is::<tower::timeout::error::Elapsed>() => {
                        tracing::warn!(rpc.method = %method, "request passed server.request_timeout");
                        answer(ErrorKind::TimedOut)
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "request failed in the server's layers");
                        answer(ErrorKind::Internal)
                    }
                };
                // A unary call that failed carries its status in the
                // headers; one that succeeded carries it in the trailers,
                // which for these calls means OK.
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0);
                let code_name = format!("{:?}", tonic::Code::from_i32(code));
                tracing::Span::current().record("rpc.grpc.status_code", code);
                metrics::counter!(
                    "chatmesh_grpc_server_requests_total",
                    "service" => service.clone(),
                    "method" => method.clone(),
                    "code" => code_name,
                )
                .increment(1);
                metrics::histogram!(
                    "chatmesh_grpc_server_request_seconds",
                    "service" => service,
                    "method" => method,
                )
                .record(started.elapsed().as_secs_f64());
                Ok(response)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chatmesh_error::DOMAIN;
    use tonic_types::StatusExt as _;

    use super::*;

    /// A service that answers OK after `delay`, counting the calls it saw.
    #[derive(Clone)]
    struct Slow {
        delay: Duration,
        calls: Arc<AtomicUsize>,
    }

    impl Service<http::Request<()>> for Slow {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _req: http::Request<()>) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::new(Body::empty()))
            })
        }
    }

    fn guarded(
        delay: Duration,
        timeout: Duration,
        max: usize,
    ) -> (Guarded<Slow>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let layer = GrpcLayer::new(&GrpcLimits {
            request_timeout: timeout,
            max_concurrent_requests: max,
        });
        (
            layer.layer(Slow {
                delay,
                calls: calls.clone(),
            }),
            calls,
        )
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    fn kind_of(response: &http::Response<Body>) -> Option<String> {
        let status = tonic::Status::from_header_map(response.headers())?;
        let info = status.get_error_details().error_info()?.clone();
        assert_eq!(info.domain, DOMAIN);
        Some(info.reason)
    }

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_limit_are_shed_at_once() {
        let (service, calls) = guarded(Duration::from_secs(1), Duration::from_secs(10), 2);
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(tokio::spawn(
                service
                    .clone()
                    .oneshot(request("/chatmesh.chat.v1.ChatService/SendMessage")),
            ));
        }
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        let shed = service
            .clone()
            .oneshot(request("/chatmesh.chat.v1.ChatService/SendMessage"))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO, "shed without waiting");
        assert_eq!(kind_of(&shed).as_deref(), Some("overloaded"));
        let status = tonic::Status::from_header_map(shed.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        for h in held {
            let ok = h.await.unwrap().unwrap();
            assert_eq!(kind_of(&ok), None);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // The permits came back.
        let again = service
            .oneshot(request("/chatmesh.chat.v1.ChatService/SendMessage"))
            .await
            .unwrap();
        assert_eq!(kind_of(&again), None);
    }

    #[tokio::test(start_paused = true)]
    async fn health_checks_are_never_shed() {
        let (service, _) = guarded(Duration::from_secs(1), Duration::from_secs(10), 1);
        let busy = tokio::spawn(
            service
                .clone()
                .oneshot(request("/chatmesh.chat.v1.ChatService/SendMessage")),
        );
        tokio::task::yield_now().await;
        let health = service
            .clone()
            .oneshot(request("/grpc.health.v1.Health/Check"))
            .await
            .unwrap();
        assert_eq!(kind_of(&health), None);
        busy.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_timeout_is_answered_timed_out() {
        let (service, _) = guarded(Duration::from_secs(5), Duration::from_secs(1), 8);
        let response = service
            .oneshot(request("/chatmesh.chat.v1.ChatService/SendMessage"))
            .await
            .unwrap();
        assert_eq!(kind_of(&response).as_deref(), Some("timed_out"));
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    }

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/chatmesh.chat.v1.ChatService/SendMessage"),
            ("chatmesh.chat.v1.ChatService".into(), "SendMessage".into())
        );
        assert!(exempt("/grpc.health.v1.Health/Check"));
        assert!(!exempt("/chatmesh.chat.v1.ChatService/SendMessage"));
    }
}
