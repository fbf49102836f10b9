//! Media uploads end to end, run once on the S3 store (s3s-fs, which checks
//! SigV4) and once on the local store served by the media service: the
//! gateway's HTTP API, presigned PUT and GET with a plain HTTP client,
//! attachments over the WebSocket, and every refusal on the way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_ids::{Clock as _, SystemClock};
use chatmesh_integration_tests::Sandbox;
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::wait;
use chatmesh_media::testsuite::blobs::tampered;
use chatmesh_media::{MediaLimits, StoreConfig};
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::media::v1 as pb;
use chatmesh_proto::media::v1::media_service_client::MediaServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    S3,
    Local,
}

/// A sandbox whose media service uses `backend`, and the local store's
/// directory when there is one.
struct Setup {
    sb: Sandbox,
    backend: Backend,
    /// Holds the local store's root (`<dir>/store`) and nothing else.
    dir: Option<tempfile::TempDir>,
}

impl Setup {
    async fn start(backend: Backend, media_limits: MediaLimits) -> anyhow::Result<Self> {
        let dir = match backend {
            Backend::S3 => None,
            Backend::Local => Some(tempfile::tempdir()?),
        };
        let media_store = dir.as_ref().map(|d| StoreConfig::Local {
            root: d.path().join("store"),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            secret: uuid::Uuid::new_v4().simple().to_string(),
        });
        let sb = Sandbox::start_ready(Options {
            gateways: 1,
            media_limits,
            media_store,
            ..Options::default()
        })
        .await?;
        Ok(Self { sb, backend, dir })
    }

    fn gw(&self) -> SocketAddr {
        self.sb.gateways[0]
    }

    async fn api(&self, user: &str) -> anyhow::Result<Api> {
        Ok(Api {
            http: http(),
            gw: self.gw(),
            token: dev_token(self.gw(), user).await?,
        })
    }

    fn grpc(&self) -> MediaServiceClient<tonic::transport::Channel> {
        MediaServiceClient::new(channel(self.sb.media.grpc))
    }

    fn root(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("store"))
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a default client builds")
}

/// The gateway's HTTP API as one user.
struct Api {
    http: reqwest::Client,
    gw: SocketAddr,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.gw))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.json().await.context("a JSON answer")?;
        Ok((status, body))
    }

    async fn create(
        &self,
        channel: &str,
        filename: &str,
        content_type: &str,
        size: usize,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/channels/{channel}/media"),
            Some(json!({ "filename": filename, "content_type": content_type, "size": size })),
        )
        .await
    }

    /// Creates an upload that must succeed.
    async fn upload(
        &self,
        channel: &str,
        content_type: &str,
        size: usize,
    ) -> anyhow::Result<Value> {
        let (status, body) = self
            .create(channel, "photo.png", content_type, size)
            .await?;
        anyhow::ensure!(status == StatusCode::CREATED, "{status} {body}");
        Ok(body)
    }

    async fn complete(&self, media_id: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/media/{media_id}/complete"),
            None,
        )
        .await
    }

    async fn media(&self, media_id: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(reqwest::Method::GET, &format!("/v1/media/{media_id}"), None)
            .await
    }

    async fn download(&self, media_id: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/media/{media_id}/download"),
            None,
        )
        .await
    }
}

fn str_of<'a>(v: &'a Value, field: &str) -> anyhow::Result<&'a str> {
    v[field]
        .as_str()
        .with_context(|| format!("no {field} in {v}"))
}

/// PUTs `bytes` to an upload URL with the headers it was signed for, except
/// that `content_type` replaces the signed type when given.
async fn put(
    upload: &Value,
    bytes: &[u8],
    content_type: Option<&str>,
) -> anyhow::Result<StatusCode> {
    put_to(str_of(upload, "upload_url")?, upload, bytes, content_type).await
}

async fn put_to(
    url: &str,
    upload: &Value,
    bytes: &[u8],
    content_type: Option<&str>,
) -> anyhow::Result<StatusCode> {
    let mut request = http().put(url).body(bytes.to_vec());
    let headers = upload["upload_headers"]
        .as_object()
        .context("upload_headers")?;
    for (name, value) in headers {
        let value = value.as_str().context("header value")?;
        match name.as_str() {
            // The client library sets the length from the body.
            "content-length" => {}
            "content-type" => request = request.header(name, content_type.unwrap_or(value)),
            _ => request = request.header(name, value),
        }
    }
    Ok(request.send().await?.status())
}

/// Deterministic bytes that do not compress or repeat.
fn sample(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemClock.now_ms() as i64
}

async fn round_trip(backend: Backend) -> anyhow::Result<()> {
    let setup = Setup::start(backend, MediaLimits::default()).await?;
    let room = channel_id("media");
    create_channel(
        &setup.sb,
        &room,
        ModerationPolicy::Reject,
        &["alice", "bob"],
    )
    .await?;
    let (alice, bob) = (setup.api("alice").await?, setup.api("bob").await?);
    let bytes = sample(256 * 1024 + 7);

    let started = Instant::now();
    let upload = alice.upload(&room, "image/png", bytes.len()).await?;
    let created = started.elapsed();
    let id = str_of(&upload, "media_id")?.to_owned();
    assert_eq!(upload["upload_method"], "PUT");
    assert_eq!(upload["upload_headers"]["content-type"], "image/png");
    let left = upload["expires_at_ms"].as_i64().context("expires_at_ms")? - now_ms();
    assert!(
        left > 14 * 60 * 1000 && left <= 15 * 60 * 1000,
        "default URL lifetime is 15 minutes, {left} ms left"
    );

    let (status, pending) = alice.media(&id).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending["media"]["state"], "pending");

    assert_eq!(put(&upload, &bytes, None).await?, StatusCode::OK);
    let uploaded = started.elapsed();
    let (status, done) = alice.complete(&id).await?;
    assert_eq!(status, StatusCode::OK, "{done}");
    let completed = started.elapsed();
    assert_eq!(done["media"]["state"], "ready");
    assert_eq!(done["media"]["size"], bytes.len());
    assert_eq!(done["media"]["content_type"], "image/png");
    assert_eq!(done["media"]["filename"], "photo.png");
    assert_eq!(done["media"]["uploader_id"], "alice");
    // Completing again is harmless.
    let (status, again) = alice.complete(&id).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["media"], done["media"]);

    // The upload URL still works until it expires, but what it writes is
    // never served: completion moved the verified bytes out of its reach.
    let swapped = sample(bytes.len() + 1)[1..].to_vec();
    assert_eq!(put(&upload, &swapped, None).await?, StatusCode::OK);

    // The attachment travels with a message over the WebSocket.
    let gw = setup.gw();
    let mut bob_ws = Client::connect(gw, &bob.token, None).await?;
    bob_ws.subscribe(&room).await?;
    let mut alice_ws = Client::connect(gw, &alice.token, None).await?;
    alice_ws
        .send(json!({"type": "send", "channel_id": room, "body": "look", "attachments": [id]}))
        .await?;
    alice_ws.expect("ack").await?;
    let message = bob_ws.expect("message").await?;
    assert_eq!(message["attachments"], json!([id]));

    // Another member downloads the same bytes.
    let (status, meta) = bob.media(&id).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["media"], done["media"]);
    let fetch = Instant::now();
    let (status, download) = bob.download(&id).await?;
    assert_eq!(status, StatusCode::OK, "{download}");
    let response = http()
        .get(str_of(&download, "download_url")?)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    let got = response.bytes().await?;
    let fetched = fetch.elapsed();
    assert_eq!(got.len(), bytes.len());
    assert_eq!(Sha256::digest(&got), Sha256::digest(&bytes));
    eprintln!(
        "{backend:?} round trip of {} bytes: create {created:?}, +PUT {:?}, +complete {:?}; download URL and GET {fetched:?}",
        bytes.len(),
        uploaded - created,
        completed - uploaded
    );
    setup.sb.stop().await
}

async fn store_refuses_tampered_and_mismatched_requests(backend: Backend) -> anyhow::Result<()> {
    let setup = Setup::start(backend, MediaLimits::default()).await?;
    let room = channel_id("media-403");
    create_channel(&setup.sb, &room, ModerationPolicy::Reject, &["alice"]).await?;
    let alice = setup.api("alice").await?;
    let bytes = sample(4096);
    let upload = alice.upload(&room, "image/png", bytes.len()).await?;
    let id = str_of(&upload, "media_id")?;
    let url = str_of(&upload, "upload_url")?;

    let forged = tampered(url);
    assert_eq!(
        put_to(&forged, &upload, &bytes, None).await?,
        StatusCode::FORBIDDEN,
        "tampered signature"
    );
    assert_eq!(
        put(&upload, &bytes, Some("image/jpeg")).await?,
        StatusCode::FORBIDDEN,
        "another content type"
    );
    assert_eq!(
        put(&upload, &bytes, Some("image/png; charset=utf-8")).await?,
        StatusCode::FORBIDDEN,
        "the signed type with parameters"
    );
    let (status, body) = alice.complete(id).await?;
    assert_eq!(status, StatusCode::CONFLICT, "nothing was stored: {body}");

    // A body longer than declared: the local store checks the signed
    // length at once; S3 stores it and completion discards it.
    let longer = sample(bytes.len() + 1);
    match setup.backend {
        Backend::Local => {
            assert_eq!(put(&upload, &longer, None).await?, StatusCode::FORBIDDEN);
        }
        Backend::S3 => {
            assert_eq!(put(&upload, &longer, None).await?, StatusCode::OK);
            let (status, body) = alice.complete(id).await?;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            let message = str_of(&body["error"], "message")?;
            assert!(message.contains("declared"), "{message}");
            let (_, body) = alice.complete(id).await?;
            let message = str_of(&body["error"], "message")?;
            assert!(
                message.starts_with("upload not found"),
                "deleted: {message}"
            );
        }
    }

    // The genuine upload still works, and its download URL cannot be bent.
    assert_eq!(put(&upload, &bytes, None).await?, StatusCode::OK);
    let (status, _) = alice.complete(id).await?;
    assert_eq!(status, StatusCode::OK);
    let (_, download) = alice.download(id).await?;
    let get_url = str_of(&download, "download_url")?;
    let response = http().get(tampered(get_url)).send().await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A GET URL is not a PUT URL.
    assert_eq!(
        put_to(get_url, &upload, &bytes, None).await?,
        StatusCode::FORBIDDEN
    );
    assert_eq!(http().get(get_url).send().await?.status(), StatusCode::OK);
    setup.sb.stop().await
}

async fn expired_urls_are_refused(backend: Backend) -> anyhow::Result<()> {
    const TTL_MS: i64 = 3000;
    let setup = Setup::start(
        backend,
        MediaLimits {
            url_ttl: Duration::from_secs(3),
            ..MediaLimits::default()
        },
    )
    .await?;
    let room = channel_id("media-ttl");
    create_channel(&setup.sb, &room, ModerationPolicy::Reject, &["alice"]).await?;
    let alice = setup.api("alice").await?;
    let bytes = sample(1000);

    let upload = alice.upload(&room, "text/plain", bytes.len()).await?;
    let put_expiry = upload["expires_at_ms"].as_i64().context("expires_at_ms")?;
    let left = put_expiry - now_ms();
    assert!(left > 0 && left <= TTL_MS, "{left} ms left of {TTL_MS}");
    let id = str_of(&upload, "media_id")?;
    assert_eq!(put(&upload, &bytes, None).await?, StatusCode::OK);
    let (status, _) = alice.complete(id).await?;
    assert_eq!(status, StatusCode::OK);
    let (_, download) = alice.download(id).await?;
    let get_expiry = download["expires_at_ms"]
        .as_i64()
        .context("expires_at_ms")?;
    let get_url = str_of(&download, "download_url")?;
    assert_eq!(http().get(get_url).send().await?.status(), StatusCode::OK);

    // Wait for the clock to pass both expiries, then nothing more.
    let deadline = put_expiry.max(get_expiry);
    wait::until("URLs to expire", Duration::from_secs(10), || async {
        if now_ms() > deadline {
            Ok(())
        } else {
            Err(format!("{} ms to go", deadline - now_ms()))
        }
    })
    .await?;
    assert_eq!(put(&upload, &bytes, None).await?, StatusCode::FORBIDDEN);
    assert_eq!(
        http().get(get_url).send().await?.status(),
        StatusCode::FORBIDDEN
    );
    // A fresh download URL works again.
    let (_, download) = alice.download(id).await?;
    let fresh = str_of(&download, "download_url")?;
    assert_eq!(http().get(fresh).send().await?.status(), StatusCode::OK);
    setup.sb.stop().await
}

async fn service_refuses_what_it_must(backend: Backend) -> anyhow::Result<()> {
    let setup = Setup::start(
        backend,
        MediaLimits {
            max_size: 65536,
            ..MediaLimits::default()
        },
    )
    .await?;
    let room = channel_id("media-rules");
    let other = channel_id("media-other");
    create_channel(
        &setup.sb,
        &room,
        ModerationPolicy::Reject,
        &["alice", "bob"],
    )
    .await?;
    create_channel(
        &setup.sb,
        &other,
        ModerationPolicy::Reject,
        &["alice", "carol"],
    )
    .await?;
    let (alice, bob, carol) = (
        setup.api("alice").await?,
        setup.api("bob").await?,
        setup.api("carol").await?,
    );

    let refused = [
        (
            alice.create(&room, "big.mp4", "video/mp4", 65537).await?,
            StatusCode::PAYLOAD_TOO_LARGE,
            "over the upload limit",
        ),
        (
            alice.create(&room, "empty.png", "image/png", 0).await?,
            StatusCode::BAD_REQUEST,
            "at least 1 byte",
        ),
        (
            alice.create(&room, "page.html", "text/html", 10).await?,
            StatusCode::BAD_REQUEST,
            "not allowed",
        ),
        (
            alice.create(&room, "logo.svg", "image/svg+xml", 10).await?,
            StatusCode::BAD_REQUEST,
            "not allowed",
        ),
        (
            alice
                .create(&room, "a.png", "image/png; charset=utf-8", 10)
                .await?,
            StatusCode::BAD_REQUEST,
            "without parameters",
        ),
        (
            alice
                .create(&room, "a.png", "image/png\r\nx: y", 10)
                .await?,
            StatusCode::BAD_REQUEST,
            "without parameters",
        ),
        (
            carol.create(&room, "a.png", "image/png", 10).await?,
            StatusCode::FORBIDDEN,
            "not a member",
        ),
        (
            alice
                .create(&channel_id("nowhere"), "a.png", "image/png", 10)
                .await?,
            StatusCode::NOT_FOUND,
            "channel not found",
        ),
    ];
    for ((status, body), want, text) in refused {
        assert_eq!(status, want, "{body}");
        let message = str_of(&body["error"], "message")?;
        assert!(message.contains(text), "{message:?} should say {text:?}");
    }
    // The same refusals carry these gRPC codes.
    let mut grpc = setup.grpc();
    let big = grpc
        .create_upload(pb::CreateUploadRequest {
            channel_id: room.clone(),
            user_id: "alice".into(),
            filename: "big.mp4".into(),
            content_type: "video/mp4".into(),
            size: 65537,
        })
        .await
        .expect_err("over the limit");
    assert_eq!(big.code(), tonic::Code::OutOfRange);

    // Completing before the bytes are there.
    let bytes = sample(2048);
    let upload = alice.upload(&room, "image/png", bytes.len()).await?;
    let id = str_of(&upload, "media_id")?.to_owned();
    let (status, body) = alice.complete(&id).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        str_of(&body["error"], "message")?,
        "upload not found; PUT the bytes to the upload URL first"
    );
    let early = grpc
        .complete_upload(pb::CompleteUploadRequest {
            media_id: id.clone(),
            user_id: "alice".into(),
        })
        .await
        .expect_err("nothing uploaded");
    assert_eq!(early.code(), tonic::Code::FailedPrecondition);

    // A pending media is neither downloadable nor attachable.
    let (status, _) = bob.download(&id).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    let mut alice_ws = Client::connect(setup.gw(), &alice.token, None).await?;
    alice_ws
        .send(json!({"type": "send", "channel_id": room, "body": "", "attachments": [id]}))
        .await?;
    let err = alice_ws.expect_error().await?;
    assert_eq!(err["code"], "invalid_message", "{err}");

    // Only the uploader completes.
    assert_eq!(put(&upload, &bytes, None).await?, StatusCode::OK);
    let (status, _) = bob.complete(&id).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = alice.complete(&id).await?;
    assert_eq!(status, StatusCode::OK);

    // Members only, and only in the channel it was uploaded to.
    let (status, body) = carol.download(&id).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = carol.media(&id).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let denied = grpc
        .get_download_url(pb::GetDownloadUrlRequest {
            media_id: id.clone(),
            user_id: "carol".into(),
        })
        .await
        .expect_err("carol is not in the room");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    alice_ws
        .send(json!({"type": "send", "channel_id": other, "body": "x", "attachments": [id]}))
        .await?;
    let err = alice_ws.expect_error().await?;
    assert_eq!(err["code"], "invalid_message", "{err}");
    alice_ws
        .send(json!({"type": "send", "channel_id": room, "body": "ok", "attachments": [id]}))
        .await?;
    alice_ws.expect("ack").await?;

    let (status, _) = bob.download(&"0".repeat(32)).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = bob.download("..%2F..%2Fetc%2Fpasswd").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = bob.download("not-an-id").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    setup.sb.stop().await
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir)?.to_owned());
            }
        }
    }
    Ok(found)
}

async fn hostile_file_names_are_harmless(backend: Backend) -> anyhow::Result<()> {
    let setup = Setup::start(backend, MediaLimits::default()).await?;
    let room = channel_id("media-names");
    create_channel(&setup.sb, &room, ModerationPolicy::Reject, &["alice"]).await?;
    let alice = setup.api("alice").await?;
    let bytes = sample(512);

    let names = [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/absolute/path.png", "path.png"),
        ("nul\u{0}byte\u{7}bell\u{1b}[31m.png", "nulbytebell[31m.png"),
        ("invoice\u{202e}gnp.exe", "invoicegnp.exe"),
    ];
    let mut ids = Vec::new();
    for (raw, stored) in names {
        let (status, upload) = alice.create(&room, raw, "image/png", bytes.len()).await?;
        assert_eq!(status, StatusCode::CREATED, "{raw:?}: {upload}");
        let url = reqwest::Url::parse(str_of(&upload, "upload_url")?)?;
        let id = str_of(&upload, "media_id")?.to_owned();
        let segments: Vec<&str> = url.path().rsplit('/').take(3).collect();
        assert_eq!(segments[0], id, "the key is generated: {url}");
        assert!(segments[1].len() == 2 && segments[1].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(segments[2], "uploads", "{url}");
        assert!(!url.as_str().contains(".."), "{url}");
        assert_eq!(put(&upload, &bytes, None).await?, StatusCode::OK);
        let (status, done) = alice.complete(&id).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(done["media"]["filename"], stored, "{raw:?}");
        ids.push(id);
    }
    for raw in ["", "\u{0}\u{1}\u{2}", "..", "dir/", "  "] {
        let (status, body) = alice.create(&room, raw, "image/png", 10).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw:?}");
        let message = str_of(&body["error"], "message")?;
        assert!(message.contains("filename"), "{message}");
    }

    if let (Some(root), Some(dir)) = (setup.root(), &setup.dir) {
        // Nothing was written beside the store root, and inside it only
        // generated keys exist.
        let beside: Vec<_> = std::fs::read_dir(dir.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(beside, ["store"]);
        let mut files = files_under(&root)?;
        files.sort();
        let mut expected: Vec<PathBuf> = Vec::new();
        for id in &ids {
            let (_, dl) = alice.download(id).await?;
            let url = reqwest::Url::parse(str_of(&dl, "download_url")?)?;
            let key = url.path().strip_prefix("/objects/").context("local URL")?;
            expected.push(key.into());
            expected.push(format!("{key}.type").into());
        }
        expected.sort();
        assert_eq!(files, expected);
    }
    setup.sb.stop().await
}

/// Runs each scenario once per backend, as `s3::<name>` and `local::<name>`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(super::Backend::S3).await
                }
            )*
        }
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(super::Backend::Local).await
                }
            )*
        }
    };
}

on_both_stores!(
    round_trip,
    store_refuses_tampered_and_mismatched_requests,
    expired_urls_are_refused,
    service_refuses_what_it_must,
    hostile_file_names_are_harmless,
);
