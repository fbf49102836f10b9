//! The harnesses the blob store suite runs through: a store plus a client
//! that uses its signed URLs as a browser would. [`MemoryHarness`] serves
//! the in-memory store's URLs in process; [`HttpHarness`] sends real HTTP
//! requests, to S3 or to the local store's URL server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use crate::store::{Blobs, Download, ManualClock, MemoryBlobs};

/// A store under test and the means to use its URLs as a client does.
#[async_trait::async_trait]
pub trait BlobHarness: Send + Sync {
    /// The store.
    fn blobs(&self) -> &dyn Blobs;

    /// PUTs `body` to `url` with `headers` (lowercase names), except that
    /// `content-length` is always the body's length, as an HTTP client
    /// sets it.
    async fn put(&self, url: &str, headers: &BTreeMap<String, String>, body: Bytes) -> StatusCode;

    /// GETs `url`; the status when it is not a success.
    async fn get(&self, url: &str) -> Result<Download, StatusCode>;

    /// Returns once the store refuses URLs that expire at `at`.
    async fn pass(&self, at: DateTime<Utc>);
}

/// The in-memory store, its URLs served in process, on a manual clock.
#[derive(Debug)]
pub struct MemoryHarness {
    blobs: Arc<MemoryBlobs>,
    clock: ManualClock,
}

impl MemoryHarness {
    /// An empty store on a clock stopped at the current time.
    pub fn new() -> Self {
        let clock = ManualClock::stopped_now();
        Self {
            blobs: Arc::new(MemoryBlobs::with_clock(Arc::new(clock.clone()))),
            clock,
        }
    }
}

impl Default for MemoryHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl BlobHarness for MemoryHarness {
    fn blobs(&self) -> &dyn Blobs {
        &*self.blobs
    }

    async fn put(&self, url: &str, headers: &BTreeMap<String, String>, body: Bytes) -> StatusCode {
        self.blobs.serve_put(url, headers, body)
    }

    async fn get(&self, url: &str) -> Result<Download, StatusCode> {
        self.blobs.serve_get(url)
    }

    async fn pass(&self, at: DateTime<Utc>) {
        self.clock.set(at);
    }
}

/// A store whose URLs are served over HTTP, used with a real HTTP client.
#[derive(Debug)]
pub struct HttpHarness {
    blobs: Arc<dyn Blobs>,
    http: reqwest::Client,
    /// The store's clock when the test controls it; otherwise URLs expire
    /// by the wall clock.
    clock: Option<ManualClock>,
    /// Whatever must live as long as the harness: a store's directory, a
    /// guard that stops its server.
    keep: Vec<Box<dyn std::fmt::Debug + Send + Sync>>,
}

impl HttpHarness {
    /// `blobs`, whose URLs expire by the wall clock.
    pub fn new(blobs: Arc<dyn Blobs>) -> Self {
        Self {
            blobs,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a default HTTP client builds"),
            clock: None,
            keep: Vec::new(),
        }
    }

    /// `blobs`, whose URLs expire by `clock`.
    pub fn with_clock(blobs: Arc<dyn Blobs>, clock: ManualClock) -> Self {
        Self {
            clock: Some(clock),
            ..Self::new(blobs)
        }
    }

    /// Keeps `thing` until the harness is dropped.
    pub fn keeping(mut self, thing: impl std::fmt::Debug + Send + Sync + 'static) -> Self {
        self.keep.push(Box::new(thing));
        self
    }
}

#[async_trait::async_trait]
impl BlobHarness for HttpHarness {
    fn blobs(&self) -> &dyn Blobs {
        &*self.blobs
    }

    async fn put(&self, url: &str, headers: &BTreeMap<String, String>, body: Bytes) -> StatusCode {
        let mut request = self.http.put(url).body(body);
        for (name, value) in headers {
            if name != "content-length" {
                request = request.header(name, value);
            }
        }
        request.send().await.expect("the store answers").status()
    }

    async fn get(&self, url: &str) -> Result<Download, StatusCode> {
        let response = self.http.get(url).send().await.expect("the store answers");
        let status = response.status();
        if !status.is_success() {
            return Err(status);
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().expect("a text content type").to_owned());
        let bytes = response.bytes().await.expect("the whole body");
        Ok(Download {
            bytes,
            content_type,
        })
    }

    async fn pass(&self, at: DateTime<Utc>) {
        if let Some(clock) = &self.clock {
            clock.set(at);
            return;
        }
        // Waiting for the wall clock, which the store reads, not for another
        // task. Stores compare in whole seconds, so a second more is
        // allowed.
        let until = at + chrono::Duration::seconds(1);
        while let Ok(left) = (until - Utc::now()).to_std() {
            tokio::time::sleep(left).await;
        }
    }
}

/// The local store over HTTP on a loopback port, on a manual clock; the
/// server stops when the harness is dropped.
#[cfg(test)]
pub(crate) async fn local_harness() -> HttpHarness {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = ManualClock::stopped_now();
    let tasks = chatmesh_server::Tasks::new(tokio_util::sync::CancellationToken::new());
    let blobs =
        crate::store::open_local_with_clock(dir.path(), Arc::new(clock.clone()), u64::MAX, &tasks)
            .await
            .expect("a local store");
    HttpHarness::with_clock(blobs, clock)
        .keeping(tasks.shutdown().clone().drop_guard())
        .keeping(dir)
}
