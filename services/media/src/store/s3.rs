//! The S3 backend: SigV4 presigned URLs from `object_store`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer as _, Url};
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt as _};

use super::{Blobs, ObjectKey, SignedUrl, StoreError, StoredObject};

/// An S3-compatible bucket, addressed path-style.
#[derive(Debug)]
pub struct S3Blobs {
    s3: AmazonS3,
}

impl S3Blobs {
    /// A client for `bucket` at `endpoint`. Nothing connects until used.
    pub fn new(
        endpoint: &str,
        region: &str,
        bucket: &str,
        access_key: &str,
        secret_key: &str,
    ) -> anyhow::Result<Self> {
        let s3 = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_region(region)
            .with_bucket_name(bucket)
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"))
            .build()
            .context("configuring the S3 store")?;
        Ok(Self { s3 })
    }
}

fn path(key: &ObjectKey) -> Path {
    Path::from(key.as_str())
}

/// When S3 starts refusing `url`: its signing time plus its lifetime, read
/// back from the URL so the answer is exact to the second S3 checks.
fn expiry(url: &Url, ttl: Duration) -> DateTime<Utc> {
    let mut date = None;
    let mut expires = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "X-Amz-Date" => {
                date = NaiveDateTime::parse_from_str(&v, "%Y%m%dT%H%M%SZ")
                    .ok()
                    .map(|d| d.and_utc());
            }
            "X-Amz-Expires" => expires = v.parse::<i64>().ok(),
            _ => {}
        }
    }
    match (date, expires) {
        (Some(date), Some(secs)) => date + chrono::Duration::seconds(secs),
        _ => Utc::now() + ttl,
    }
}

#[async_trait::async_trait]
impl Blobs for S3Blobs {
    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        _size: u64,
        ttl: Duration,
    ) -> Result<SignedUrl, StoreError> {
        // `object_store` keeps `content-length` for itself, so S3 does not
        // check the length; completing the upload does.
        let value = HeaderValue::from_str(content_type).map_err(|e| {
            StoreError::ObjectStore(object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })
        })?;
        let options = SignedUrlOptions::default()
            .with_signed_header(HeaderName::from_static("content-type"), value);
        let url = self
            .s3
            .signed_url_opts(Method::PUT, &path(key), ttl, &options)
            .await?;
        Ok(SignedUrl {
            expires_at: expiry(&url, ttl),
            url: url.into(),
            headers: BTreeMap::from([("content-type".to_owned(), content_type.to_owned())]),
        })
    }

    async fn presign_get(&self, key: &ObjectKey, ttl: Duration) -> Result<SignedUrl, StoreError> {
        let url = self.s3.signed_url(Method::GET, &path(key), ttl).await?;
        Ok(SignedUrl {
            expires_at: expiry(&url, ttl),
            url: url.into(),
            headers: BTreeMap::new(),
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        // A plain `head` drops the content type; a HEAD through `get_opts`
        // keeps the response's attributes.
        match self
            .s3
            .get_opts(&path(key), GetOptions::new().with_head(true))
            .await
        {
            Ok(got) => Ok(Some(StoredObject {
                size: got.meta.size,
                content_type: got
                    .attributes
                    .get(&Attribute::ContentType)
                    .map(|v| v.to_string()),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        match self.s3.delete(&path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    async fn promote(&self, from: &ObjectKey, to: &ObjectKey) -> Result<bool, StoreError> {
        // A server-side copy; S3 has no rename.
        match self.s3.copy(&path(from), &path(to)).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(err) => return Err(err.into()),
        }
        self.delete(from).await?;
        Ok(true)
    }

    async fn check(&self) -> Result<(), StoreError> {
        match self.s3.head(&Path::from("chatmesh-probe/absent")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_read_from_the_signed_url() {
        let url = Url::parse(
            "http://s3/b/k?X-Amz-Date=20260102T030405Z&X-Amz-Expires=900&X-Amz-Signature=x",
        )
        .unwrap();
        let at = expiry(&url, Duration::from_secs(1));
        assert_eq!(at.to_rfc3339(), "2026-01-02T03:19:05+00:00");
    }

    #[tokio::test]
    async fn upload_urls_sign_the_content_type() {
        let s3 = S3Blobs::new("http://127.0.0.1:9", "us-east-1", "b", "AK", "SK").unwrap();
        let key = ObjectKey::parse("media/0a/0123456789abcdef0123456789abcdef").unwrap();
        let put = s3
            .presign_put(&key, "image/png", 10, Duration::from_secs(60))
            .await
            .unwrap();
        let url = Url::parse(&put.url).unwrap();
        assert_eq!(url.path(), "/b/media/0a/0123456789abcdef0123456789abcdef");
        let signed: BTreeMap<_, _> = url.query_pairs().collect();
        assert_eq!(signed["X-Amz-SignedHeaders"], "content-type;host");
        assert_eq!(signed["X-Amz-Expires"], "60");
        assert_eq!(put.headers["content-type"], "image/png");
        let left = put.expires_at - Utc::now();
        assert!(left <= chrono::Duration::seconds(60) && left > chrono::Duration::seconds(55));

        let get = s3.presign_get(&key, Duration::from_secs(60)).await.unwrap();
        assert!(get.url.contains("X-Amz-SignedHeaders=host&"));
        assert!(get.headers.is_empty());
    }
}
