//! Where media bytes live. Clients never send bytes through the service:
//! they upload and download with URLs a backend signs. Two backends: S3
//! (SigV4 presigned URLs) and a local directory whose URLs this service
//! serves itself; an in-memory one stands in for both in tests.

mod local;
mod local_http;
#[cfg(any(test, feature = "testsuite"))]
mod memory;
mod s3;
mod signature;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chatmesh_ids::ChannelId;
use chatmesh_server::{Probe, ProbeFuture, Tasks};
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use crate::{MediaId, StoreConfig};

pub use local::LocalBlobs;
#[cfg(any(test, feature = "testsuite"))]
pub use memory::{Download, ManualClock, MemoryBlobs};
pub use s3::S3Blobs;

/// Why the store could not do what was asked. The text is for logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The S3 client failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The local directory failed.
    #[error("local store: {0}")]
    Io(#[from] std::io::Error),
}

/// A server-generated object key, `<area>/<2 hex>/<media id>`. The middle
/// part spreads channels over 256 prefixes, which S3 partitions on. Nothing
/// a client sends ever becomes part of a key.
///
/// Clients upload to the `uploads/` twin of a media's key; completion moves
/// the verified bytes to the `media/` key, which no URL ever lets a client
/// write, so ready media cannot be swapped afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

/// Where verified media lives.
const MEDIA_AREA: &str = "media";
/// Where clients upload before completion.
const UPLOAD_AREA: &str = "uploads";

impl ObjectKey {
    /// The key for `media` uploaded to `channel`.
    pub fn for_media(channel: &ChannelId, media: &MediaId) -> Self {
        let bucket = chatmesh_db::bucket_of(channel, 256);
        Self(format!("{MEDIA_AREA}/{bucket:02x}/{media}"))
    }

    /// The key clients upload to before the media is verified.
    pub fn staging(&self) -> Self {
        let rest = self.0.split_once('/').map_or("", |(_, rest)| rest);
        Self(format!("{UPLOAD_AREA}/{rest}"))
    }

    /// Accepts only the shapes this type produces: a known area, two
    /// lowercase hex digits and a media ID, so a key is always a safe
    /// relative path with no `..`, leading `/` or other surprises.
    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.split('/');
        let ok = parts
            .next()
            .is_some_and(|area| area == MEDIA_AREA || area == UPLOAD_AREA)
            && parts.next().is_some_and(|b| {
                b.len() == 2 && b.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            })
            && parts.next().is_some_and(|id| MediaId::new(id).is_ok())
            && parts.next().is_none();
        ok.then(|| Self(raw.to_owned()))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A URL that lets its holder do one kind of request on one object until
/// it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    /// The URL.
    pub url: String,
    /// Headers the request must carry with exactly these values.
    pub headers: BTreeMap<String, String>,
    /// When the store starts refusing the URL.
    pub expires_at: DateTime<Utc>,
}

/// What the store holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Size in bytes.
    pub size: u64,
    /// The `Content-Type` it was uploaded with.
    pub content_type: Option<String>,
}

/// An object store that signs URLs. Every implementation passes the suite
/// in [`crate::testsuite::blobs`]: the in-memory and local ones in the unit
/// tests, S3 and the local one over HTTP in
/// `integration-tests/tests/media_suites.rs`.
#[async_trait::async_trait]
pub trait Blobs: Send + Sync + fmt::Debug {
    /// A URL to upload exactly `size` bytes of `content_type` to `key`. The
    /// content type is always bound to the signature; the length is where
    /// the backend can check it.
    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<SignedUrl, StoreError>;

    /// A URL to download `key`.
    async fn presign_get(&self, key: &ObjectKey, ttl: Duration) -> Result<SignedUrl, StoreError>;

    /// The stored object, or `None` when nothing was uploaded yet.
    async fn head(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError>;

    /// Removes the object; removing a missing one is not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Moves the object at `from` to `to`, replacing whatever `to` held.
    /// False when there is nothing at `from`.
    async fn promote(&self, from: &ObjectKey, to: &ObjectKey) -> Result<bool, StoreError>;

    /// Fails when the store cannot be reached.
    async fn check(&self) -> Result<(), StoreError>;
}

/// An opened store, and the local backend's URL server, a task of the
/// [`Tasks`] given to [`open`].
#[derive(Debug)]
pub struct OpenedStore {
    /// The store.
    pub blobs: Arc<dyn Blobs>,
    /// The local backend's URL server, to abort if it outlives the grace
    /// period; none for S3.
    pub server: Option<JoinHandle<()>>,
}

/// Opens the store named by `config`. The local backend binds its URL
/// listener and serves it as a task of `tasks` until their shutdown;
/// uploads over `max_size` bytes are refused there before any byte is read.
pub async fn open(
    config: &StoreConfig,
    max_size: u64,
    tasks: &Tasks,
) -> anyhow::Result<OpenedStore> {
    Ok(match config {
        StoreConfig::S3 {
            endpoint,
            region,
            bucket,
            access_key,
            secret_key,
        } => OpenedStore {
            blobs: Arc::new(S3Blobs::new(
                endpoint, region, bucket, access_key, secret_key,
            )?),
            server: None,
        },
        StoreConfig::Local {
            root,
            listen_addr,
            public_url,
            secret,
        } => {
            let listener = tokio::net::TcpListener::bind(listen_addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot bind store.listen_addr {listen_addr}: {e}"))?;
            let bound = listener.local_addr()?;
            let base = public_url
                .clone()
                .unwrap_or_else(|| format!("http://{bound}"));
            let blobs = Arc::new(LocalBlobs::open(root, &base, secret.as_bytes()).await?);
            tracing::info!(%bound, public_url = %base, root = %root.display(), "serving local media store");
            let server = local_http::spawn(listener, blobs.clone(), max_size, tasks);
            OpenedStore {
                blobs,
                server: Some(server),
            }
        }
    })
}

/// A local store at `root` whose URLs expire by `clock`, served on an
/// ephemeral loopback port as a task of `tasks`.
#[cfg(test)]
pub(crate) async fn open_local_with_clock(
    root: &std::path::Path,
    clock: Arc<dyn chatmesh_ids::Clock>,
    max_size: u64,
    tasks: &Tasks,
) -> anyhow::Result<Arc<LocalBlobs>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let blobs =
        Arc::new(LocalBlobs::open_with_clock(root, &base, b"0123456789abcdef", clock).await?);
    local_http::spawn(listener, blobs.clone(), max_size, tasks);
    Ok(blobs)
}

/// Checks that the store answers.
#[derive(Debug, Clone)]
pub struct StoreProbe {
    blobs: Arc<dyn Blobs>,
}

impl StoreProbe {
    /// A probe of `blobs`.
    pub fn new(blobs: Arc<dyn Blobs>) -> Self {
        Self { blobs }
    }
}

impl Probe for StoreProbe {
    fn name(&self) -> &str {
        "object-store"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move { self.blobs.check().await.map_err(|e| e.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;
    use tokio_util::sync::CancellationToken;

    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    /// A local store served as a task of `tasks`, and its URL server's
    /// address.
    async fn local(dir: &std::path::Path, tasks: &Tasks) -> (OpenedStore, String) {
        let config = StoreConfig::Local {
            root: dir.to_owned(),
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            public_url: None,
            secret: "0123456789abcdef".into(),
        };
        let opened = open(&config, 1000, tasks).await.unwrap();
        let probe = ObjectKey::for_media(&ChannelId::new("c").unwrap(), &MediaId::generate());
        let url = opened.blobs.presign_get(&probe, GRACE).await.unwrap();
        let addr = url::Url::parse(&url.url)
            .unwrap()
            .socket_addrs(|| None)
            .unwrap()[0];
        (opened, addr.to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn the_local_server_is_owned_and_stops_on_drain() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = Tasks::new(CancellationToken::new());
        let (_opened, addr) = local(dir.path(), &tasks).await;
        assert_eq!(tasks.len(), 1, "the server is a task of the owner");
        drop(TcpStream::connect(&addr).await.expect("serving"));

        let started = tokio::time::Instant::now();
        assert!(tasks.drain(GRACE).await);
        assert!(started.elapsed() < GRACE, "an idle server stops at once");
        assert!(tasks.is_empty());
        assert!(
            TcpStream::connect(&addr).await.is_err(),
            "no longer listening"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_upload_in_flight_holds_the_drain_for_the_grace_period_only() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = Tasks::new(CancellationToken::new());
        let (opened, addr) = local(dir.path(), &tasks).await;
        let key = ObjectKey::for_media(&ChannelId::new("c").unwrap(), &MediaId::generate());
        let put = opened
            .blobs
            .presign_put(&key, "image/png", 10, GRACE)
            .await
            .unwrap();
        let url = url::Url::parse(&put.url).unwrap();
        let mut upload = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PUT {}?{} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: image/png\r\ncontent-length: 10\r\nexpect: 100-continue\r\n\r\n",
            url.path(),
            url.query().unwrap()
        );
        upload.write_all(head.as_bytes()).await.unwrap();
        // The server asks for the body once the handler reads it, so the
        // upload is in flight from here on.
        let mut answer = [0u8; 64];
        let n = upload.read(&mut answer).await.unwrap();
        let answer = std::str::from_utf8(&answer[..n]).unwrap();
        assert!(answer.starts_with("HTTP/1.1 100 Continue"), "{answer:?}");
        upload.write_all(b"abc").await.unwrap();

        let started = tokio::time::Instant::now();
        assert!(!tasks.drain(GRACE).await, "the upload holds the server");
        assert_eq!(started.elapsed(), GRACE);
        let server = opened.server.expect("the local store has a server");
        server.abort();
        assert!(server.await.unwrap_err().is_cancelled());
        assert!(tasks.is_empty());
        assert_eq!(opened.blobs.head(&key).await.unwrap(), None);
    }

    #[test]
    fn keys_are_generated_and_parsed_strictly() {
        let channel = ChannelId::new("lobby").unwrap();
        let media = MediaId::generate();
        let key = ObjectKey::for_media(&channel, &media);
        assert_eq!(ObjectKey::parse(key.as_str()), Some(key.clone()));
        assert!(key.as_str().starts_with("media/"));
        assert!(key.as_str().ends_with(media.as_str()));
        let staging = key.staging();
        assert_eq!(ObjectKey::parse(staging.as_str()), Some(staging.clone()));
        assert_eq!(
            staging.as_str().strip_prefix("uploads/"),
            key.as_str().strip_prefix("media/")
        );
        let id = media.as_str();
        for bad in [
            String::new(),
            format!("/media/00/{id}"),
            format!("media/00/{id}/"),
            format!("media/../{id}"),
            format!("media/0/{id}"),
            format!("media/0G/{id}"),
            format!("media/0A/{id}"),
            format!("Media/00/{id}"),
            format!("media/00/{}", id.to_uppercase()),
            format!("media/00/{id}/x"),
            format!("other/00/{id}"),
            "media/00/..".into(),
            "media/00/%2e%2e".into(),
        ] {
            assert_eq!(ObjectKey::parse(&bad), None, "{bad}");
        }
    }
}
