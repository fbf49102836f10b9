//! The local backend: objects as files under one root, behind URLs signed
//! with HMAC-SHA256 and served by this service (see `local_http`).
//!
//! Layout: `<root>/<key>` holds an object's bytes and `<root>/<key>.type`
//! its content type; uploads are written under `<root>/.partial` first and
//! renamed into place, so a reader never sees half an object. Paths come
//! only from parsed [`ObjectKey`]s.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use chatmesh_ids::{Clock, SystemClock};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt as _};
use tokio::io::AsyncWriteExt as _;

use super::signature::{Signed, UrlSigner};
use super::{Blobs, ObjectKey, SignedUrl, StoreError, StoredObject};

/// Where in-progress uploads are written; on the same file system as the
/// objects so the final rename is atomic.
const PARTIAL_DIR: &str = ".partial";

/// Objects in a local directory.
pub struct LocalBlobs {
    root: PathBuf,
    base_url: String,
    signer: UrlSigner,
    /// Sets and checks URL expiry; a manual clock in tests.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for LocalBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBlobs")
            .field("root", &self.root)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Why an upload body was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The body was longer or shorter than its signed length.
    #[error("body is not the {expected} bytes signed for")]
    Length {
        /// The signed length.
        expected: u64,
    },
    /// The client's connection failed mid-body.
    #[error("reading the body failed: {0}")]
    Body(String),
    /// The disk failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl LocalBlobs {
    /// Opens (creating if needed) the store at `root`, whose URLs start with
    /// `base_url`. Leftovers of uploads cut off by a crash are removed.
    pub async fn open(root: &Path, base_url: &str, secret: &[u8]) -> anyhow::Result<Self> {
        Self::open_with_clock(root, base_url, secret, Arc::new(SystemClock)).await
    }

    pub(crate) async fn open_with_clock(
        root: &Path,
        base_url: &str,
        secret: &[u8],
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(root)
            .await
            .with_context(|| format!("cannot create store.root {}", root.display()))?;
        let root = tokio::fs::canonicalize(root)
            .await
            .with_context(|| format!("cannot open store.root {}", root.display()))?;
        let partial = root.join(PARTIAL_DIR);
        match tokio::fs::remove_dir_all(&partial).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("cannot clear partial uploads"),
        }
        tokio::fs::create_dir_all(&partial)
            .await
            .with_context(|| format!("cannot create {}", partial.display()))?;
        Ok(Self {
            root,
            base_url: base_url.trim_end_matches('/').to_owned(),
            signer: UrlSigner::new(secret),
            clock,
        })
    }

    fn data_path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn type_path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(format!("{key}.type"))
    }

    fn partial_path(&self) -> PathBuf {
        self.root
            .join(PARTIAL_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn signed_url(&self, signed: &Signed<'_>) -> String {
        format!(
            "{}/objects/{}?expires={}&signature={}",
            self.base_url,
            signed.key,
            signed.expires,
            self.signer.sign(signed)
        )
    }

    /// True if `signature` covers `signed`.
    pub(crate) fn verify(&self, signed: &Signed<'_>, signature: &str) -> bool {
        self.signer.verify(signed, signature)
    }

    /// Stores `body` as `key` if it is exactly `length` bytes. Nothing is
    /// visible under `key` until every byte is on disk.
    pub(crate) async fn write<S, E>(
        &self,
        key: &ObjectKey,
        content_type: &str,
        length: u64,
        body: S,
    ) -> Result<(), WriteError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let data_tmp = self.partial_path();
        let result = self.write_partial(&data_tmp, length, body).await;
        if let Err(err) = result {
            let _ = tokio::fs::remove_file(&data_tmp).await;
            return Err(err);
        }
        let type_tmp = self.partial_path();
        let placed = async {
            let target = self.data_path(key);
            if let Some(dir) = target.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::write(&type_tmp, content_type).await?;
            tokio::fs::rename(&type_tmp, self.type_path(key)).await?;
            tokio::fs::rename(&data_tmp, &target).await
        }
        .await;
        if let Err(err) = placed {
            let _ = tokio::fs::remove_file(&type_tmp).await;
            let _ = tokio::fs::remove_file(&data_tmp).await;
            return Err(err.into());
        }
        Ok(())
    }

    async fn write_partial<S, E>(&self, path: &Path, length: u64, body: S) -> Result<(), WriteError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let mut file = tokio::fs::File::create(path).await?;
        let mut written = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| WriteError::Body(e.to_string()))?;
            written += chunk.len() as u64;
            if written > length {
                return Err(WriteError::Length { expected: length });
            }
            file.write_all(&chunk).await?;
        }
        if written != length {
            return Err(WriteError::Length { expected: length });
        }
        file.sync_all().await?;
        Ok(())
    }

    /// The object's file, size and content type, if it exists.
    pub(crate) async fn open_read(
        &self,
        key: &ObjectKey,
    ) -> std::io::Result<Option<(tokio::fs::File, u64, Option<String>)>> {
        let file = match tokio::fs::File::open(self.data_path(key)).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata().await?.len();
        let content_type = self.content_type(key).await?;
        Ok(Some((file, size, content_type)))
    }

    async fn content_type(&self, key: &ObjectKey) -> std::io::Result<Option<String>> {
        match tokio::fs::read_to_string(self.type_path(key)).await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Unix seconds at which a URL made now with `ttl` expires, and that
    /// instant. Whole seconds, like SigV4.
    fn expiry(&self, ttl: Duration) -> (u64, DateTime<Utc>) {
        let expires = self.clock.now_ms() / 1000 + ttl.as_secs().max(1);
        let at = DateTime::from_timestamp(i64::try_from(expires).unwrap_or(i64::MAX), 0)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        (expires, at)
    }

    /// True once a URL expiring at `expires` (Unix seconds) must be refused.
    pub(crate) fn expired(&self, expires: u64) -> bool {
        self.clock.now_ms() >= expires.saturating_mul(1000)
    }
}

async fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[async_trait::async_trait]
impl Blobs for LocalBlobs {
    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<SignedUrl, StoreError> {
        let (expires, expires_at) = self.expiry(ttl);
        let url = self.signed_url(&Signed {
            method: "PUT",
            key: key.as_str(),
            expires,
            content_type,
            content_length: Some(size),
        });
        Ok(SignedUrl {
            url,
            headers: BTreeMap::from([
                ("content-type".to_owned(), content_type.to_owned()),
                ("content-length".to_owned(), size.to_string()),
            ]),
            expires_at,
        })
    }

    async fn presign_get(&self, key: &ObjectKey, ttl: Duration) -> Result<SignedUrl, StoreError> {
        let (expires, expires_at) = self.expiry(ttl);
        let url = self.signed_url(&Signed {
            method: "GET",
            key: key.as_str(),
            expires,
            content_type: "",
            content_length: None,
        });
        Ok(SignedUrl {
            url,
            headers: BTreeMap::new(),
            expires_at,
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        let size = match tokio::fs::metadata(self.data_path(key)).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(StoredObject {
            size,
            content_type: self.content_type(key).await?,
        }))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        remove_if_present(&self.data_path(key)).await?;
        remove_if_present(&self.type_path(key)).await?;
        Ok(())
    }

    async fn promote(&self, from: &ObjectKey, to: &ObjectKey) -> Result<bool, StoreError> {
        let target = self.data_path(to);
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // The type first: once the data is in place, its type is too.
        match tokio::fs::rename(self.type_path(from), self.type_path(to)).await {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        match tokio::fs::rename(self.data_path(from), &target).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        let meta = tokio::fs::metadata(self.root.join(PARTIAL_DIR)).await?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(std::io::Error::other("the partial upload directory is not a directory").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ManualClock;

    fn key() -> ObjectKey {
        ObjectKey::parse("media/0a/0123456789abcdef0123456789abcdef").unwrap()
    }

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + use<> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    async fn store() -> (tempfile::TempDir, LocalBlobs) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path(), "http://m/", b"0123456789abcdef")
            .await
            .unwrap();
        (dir, blobs)
    }

    #[tokio::test]
    async fn writes_land_atomically_under_the_key() {
        let (dir, blobs) = store().await;
        assert_eq!(blobs.head(&key()).await.unwrap(), None);
        blobs
            .write(&key(), "image/png", 6, body(&[b"abc", b"def"]))
            .await
            .unwrap();
        assert_eq!(
            blobs.head(&key()).await.unwrap(),
            Some(StoredObject {
                size: 6,
                content_type: Some("image/png".into())
            })
        );
        let on_disk = dir.path().join(key().as_str());
        assert_eq!(std::fs::read(on_disk).unwrap(), b"abcdef");
        let partial = std::fs::read_dir(dir.path().join(PARTIAL_DIR)).unwrap();
        assert_eq!(partial.count(), 0, "no temporary file is left behind");

        let moved = key().staging();
        assert!(blobs.promote(&key(), &moved).await.unwrap());
        assert!(!blobs.promote(&key(), &moved).await.unwrap());
        assert_eq!(blobs.head(&key()).await.unwrap(), None);
        assert_eq!(blobs.head(&moved).await.unwrap().unwrap().size, 6);

        blobs.delete(&moved).await.unwrap();
        assert_eq!(blobs.head(&moved).await.unwrap(), None);
        blobs.delete(&moved).await.unwrap();
    }

    #[tokio::test]
    async fn bodies_of_the_wrong_length_are_dropped() {
        let (dir, blobs) = store().await;
        for (length, parts) in [(5, &[&b"abc"[..], b"def"][..]), (7, &[b"abc", b"def"])] {
            let err = blobs
                .write(&key(), "image/png", length, body(parts))
                .await
                .unwrap_err();
            assert!(matches!(err, WriteError::Length { .. }), "{err}");
        }
        assert_eq!(blobs.head(&key()).await.unwrap(), None);
        let partial = std::fs::read_dir(dir.path().join(PARTIAL_DIR)).unwrap();
        assert_eq!(partial.count(), 0);
    }

    #[tokio::test]
    async fn urls_carry_only_expiry_and_signature() {
        let (_dir, blobs) = store().await;
        let put = blobs
            .presign_put(&key(), "image/png", 6, Duration::from_secs(60))
            .await
            .unwrap();
        let url = url::Url::parse(&put.url).unwrap();
        assert_eq!(url.path(), format!("/objects/{}", key()));
        let names: Vec<_> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        assert_eq!(names, ["expires", "signature"]);
        assert_eq!(put.headers["content-type"], "image/png");
        assert_eq!(put.headers["content-length"], "6");
        let expires: u64 = url.query_pairs().next().unwrap().1.parse().unwrap();
        assert_eq!(put.expires_at.timestamp() as u64, expires);
    }

    #[tokio::test]
    async fn urls_expire_exactly_after_their_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::stopped_now();
        let set = |ms: i64| clock.set(DateTime::from_timestamp_millis(ms).unwrap());
        set(1_800_000_000_250);
        let blobs = LocalBlobs::open_with_clock(
            dir.path(),
            "http://m",
            b"0123456789abcdef",
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        let get = blobs
            .presign_get(&key(), Duration::from_secs(60))
            .await
            .unwrap();
        let expires = get.expires_at.timestamp() as u64;
        // Signed in second 1_800_000_000, valid for 60 whole seconds.
        assert_eq!(expires, 1_800_000_060);
        set(1_800_000_059_999);
        assert!(!blobs.expired(expires));
        set(1_800_000_060_000);
        assert!(blobs.expired(expires));
    }
}
