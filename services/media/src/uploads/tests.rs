//! The upload rules on the in-memory catalog and blob store: no network.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use chatmesh_error::ErrorKind;
use chatmesh_ids::Clock as _;

use super::*;
use crate::catalog::MemoryCatalog;
use crate::store::{ManualClock, MemoryBlobs};

const TTL: Duration = Duration::from_secs(60);

/// Alice and Bob share `room`; Carol is only in `other`.
struct World {
    uploads: Uploads,
    catalog: Arc<MemoryCatalog>,
    blobs: Arc<MemoryBlobs>,
    clock: ManualClock,
    room: ChannelId,
    alice: UserId,
    bob: UserId,
    carol: UserId,
}

fn world() -> World {
    let clock = ManualClock::stopped_now();
    let catalog = Arc::new(MemoryCatalog::new());
    let blobs = Arc::new(MemoryBlobs::with_clock(Arc::new(clock.clone())));
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|u| UserId::new(u).unwrap());
    let room = ChannelId::new("room").unwrap();
    catalog.add_channel(&room, &[&alice, &bob]);
    catalog.add_channel(&ChannelId::new("other").unwrap(), &[&carol]);
    let limits = MediaLimits {
        max_size: 1000,
        url_ttl: TTL,
        ..MediaLimits::default()
    };
    World {
        uploads: Uploads::new(catalog.clone(), blobs.clone(), limits),
        catalog,
        blobs,
        clock,
        room,
        alice,
        bob,
        carol,
    }
}

impl World {
    fn request(&self, user: &UserId, content_type: &str, size: u64) -> NewUpload {
        NewUpload {
            channel: self.room.clone(),
            user: user.clone(),
            filename: "photo.png".into(),
            content_type: content_type.into(),
            size,
        }
    }

    /// Alice's upload of `size` bytes of PNG, created.
    async fn created(&self, size: u64) -> Upload {
        let request = self.request(&self.alice, "image/png", size);
        self.uploads.create(request).await.expect("create")
    }

    /// PUTs `bytes` through `upload`'s URL with the headers it was signed for.
    fn put(&self, upload: &Upload, bytes: &Bytes) -> StatusCode {
        self.blobs
            .serve_put(&upload.url.url, &upload.url.headers, bytes.clone())
    }

    /// Alice's upload of `bytes`, PUT and completed.
    async fn ready(&self, bytes: &Bytes) -> Media {
        let upload = self.created(bytes.len() as u64).await;
        assert_eq!(self.put(&upload, bytes), StatusCode::OK);
        self.uploads
            .complete(&upload.media.id, &self.alice)
            .await
            .expect("complete")
    }

    async fn stored(&self, id: &MediaId) -> Media {
        self.catalog.get(id).await.unwrap().expect("recorded")
    }
}

fn bytes(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

#[tokio::test]
async fn create_refuses_sizes_outside_the_limits() {
    let w = world();
    let empty = w.uploads.create(w.request(&w.alice, "image/png", 0)).await;
    assert!(
        matches!(
            empty,
            Err(MediaError::InvalidArgument { field: "size", .. })
        ),
        "{empty:?}"
    );
    let big = w
        .uploads
        .create(w.request(&w.alice, "image/png", 1001))
        .await;
    assert!(
        matches!(
            big,
            Err(MediaError::TooLarge {
                size: 1001,
                limit: 1000
            })
        ),
        "{big:?}"
    );
    assert!(
        w.uploads
            .create(w.request(&w.alice, "image/png", 1000))
            .await
            .is_ok()
    );
    assert_eq!(w.catalog.media_count(), 1);
}

#[tokio::test]
async fn create_refuses_types_off_the_list_or_with_parameters() {
    let w = world();
    for refused in ["text/html", "image/svg+xml"] {
        let err = w.uploads.create(w.request(&w.alice, refused, 10)).await;
        assert!(
            matches!(err, Err(MediaError::TypeNotAllowed { .. })),
            "{err:?}"
        );
    }
    let err = w
        .uploads
        .create(w.request(&w.alice, "image/png; charset=utf-8", 10))
        .await;
    assert!(
        matches!(
            err,
            Err(MediaError::InvalidArgument {
                field: "content_type",
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(w.catalog.media_count(), 0);

    // Types are exact and lowercase, as documented: `IMAGE/PNG` is refused
    // rather than quietly rewritten, and the lowercase form is signed as is.
    let shouted = w.uploads.create(w.request(&w.alice, "IMAGE/PNG", 10)).await;
    assert!(
        matches!(
            shouted,
            Err(MediaError::InvalidArgument {
                field: "content_type",
                ..
            })
        ),
        "{shouted:?}"
    );
    let upload = w
        .uploads
        .create(w.request(&w.alice, "image/png", 10))
        .await
        .unwrap();
    assert_eq!(upload.media.content_type, "image/png");
    assert_eq!(upload.url.headers["content-type"], "image/png");
}

#[tokio::test]
async fn create_refuses_outsiders_and_unknown_channels() {
    let w = world();
    let outsider = w.uploads.create(w.request(&w.carol, "image/png", 10)).await;
    assert!(
        matches!(outsider, Err(MediaError::NotMember)),
        "{outsider:?}"
    );
    let nowhere = NewUpload {
        channel: ChannelId::new("nowhere").unwrap(),
        ..w.request(&w.alice, "image/png", 10)
    };
    let unknown = w.uploads.create(nowhere).await;
    assert!(
        matches!(unknown, Err(MediaError::ChannelNotFound)),
        "{unknown:?}"
    );
    assert_eq!(w.catalog.media_count(), 0);
}

#[tokio::test]
async fn create_records_a_pending_media_and_signs_an_upload_to_its_staging_key() {
    let w = world();
    let request = NewUpload {
        filename: "../../etc/cat.png".into(),
        ..w.request(&w.alice, "image/png", 10)
    };
    let upload = w.uploads.create(request).await.unwrap();
    let media = &upload.media;
    assert_eq!(media.state, MediaState::Pending);
    assert_eq!((media.size, media.filename.as_str()), (10, "cat.png"));
    assert_eq!((&media.channel, &media.uploader), (&w.room, &w.alice));
    assert_eq!(media.key, ObjectKey::for_media(&w.room, &media.id));
    assert_eq!(&w.stored(&media.id).await, media);
    assert!(
        upload.url.url.contains(media.key.staging().as_str()),
        "uploads go to the staging key: {}",
        upload.url.url
    );
    let lifetime = upload.url.expires_at.timestamp_millis() - w.clock.now_ms() as i64;
    assert!(lifetime > 59_000 && lifetime <= 60_000, "{lifetime} ms");
}

#[tokio::test]
async fn completing_before_the_upload_is_refused_and_changes_nothing() {
    let w = world();
    let upload = w.created(10).await;
    let early = w.uploads.complete(&upload.media.id, &w.alice).await;
    assert!(matches!(early, Err(MediaError::NotUploaded)), "{early:?}");
    assert_eq!(w.stored(&upload.media.id).await.state, MediaState::Pending);
}

#[tokio::test]
async fn completing_after_the_put_moves_the_bytes_and_marks_ready() {
    let w = world();
    let data = bytes(300);
    let upload = w.created(300).await;
    assert_eq!(w.put(&upload, &data), StatusCode::OK);
    let media = w
        .uploads
        .complete(&upload.media.id, &w.alice)
        .await
        .unwrap();
    assert_eq!(media.state, MediaState::Ready);
    assert_eq!(media, w.stored(&media.id).await);
    assert_eq!(w.blobs.bytes(&media.key), Some(data));
    assert_eq!(w.blobs.head(&media.key.staging()).await.unwrap(), None);
}

#[tokio::test]
async fn a_completed_upload_cannot_be_swapped() {
    let w = world();
    let data = bytes(300);
    let upload = w.created(300).await;
    assert_eq!(w.put(&upload, &data), StatusCode::OK);
    let media = w
        .uploads
        .complete(&upload.media.id, &w.alice)
        .await
        .unwrap();

    // The upload URL still works, but what it writes is never promoted.
    let swapped: Bytes = vec![0u8; 300].into();
    assert_eq!(w.put(&upload, &swapped), StatusCode::OK);
    let again = w.uploads.complete(&media.id, &w.alice).await.unwrap();
    assert_eq!(again, media);
    assert_eq!(w.blobs.bytes(&media.key), Some(data));
}

#[tokio::test]
async fn a_size_mismatch_discards_the_object_and_a_retry_succeeds() {
    let w = world();
    let upload = w.created(100).await;
    assert_eq!(w.put(&upload, &bytes(150)), StatusCode::OK);
    let err = w.uploads.complete(&upload.media.id, &w.alice).await;
    assert!(
        matches!(
            err,
            Err(MediaError::SizeMismatch {
                declared: 100,
                stored: 150
            })
        ),
        "{err:?}"
    );
    let key = &upload.media.key;
    assert_eq!(w.blobs.head(key).await.unwrap(), None);
    assert_eq!(w.blobs.head(&key.staging()).await.unwrap(), None);
    assert_eq!(w.stored(&upload.media.id).await.state, MediaState::Pending);

    assert_eq!(w.put(&upload, &bytes(100)), StatusCode::OK);
    let media = w
        .uploads
        .complete(&upload.media.id, &w.alice)
        .await
        .unwrap();
    assert_eq!(media.state, MediaState::Ready);
}

#[tokio::test]
async fn a_type_mismatch_discards_the_object() {
    let w = world();
    let upload = w.created(10).await;
    let staging = upload.media.key.staging();
    for stored in [Some("text/html"), None] {
        w.blobs.insert(&staging, bytes(10), stored);
        let err = w.uploads.complete(&upload.media.id, &w.alice).await;
        match err {
            Err(MediaError::TypeMismatch {
                declared,
                stored: found,
            }) => {
                assert_eq!(declared, "image/png");
                assert_eq!(found.as_deref(), stored);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.blobs.head(&upload.media.key).await.unwrap(), None);
        assert_eq!(w.stored(&upload.media.id).await.state, MediaState::Pending);
    }
}

#[tokio::test]
async fn only_the_uploader_completes() {
    let w = world();
    let data = bytes(10);
    let upload = w.created(10).await;
    assert_eq!(w.put(&upload, &data), StatusCode::OK);
    let err = w.uploads.complete(&upload.media.id, &w.bob).await;
    assert!(matches!(err, Err(MediaError::NotUploader)), "{err:?}");
    // Bob's attempt touched nothing.
    assert_eq!(w.blobs.bytes(&upload.media.key.staging()), Some(data));
    assert_eq!(w.stored(&upload.media.id).await.state, MediaState::Pending);
    let done = w
        .uploads
        .complete(&upload.media.id, &w.alice)
        .await
        .unwrap();
    assert_eq!(done.state, MediaState::Ready);
    // Ready media stays the uploader's to complete.
    let err = w.uploads.complete(&upload.media.id, &w.bob).await;
    assert!(matches!(err, Err(MediaError::NotUploader)), "{err:?}");
}

#[tokio::test]
async fn unknown_media_is_not_found() {
    let w = world();
    let id = MediaId::generate();
    let complete = w.uploads.complete(&id, &w.alice).await;
    assert!(
        matches!(complete, Err(MediaError::MediaNotFound)),
        "{complete:?}"
    );
    let download = w.uploads.download_url(&id, &w.alice).await;
    assert!(
        matches!(download, Err(MediaError::MediaNotFound)),
        "{download:?}"
    );
    let get = w.uploads.get(&id, &w.alice).await;
    assert!(matches!(get, Err(MediaError::MediaNotFound)), "{get:?}");
}

#[tokio::test]
async fn downloads_wait_for_completion() {
    let w = world();
    let upload = w.created(10).await;
    assert_eq!(w.put(&upload, &bytes(10)), StatusCode::OK);
    for user in [&w.alice, &w.bob] {
        let err = w.uploads.download_url(&upload.media.id, user).await;
        assert!(matches!(err, Err(MediaError::NotReady)), "{err:?}");
    }
}

#[tokio::test]
async fn downloads_and_metadata_are_for_members_of_the_media_channel() {
    let w = world();
    let data = bytes(42);
    let media = w.ready(&data).await;

    let err = w.uploads.download_url(&media.id, &w.carol).await;
    assert!(matches!(err, Err(MediaError::NotMember)), "{err:?}");
    let err = w.uploads.get(&media.id, &w.carol).await;
    assert!(matches!(err, Err(MediaError::NotMember)), "{err:?}");

    assert_eq!(w.uploads.get(&media.id, &w.bob).await.unwrap(), media);
    let url = w.uploads.download_url(&media.id, &w.bob).await.unwrap();
    let got = w.blobs.serve_get(&url.url).unwrap();
    assert_eq!(got.bytes, data);
    assert_eq!(got.content_type.as_deref(), Some("image/png"));
}

#[tokio::test]
async fn download_urls_last_the_configured_lifetime() {
    let w = world();
    let media = w.ready(&bytes(5)).await;
    let url = w.uploads.download_url(&media.id, &w.bob).await.unwrap();
    w.clock
        .set(url.expires_at - chrono::Duration::milliseconds(1));
    assert!(w.blobs.serve_get(&url.url).is_ok());
    w.clock.set(url.expires_at);
    assert_eq!(w.blobs.serve_get(&url.url), Err(StatusCode::FORBIDDEN));
    let fresh = w.uploads.download_url(&media.id, &w.bob).await.unwrap();
    assert!(w.blobs.serve_get(&fresh.url).is_ok());
}

#[tokio::test]
async fn a_store_outage_keeps_the_media_pending_and_a_retry_succeeds() {
    let w = world();
    let upload = w.created(10).await;
    assert_eq!(w.put(&upload, &bytes(10)), StatusCode::OK);
    w.blobs.set_unavailable(true);
    let err = w
        .uploads
        .complete(&upload.media.id, &w.alice)
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::Store(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(w.stored(&upload.media.id).await.state, MediaState::Pending);
    let create = w.uploads.create(w.request(&w.alice, "image/png", 10)).await;
    assert!(matches!(create, Err(MediaError::Store(_))), "{create:?}");
    assert_eq!(w.catalog.media_count(), 1, "no pending row without a URL");

    w.blobs.set_unavailable(false);
    let media = w
        .uploads
        .complete(&upload.media.id, &w.alice)
        .await
        .unwrap();
    assert_eq!(media.state, MediaState::Ready);
}
