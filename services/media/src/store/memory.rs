//! An in-memory [`Blobs`] for tests. Its URLs (`memory://blobs/objects/<key>`)
//! are served in process by [`MemoryBlobs::serve_put`] and
//! [`MemoryBlobs::serve_get`], with the refusals the real stores give: 403
//! for a bad or expired URL or another content type, 404 for a missing
//! object. Like S3 it does not check an upload's length; completion does.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use chatmesh_ids::{Clock, SystemClock};
use chrono::{DateTime, Utc};

use super::{Blobs, ObjectKey, SignedUrl, StoreError, StoredObject};

/// Where every in-memory URL starts.
const BASE_URL: &str = "memory://blobs/objects/";

/// A clock tests set by hand, shared by clones.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at the current system time.
    pub fn stopped_now() -> Self {
        Self(Arc::new(AtomicU64::new(SystemClock.now_ms())))
    }

    /// Sets the clock to `at`, which may be in the past.
    pub fn set(&self, at: DateTime<Utc>) {
        let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What one URL allows; the URL carries a random token naming it, so any
/// change to the token is a URL the store never issued.
#[derive(Debug, Clone)]
struct Grant {
    method: &'static str,
    key: ObjectKey,
    /// Unix seconds from which the URL is refused.
    expires: u64,
    /// The `Content-Type` an upload must carry; none for downloads.
    content_type: Option<String>,
}

#[derive(Debug, Clone)]
struct Object {
    bytes: Bytes,
    content_type: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    objects: HashMap<ObjectKey, Object>,
    /// Every URL issued; never pruned, as a test issues only a handful.
    grants: HashMap<String, Grant>,
}

/// Objects in memory.
pub struct MemoryBlobs {
    // A std mutex: no critical section awaits.
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    /// While set, every store operation fails as if the backend were down.
    unavailable: AtomicBool,
}

impl std::fmt::Debug for MemoryBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBlobs").finish_non_exhaustive()
    }
}

impl Default for MemoryBlobs {
    fn default() -> Self {
        Self::new()
    }
}

/// A downloaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The bytes.
    pub bytes: Bytes,
    /// The `Content-Type` answered with.
    pub content_type: Option<String>,
}

impl MemoryBlobs {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store whose URLs expire by `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::default(),
            clock,
            unavailable: AtomicBool::new(false),
        }
    }

    /// Makes every later operation fail (or succeed again), like a backend
    /// that cannot be reached.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Places an object directly, bypassing URLs: for objects a client could
    /// not produce through a signed upload.
    pub fn insert(&self, key: &ObjectKey, bytes: impl Into<Bytes>, content_type: Option<&str>) {
        self.lock().objects.insert(
            key.clone(),
            Object {
                bytes: bytes.into(),
                content_type: content_type.map(str::to_owned),
            },
        );
    }

    /// The bytes stored under `key`.
    pub fn bytes(&self, key: &ObjectKey) -> Option<Bytes> {
        self.lock().objects.get(key).map(|o| o.bytes.clone())
    }

    /// Answers a PUT of `body` to `url` with `headers` (lowercase names) as
    /// an HTTP store would.
    pub fn serve_put(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        body: impl Into<Bytes>,
    ) -> StatusCode {
        let mut state = self.lock();
        let grant = match self.grant(&state, url, "PUT") {
            Ok(grant) => grant,
            Err(status) => return status,
        };
        let sent_type = headers.get("content-type");
        if grant.content_type.as_ref() != sent_type {
            return StatusCode::FORBIDDEN;
        }
        state.objects.insert(
            grant.key,
            Object {
                bytes: body.into(),
                content_type: sent_type.cloned(),
            },
        );
        StatusCode::OK
    }

    /// Answers a GET of `url` as an HTTP store would.
    pub fn serve_get(&self, url: &str) -> Result<Download, StatusCode> {
        let state = self.lock();
        let grant = self.grant(&state, url, "GET")?;
        let object = state.objects.get(&grant.key).ok_or(StatusCode::NOT_FOUND)?;
        Ok(Download {
            bytes: object.bytes.clone(),
            content_type: object.content_type.clone(),
        })
    }

    /// The grant `url` names, if it is one this store issued for `method`
    /// on the key in its path, and has not expired.
    fn grant(&self, state: &State, url: &str, method: &str) -> Result<Grant, StatusCode> {
        let parsed = url::Url::parse(url).map_err(|_| StatusCode::BAD_REQUEST)?;
        let raw_key = url
            .strip_prefix(BASE_URL)
            .and_then(|rest| rest.split('?').next())
            .unwrap_or_default();
        let key = ObjectKey::parse(raw_key).ok_or(StatusCode::NOT_FOUND)?;
        let query: HashMap<_, _> = parsed.query_pairs().collect();
        let grant = query
            .get("signature")
            .and_then(|token| state.grants.get(token.as_ref()))
            .ok_or(StatusCode::FORBIDDEN)?;
        let expires_matches = query
            .get("expires")
            .is_some_and(|e| e.as_ref() == grant.expires.to_string());
        if !expires_matches || grant.method != method || grant.key != key {
            return Err(StatusCode::FORBIDDEN);
        }
        if self.clock.now_ms() >= grant.expires.saturating_mul(1000) {
            return Err(StatusCode::FORBIDDEN);
        }
        Ok(grant.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn available(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            Err(std::io::Error::other("memory store switched off").into())
        } else {
            Ok(())
        }
    }

    /// Issues a URL for `grant` and its expiry, in whole seconds like the
    /// real stores.
    fn issue(
        &self,
        method: &'static str,
        key: &ObjectKey,
        content_type: Option<&str>,
        ttl: Duration,
    ) -> (String, DateTime<Utc>) {
        let expires = self.clock.now_ms() / 1000 + ttl.as_secs().max(1);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let url = format!("{BASE_URL}{key}?expires={expires}&signature={token}");
        self.lock().grants.insert(
            token,
            Grant {
                method,
                key: key.clone(),
                expires,
                content_type: content_type.map(str::to_owned),
            },
        );
        let at = DateTime::from_timestamp(i64::try_from(expires).unwrap_or(i64::MAX), 0)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        (url, at)
    }
}

#[async_trait::async_trait]
impl Blobs for MemoryBlobs {
    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        _size: u64,
        ttl: Duration,
    ) -> Result<SignedUrl, StoreError> {
        self.available()?;
        let (url, expires_at) = self.issue("PUT", key, Some(content_type), ttl);
        Ok(SignedUrl {
            url,
            headers: BTreeMap::from([("content-type".to_owned(), content_type.to_owned())]),
            expires_at,
        })
    }

    async fn presign_get(&self, key: &ObjectKey, ttl: Duration) -> Result<SignedUrl, StoreError> {
        self.available()?;
        let (url, expires_at) = self.issue("GET", key, None, ttl);
        Ok(SignedUrl {
            url,
            headers: BTreeMap::new(),
            expires_at,
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        self.available()?;
        Ok(self.lock().objects.get(key).map(|o| StoredObject {
            size: o.bytes.len() as u64,
            content_type: o.content_type.clone(),
        }))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.available()?;
        self.lock().objects.remove(key);
        Ok(())
    }

    async fn promote(&self, from: &ObjectKey, to: &ObjectKey) -> Result<bool, StoreError> {
        self.available()?;
        let mut state = self.lock();
        let Some(object) = state.objects.remove(from) else {
            return Ok(false);
        };
        state.objects.insert(to.clone(), object);
        Ok(true)
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.available()
    }
}
