//! The tower layers around the client-facing HTTP routes: a timeout per
//! request, a node-wide limit of requests in flight that answers 503
//! `overloaded` at once instead of queueing, a span and metrics per
//! request (labelled by route template rather than by path so channel IDs
//! never become metric labels), error answers in the API's JSON shape
//! whoever wrote them, and CORS for the configured origins.

use std::time::Instant;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use chatmesh_error::ErrorKind;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
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
    let router = router
        .layer(limits)
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(observe));
    // Validated with the config: an invalid origin never gets here.
    match cors_origins(&settings.cors_allowed_origins) {
        Ok(Some(origins)) => router.layer(cors(origins)),
        Ok(None) | Err(_) => router,
    }
}

/// The CORS origins `configured` allows: `None` for none, an error naming
/// an entry that is not an origin.
pub(crate) fn cors_origins(configured: &[String]) -> Result<Option<AllowOrigin>, String> {
    if configured.is_empty() {
        return Ok(None);
    }
    if configured.iter().any(|o| o == "*") {
        if configured.len() > 1 {
            return Err("\"*\" allows every origin and cannot be combined with others".into());
        }
        return Ok(Some(AllowOrigin::any()));
    }
    let mut origins = Vec::new();
    for origin in configured {
        let parsed = url::Url::parse(origin).map_err(|e| format!("{origin:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.path() != "/"
            || origin.ends_with('/')
            || parsed.query().is_some()
        {
            return Err(format!(
                "{origin:?} is not an origin (scheme://host[:port], no path)"
            ));
        }
        origins.push(HeaderValue::from_str(origin).map_err(|e| format!("{origin:?}: {e}"))?);
    }
    Ok(Some(AllowOrigin::list(origins)))
}

/// Browsers may call every route with a bearer token; they may read the
/// `Location` of a redirect and the `Retry-After` of a refusal.
fn cors(origins: AllowOrigin) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::LOCATION, header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

/// Error answers the routes did not write themselves (an unknown route, a
/// method a route lacks, a path or body the extractors refused) come as
/// plain text from the framework; they are rewritten into the API's JSON
/// error shape, so every error a client sees parses the same way.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::TooLarge,
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
        StatusCode::FORBIDDEN => ErrorKind::Forbidden,
        StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable,
        s if s.is_server_error() => ErrorKind::Internal,
        _ => ErrorKind::InvalidRequest,
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match (text.trim(), status) {
        ("", StatusCode::NOT_FOUND) => "no such route".to_owned(),
        ("", StatusCode::METHOD_NOT_ALLOWED) => "this route does not take that method".to_owned(),
        ("", s) => s.canonical_reason().unwrap_or("error").to_lowercase(),
        (t, _) => t.to_owned(),
    };
    let mut rewritten = fail(kind, message);
    // The framework's status stands (405 stays 405, with its `Allow`).
    *rewritten.status_mut() = status;
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        rewritten.headers_mut().insert(header::ALLOW, allow.clone());
    }
    rewritten
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::get;
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::{apply, cors_origins};
    use crate::config::HttpSettings;

    fn app(origins: &[&str]) -> axum::Router {
        let router = axum::Router::new().route(
            "/v1/items/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<u32>| async move { id.to_string() }),
        );
        let settings = HttpSettings {
            cors_allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..HttpSettings::default()
        };
        apply(router, &settings)
    }

    async fn send(
        app: axum::Router,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = app.oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 16).await.expect("body");
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn error_code(body: &str) -> String {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        v["error"]["code"].as_str().expect("code").to_owned()
    }

    #[tokio::test]
    async fn framework_refusals_come_in_the_json_error_shape() {
        let (status, _, body) = send(
            app(&[]),
            Request::get("/nowhere").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&body), "not_found");

        let (status, headers, body) = send(
            app(&[]),
            Request::post("/v1/items/1").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(error_code(&body), "invalid_request");
        assert_eq!(
            headers.get(header::ALLOW).map(|v| v.to_str().unwrap()),
            Some("GET,HEAD")
        );

        // A path the extractor refuses: its reason survives as the message.
        let (status, _, body) = send(
            app(&[]),
            Request::get("/v1/items/xyz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "invalid_request");
        assert!(body.contains("Invalid URL"), "{body}");

        let (status, _, body) = send(
            app(&[]),
            Request::get("/v1/items/7").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "7"));
    }

    #[tokio::test]
    async fn cors_answers_only_the_configured_origins() {
        let preflight = |origin: &str| {
            Request::options("/v1/items/1")
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
                .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
                .body(Body::empty())
                .unwrap()
        };
        let allowed = |headers: &axum::http::HeaderMap| {
            headers
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let listed = app(&["https://chat.example.com"]);
        let (status, headers, _) =
            send(listed.clone(), preflight("https://chat.example.com")).await;
        assert!(status.is_success(), "{status}");
        assert_eq!(
            allowed(&headers).as_deref(),
            Some("https://chat.example.com")
        );
        let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(methods.contains("DELETE"), "{methods}");
        let (_, headers, _) = send(listed, preflight("https://evil.example")).await;
        assert_eq!(allowed(&headers), None);

        let any = app(&["*"]);
        let get = Request::get("/v1/items/3")
            .header(header::ORIGIN, "http://localhost:5173")
            .body(Body::empty())
            .unwrap();
        let (_, headers, body) = send(any, get).await;
        assert_eq!(
            (allowed(&headers).as_deref(), body.as_str()),
            (Some("*"), "3")
        );

        // None configured: same-origin only, no CORS headers at all.
        let (_, headers, _) = send(app(&[]), preflight("https://chat.example.com")).await;
        assert_eq!(allowed(&headers), None);
    }

    #[test]
    fn only_origins_are_accepted() {
        for bad in [
            vec!["chat.example.com"],
            vec!["https://chat.example.com/"],
            vec!["https://chat.example.com/app"],
            vec!["ftp://chat.example.com"],
            vec!["*", "https://chat.example.com"],
        ] {
            let bad: Vec<String> = bad.into_iter().map(str::to_owned).collect();
            assert!(cors_origins(&bad).is_err(), "{bad:?} accepted");
        }
        let good = vec![
            "https://chat.example.com".to_owned(),
            "http://localhost:5173".to_owned(),
        ];
        assert!(matches!(cors_origins(&good), Ok(Some(_))));
        assert!(matches!(cors_origins(&[]), Ok(None)));
    }
}
