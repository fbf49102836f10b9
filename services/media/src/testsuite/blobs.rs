//! The [`Blobs`] contract. A store is tested through a [`BlobHarness`]: the
//! store, plus a client that uses its signed URLs the way a browser would
//! and a way to let its URLs expire. [`MemoryHarness`] serves the in-memory
//! store's URLs in process; [`HttpHarness`] sends real HTTP requests, to S3
//! or to the local store's URL server.
//!
//! What every store must do: a signed URL works only for its method, key
//! and (for uploads) content type, and only until it expires; a changed
//! signature is refused; objects move, are replaced and are deleted as
//! [`Blobs`] says. What a store may choose: whether an upload of another
//! length than signed is refused at once or stored as sent, for completion
//! to find.

use std::collections::BTreeMap;

use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use chrono::Utc;

use crate::MediaId;
use crate::store::{Download, ObjectKey, SignedUrl, StoredObject};

#[cfg(test)]
pub(crate) use super::harness::local_harness;
pub use super::harness::{BlobHarness, HttpHarness, MemoryHarness};

/// Generates one `#[tokio::test]` per suite test, each on a fresh
/// [`BlobHarness`] that `$make` evaluates to (inside the async test, so it
/// may `.await`).
#[macro_export]
macro_rules! blob_store_suite {
    ($make:expr) => {
        $crate::blob_store_suite!(@tests $make;
            an_upload_url_stores_what_a_download_url_returns,
            nothing_is_stored_under_a_fresh_key,
            an_upload_url_binds_its_content_type,
            a_tampered_signature_is_refused,
            a_url_is_good_for_its_own_key_and_method_only,
            expired_urls_are_refused,
            an_upload_url_can_be_used_again_until_it_expires,
            a_body_of_another_length_is_refused_or_stored_as_sent,
            promote_moves_the_object_and_its_content_type,
            promote_replaces_what_the_target_held,
            delete_removes_the_object_and_is_idempotent,
            the_store_answers_its_probe,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let harness = $make;
                $crate::testsuite::blobs::$name(&harness).await;
            }
        )*
    };
}

/// How long the URLs that are not about expiry stay valid.
const TTL: Duration = Duration::from_secs(600);
/// The shortest lifetime a URL can have.
const SHORT: Duration = Duration::from_secs(1);

/// The media key of a fresh media in a fresh channel.
fn fresh_key() -> ObjectKey {
    ObjectKey::for_media(&super::unique_channel("blobs"), &MediaId::generate())
}

/// Deterministic bytes that differ with `seed` and do not repeat.
fn sample(len: usize, seed: u32) -> Bytes {
    let mut x: u32 = 0x9e37_79b9 ^ seed.wrapping_mul(0x85eb_ca6b);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn put_url<H: BlobHarness>(
    h: &H,
    key: &ObjectKey,
    content_type: &str,
    len: usize,
) -> SignedUrl {
    h.blobs()
        .presign_put(key, content_type, len as u64, TTL)
        .await
        .expect("presign PUT")
}

async fn get_url<H: BlobHarness>(h: &H, key: &ObjectKey, ttl: Duration) -> SignedUrl {
    h.blobs().presign_get(key, ttl).await.expect("presign GET")
}

/// Uploads `bytes` of `content_type` to `key` through a fresh URL.
async fn upload<H: BlobHarness>(h: &H, key: &ObjectKey, content_type: &str, bytes: &Bytes) {
    let url = put_url(h, key, content_type, bytes.len()).await;
    let status = h.put(&url.url, &url.headers, bytes.clone()).await;
    assert_eq!(status, StatusCode::OK, "upload to {key}");
}

/// Downloads `key` through a fresh URL.
async fn download<H: BlobHarness>(h: &H, key: &ObjectKey) -> Result<Download, StatusCode> {
    let url = get_url(h, key, TTL).await;
    h.get(&url.url).await
}

async fn head<H: BlobHarness>(h: &H, key: &ObjectKey) -> Option<StoredObject> {
    h.blobs().head(key).await.expect("head")
}

fn stored(len: usize, content_type: &str) -> Option<StoredObject> {
    Some(StoredObject {
        size: len as u64,
        content_type: Some(content_type.to_owned()),
    })
}

/// `headers` with the content type replaced, or dropped for `None`.
fn with_type(
    headers: &BTreeMap<String, String>,
    content_type: Option<&str>,
) -> BTreeMap<String, String> {
    let mut headers = headers.clone();
    match content_type {
        Some(ct) => headers.insert("content-type".into(), ct.into()),
        None => headers.remove("content-type"),
    };
    headers
}

/// `url` with one character of its signature changed; panics if it has
/// no signature to change.
pub fn tampered(url: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("a URL");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k.to_ascii_lowercase().ends_with("signature") {
                let mut chars: Vec<char> = v.chars().collect();
                chars[0] = if chars[0] == '0' { '1' } else { '0' };
                chars.into_iter().collect()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    let forged = String::from(parsed);
    assert_ne!(forged, url, "no signature in {url}");
    forged
}

/// `url` with `from`'s key swapped for `to`'s, signature untouched.
fn moved(url: &str, from: &ObjectKey, to: &ObjectKey) -> String {
    assert_eq!(
        url.matches(from.as_str()).count(),
        1,
        "{from} once in {url}"
    );
    url.replace(from.as_str(), to.as_str())
}

async fn clean_up<H: BlobHarness>(h: &H, keys: &[&ObjectKey]) {
    for key in keys {
        h.blobs().delete(key).await.expect("delete");
    }
}

/// A signed upload is stored with its size and type, and a signed download
/// returns it; both URLs last as long as asked, never longer.
pub async fn an_upload_url_stores_what_a_download_url_returns<H: BlobHarness>(h: &H) {
    let key = fresh_key().staging();
    let bytes = sample(100_003, 1);
    let before = Utc::now();
    let put = put_url(h, &key, "image/png", bytes.len()).await;
    let get = get_url(h, &key, TTL).await;
    let after = Utc::now();
    assert_eq!(
        put.headers.get("content-type").map(String::as_str),
        Some("image/png")
    );
    for url in [&put, &get] {
        // Stores sign in whole seconds: the URL may lose the part of the
        // second it was signed in, and never gains time.
        let ttl = chrono::Duration::from_std(TTL).expect("a short TTL");
        assert!(
            url.expires_at <= after + ttl,
            "{} is too late",
            url.expires_at
        );
        assert!(
            url.expires_at > before + ttl - chrono::Duration::seconds(2),
            "{} is too early",
            url.expires_at
        );
    }

    assert_eq!(
        h.put(&put.url, &put.headers, bytes.clone()).await,
        StatusCode::OK
    );
    assert_eq!(head(h, &key).await, stored(bytes.len(), "image/png"));
    let got = h.get(&get.url).await.expect("download");
    assert_eq!(got.bytes, bytes);
    assert_eq!(got.content_type.as_deref(), Some("image/png"));
    clean_up(h, &[&key]).await;
}

/// A key nothing was uploaded to has no object, a download finds nothing
/// and deleting it succeeds.
pub async fn nothing_is_stored_under_a_fresh_key<H: BlobHarness>(h: &H) {
    let key = fresh_key();
    assert_eq!(head(h, &key).await, None);
    assert_eq!(download(h, &key).await, Err(StatusCode::NOT_FOUND));
    clean_up(h, &[&key]).await;
    assert_eq!(head(h, &key).await, None);
}

/// An upload URL refuses any other content type, the signed one with
/// parameters, and none at all.
pub async fn an_upload_url_binds_its_content_type<H: BlobHarness>(h: &H) {
    let key = fresh_key().staging();
    let bytes = sample(2048, 2);
    let put = put_url(h, &key, "image/png", bytes.len()).await;
    for other in [
        Some("image/jpeg"),
        Some("image/png; charset=utf-8"),
        Some("text/html"),
        None,
    ] {
        let headers = with_type(&put.headers, other);
        let status = h.put(&put.url, &headers, bytes.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "content type {other:?}");
        assert_eq!(head(h, &key).await, None, "content type {other:?} stored");
    }
    assert_eq!(
        h.put(&put.url, &put.headers, bytes.clone()).await,
        StatusCode::OK
    );
    assert_eq!(head(h, &key).await, stored(bytes.len(), "image/png"));
    clean_up(h, &[&key]).await;
}

/// A URL whose signature was changed is refused, for uploads and downloads.
pub async fn a_tampered_signature_is_refused<H: BlobHarness>(h: &H) {
    let key = fresh_key().staging();
    let bytes = sample(512, 3);
    let put = put_url(h, &key, "text/plain", bytes.len()).await;
    let forged = tampered(&put.url);
    assert_eq!(
        h.put(&forged, &put.headers, bytes.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(head(h, &key).await, None);

    assert_eq!(
        h.put(&put.url, &put.headers, bytes.clone()).await,
        StatusCode::OK
    );
    let get = get_url(h, &key, TTL).await;
    assert_eq!(h.get(&tampered(&get.url)).await, Err(StatusCode::FORBIDDEN));
    assert_eq!(h.get(&get.url).await.expect("download").bytes, bytes);
    clean_up(h, &[&key]).await;
}

/// A URL signed for one key does not reach another, and a download URL
/// does not upload nor an upload URL download.
pub async fn a_url_is_good_for_its_own_key_and_method_only<H: BlobHarness>(h: &H) {
    let (a, b) = (fresh_key().staging(), fresh_key().staging());
    let (bytes_a, bytes_b) = (sample(700, 4), sample(700, 5));
    upload(h, &b, "image/png", &bytes_b).await;

    // An upload URL for `a` pointed at `b`.
    let put_a = put_url(h, &a, "image/png", bytes_a.len()).await;
    let status = h
        .put(&moved(&put_a.url, &a, &b), &put_a.headers, bytes_a.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "PUT URL of another key");
    assert_eq!(download(h, &b).await.expect("b is intact").bytes, bytes_b);

    assert_eq!(
        h.put(&put_a.url, &put_a.headers, bytes_a.clone()).await,
        StatusCode::OK
    );
    let get_a = get_url(h, &a, TTL).await;
    assert_eq!(
        h.get(&moved(&get_a.url, &a, &b)).await,
        Err(StatusCode::FORBIDDEN),
        "GET URL of another key"
    );
    let headers = with_type(&get_a.headers, Some("image/png"));
    assert_eq!(
        h.put(&get_a.url, &headers, bytes_b.clone()).await,
        StatusCode::FORBIDDEN,
        "a GET URL used to PUT"
    );
    assert_eq!(
        h.get(&put_a.url).await,
        Err(StatusCode::FORBIDDEN),
        "a PUT URL used to GET"
    );
    assert_eq!(h.get(&get_a.url).await.expect("download").bytes, bytes_a);
    clean_up(h, &[&a, &b]).await;
}

/// Once expired, an upload URL stores nothing and a download URL returns
/// nothing; a fresh URL for the same object still works.
pub async fn expired_urls_are_refused<H: BlobHarness>(h: &H) {
    let key = fresh_key().staging();
    let bytes = sample(1000, 6);
    upload(h, &key, "text/plain", &bytes).await;
    let put = h
        .blobs()
        .presign_put(&key, "text/plain", bytes.len() as u64, SHORT)
        .await
        .expect("presign PUT");
    let get = get_url(h, &key, SHORT).await;
    h.pass(put.expires_at.max(get.expires_at)).await;

    let other = sample(bytes.len(), 7);
    assert_eq!(
        h.put(&put.url, &put.headers, other).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(h.get(&get.url).await, Err(StatusCode::FORBIDDEN));
    assert_eq!(download(h, &key).await.expect("a fresh URL").bytes, bytes);
    clean_up(h, &[&key]).await;
}

/// An upload URL may be used again while it lasts; the last upload wins.
pub async fn an_upload_url_can_be_used_again_until_it_expires<H: BlobHarness>(h: &H) {
    let key = fresh_key().staging();
    let (first, second) = (sample(3000, 8), sample(3000, 9));
    let put = put_url(h, &key, "application/pdf", first.len()).await;
    assert_eq!(h.put(&put.url, &put.headers, first).await, StatusCode::OK);
    assert_eq!(
        h.put(&put.url, &put.headers, second.clone()).await,
        StatusCode::OK
    );
    assert_eq!(download(h, &key).await.expect("download").bytes, second);
    clean_up(h, &[&key]).await;
}

/// A body longer or shorter than signed for is refused with nothing
/// stored, or stored as sent so completion sees the real size; never
/// stored as anything else.
pub async fn a_body_of_another_length_is_refused_or_stored_as_sent<H: BlobHarness>(h: &H) {
    let key = fresh_key().staging();
    let put = put_url(h, &key, "image/gif", 100).await;
    for len in [101, 99] {
        let body = sample(len, 10);
        let status = h.put(&put.url, &put.headers, body.clone()).await;
        match head(h, &key).await {
            None => assert!(
                status.is_client_error(),
                "{len} bytes answered {status} but nothing is stored"
            ),
            Some(object) => {
                assert_eq!(status, StatusCode::OK, "{len} bytes");
                assert_eq!(object, stored(len, "image/gif").expect("some"));
                assert_eq!(download(h, &key).await.expect("download").bytes, body);
                clean_up(h, &[&key]).await;
            }
        }
    }
    clean_up(h, &[&key]).await;
}

/// Promotion moves the bytes and their type to the new key and leaves
/// nothing behind; promoting again, with nothing left, changes nothing.
pub async fn promote_moves_the_object_and_its_content_type<H: BlobHarness>(h: &H) {
    let key = fresh_key();
    let staging = key.staging();
    let bytes = sample(4096, 11);
    assert!(
        !h.blobs().promote(&staging, &key).await.expect("promote"),
        "nothing to move"
    );
    assert_eq!(head(h, &key).await, None);

    upload(h, &staging, "video/mp4", &bytes).await;
    assert!(h.blobs().promote(&staging, &key).await.expect("promote"));
    assert_eq!(head(h, &staging).await, None);
    assert_eq!(head(h, &key).await, stored(bytes.len(), "video/mp4"));
    let got = download(h, &key).await.expect("download");
    assert_eq!(got.bytes, bytes);
    assert_eq!(got.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(download(h, &staging).await, Err(StatusCode::NOT_FOUND));

    assert!(!h.blobs().promote(&staging, &key).await.expect("promote"));
    assert_eq!(head(h, &key).await, stored(bytes.len(), "video/mp4"));
    clean_up(h, &[&key, &staging]).await;
}

/// Promotion replaces whatever the target held, bytes and type.
pub async fn promote_replaces_what_the_target_held<H: BlobHarness>(h: &H) {
    let key = fresh_key();
    let staging = key.staging();
    let (old, new) = (sample(800, 12), sample(1200, 13));
    upload(h, &staging, "image/png", &old).await;
    assert!(h.blobs().promote(&staging, &key).await.expect("promote"));
    upload(h, &staging, "text/plain", &new).await;
    assert!(h.blobs().promote(&staging, &key).await.expect("promote"));
    assert_eq!(head(h, &key).await, stored(new.len(), "text/plain"));
    assert_eq!(download(h, &key).await.expect("download").bytes, new);
    assert_eq!(head(h, &staging).await, None);
    clean_up(h, &[&key]).await;
}

/// Deleting removes the object; deleting it again succeeds.
pub async fn delete_removes_the_object_and_is_idempotent<H: BlobHarness>(h: &H) {
    let key = fresh_key().staging();
    let bytes = sample(256, 14);
    upload(h, &key, "audio/mpeg", &bytes).await;
    let get = get_url(h, &key, TTL).await;
    h.blobs().delete(&key).await.expect("delete");
    assert_eq!(head(h, &key).await, None);
    assert_eq!(h.get(&get.url).await, Err(StatusCode::NOT_FOUND));
    h.blobs().delete(&key).await.expect("delete again");
    assert_eq!(head(h, &key).await, None);
}

/// The readiness probe passes on a working store.
pub async fn the_store_answers_its_probe<H: BlobHarness>(h: &H) {
    h.blobs().check().await.expect("check");
}

#[cfg(test)]
mod memory_suite {
    crate::blob_store_suite!(super::MemoryHarness::new());
}

#[cfg(test)]
mod local_suite {
    crate::blob_store_suite!(super::local_harness().await);
}
