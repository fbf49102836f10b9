//! The HTTP side of the local backend: `PUT` and `GET` on
//! `/objects/<key>?expires=<unix secs>&signature=<sig>`, the URLs
//! [`LocalBlobs`] signs. Refusals mirror S3: 403 for a bad or expired
//! signature, 404 for a missing object.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chatmesh_server::Tasks;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use super::ObjectKey;
use super::local::{LocalBlobs, WriteError};
use super::signature::Signed;

#[derive(Debug, Clone)]
struct Files {
    blobs: Arc<LocalBlobs>,
    max_size: u64,
}

/// Serves the local store's URLs on `listener` as a task of `tasks`. On
/// their shutdown it stops accepting and ends once the requests in flight
/// have; the owner bounds that wait.
pub(crate) fn spawn(
    listener: TcpListener,
    blobs: Arc<LocalBlobs>,
    max_size: u64,
    tasks: &Tasks,
) -> JoinHandle<()> {
    let shutdown = tasks.shutdown().clone();
    tasks.spawn("local store http", async move {
        if let Err(err) = serve(listener, blobs, max_size, shutdown).await {
            tracing::error!(error = %err, "local store server failed");
        }
    })
}

async fn serve(
    listener: TcpListener,
    blobs: Arc<LocalBlobs>,
    max_size: u64,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/objects/{*key}", get(download).put(upload))
        .with_state(Files { blobs, max_size });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[derive(Deserialize)]
struct UrlQuery {
    expires: u64,
    signature: String,
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, format!("{why}\n")).into_response()
}

/// The key and query of a signed URL, if it is still valid in shape and
/// time. The signature itself is checked by the caller, which knows what
/// else it covers.
fn parse(
    blobs: &LocalBlobs,
    raw_key: &str,
    query: Result<Query<UrlQuery>, QueryRejection>,
) -> Result<(ObjectKey, UrlQuery), Box<Response>> {
    let key = ObjectKey::parse(raw_key)
        .ok_or_else(|| Box::new(refuse(StatusCode::NOT_FOUND, "no such object")))?;
    let Ok(Query(query)) = query else {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "missing or malformed signature",
        )));
    };
    if blobs.expired(query.expires) {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "request has expired",
        )));
    }
    Ok((key, query))
}

async fn upload(
    State(files): State<Files>,
    Path(raw_key): Path<String>,
    query: Result<Query<UrlQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (key, query) = match parse(&files.blobs, &raw_key, query) {
        Ok(parsed) => parsed,
        Err(response) => return *response,
    };
    let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return refuse(StatusCode::LENGTH_REQUIRED, "content-length is required");
    };
    // A value that is not visible ASCII can never match a signed type.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .unwrap_or("");
    let signed = Signed {
        method: "PUT",
        key: key.as_str(),
        expires: query.expires,
        content_type,
        content_length: Some(length),
    };
    if !files.blobs.verify(&signed, &query.signature) {
        return refuse(StatusCode::FORBIDDEN, "signature does not match");
    }
    if length > files.max_size {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload is over the size limit",
        );
    }
    match files
        .blobs
        .write(&key, content_type, length, body.into_data_stream())
        .await
    {
        Ok(()) => {
            tracing::debug!(%key, length, "local object stored");
            StatusCode::OK.into_response()
        }
        Err(WriteError::Length { .. }) => refuse(
            StatusCode::BAD_REQUEST,
            "body length differs from content-length",
        ),
        Err(WriteError::Body(reason)) => {
            tracing::debug!(%key, reason, "upload body cut off");
            refuse(StatusCode::BAD_REQUEST, "upload body was cut off")
        }
        Err(WriteError::Io(err)) => {
            tracing::error!(%key, error = %err, "writing a local object failed");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not store the object",
            )
        }
    }
}

async fn download(
    State(files): State<Files>,
    Path(raw_key): Path<String>,
    query: Result<Query<UrlQuery>, QueryRejection>,
) -> Response {
    let (key, query) = match parse(&files.blobs, &raw_key, query) {
        Ok(parsed) => parsed,
        Err(response) => return *response,
    };
    let signed = Signed {
        method: "GET",
        key: key.as_str(),
        expires: query.expires,
        content_type: "",
        content_length: None,
    };
    if !files.blobs.verify(&signed, &query.signature) {
        return refuse(StatusCode::FORBIDDEN, "signature does not match");
    }
    let (file, size, content_type) = match files.blobs.open_read(&key).await {
        Ok(Some(found)) => found,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "no such object"),
        Err(err) => {
            tracing::error!(%key, error = %err, "reading a local object failed");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not read the object",
            );
        }
    };
    let content_type = content_type
        .and_then(|t| HeaderValue::from_str(&t).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, HeaderValue::from(size)),
            // Stored bytes are never interpreted as anything but their
            // declared type.
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        Body::from_stream(ReaderStream::new(file)),
    )
        .into_response()
}
