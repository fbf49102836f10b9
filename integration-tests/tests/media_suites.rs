//! The media service's shared trait suites against the real adapters: the
//! blob store suite on the S3 server (s3s-fs, which checks SigV4, so an
//! expired or tampered URL really fails) and on the local store as
//! `store::open` serves it over HTTP; the catalog suite on the directory
//! database. Every suite test names its own keys, channels and users, so it
//! shares the bucket and database with other tests and earlier runs.
//!
//! Also here: `serve` owns the local store's URL server, and returns only
//! once it has stopped, within the shutdown grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmesh_db::Pool;
use chatmesh_db::directory::{channels, memberships};
use chatmesh_ids::{ChannelId, UserId};
use chatmesh_integration_tests::Infra;
use chatmesh_integration_tests::sandbox::channel;
use chatmesh_media::store::{OpenedStore, S3Blobs};
use chatmesh_media::testsuite::blobs::HttpHarness;
use chatmesh_media::testsuite::catalog::CatalogHarness;
use chatmesh_media::testsuite::{unique_channel, unique_user};
use chatmesh_media::{Catalog, MediaConfig, PostgresCatalog, StoreConfig};
use chatmesh_proto::media::v1 as pb;
use chatmesh_proto::media::v1::media_service_client::MediaServiceClient;
use chatmesh_server::{Listeners, Tasks};
use diesel::ExpressionMethods as _;
use diesel_async::RunQueryDsl as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// The S3 bucket `scripts/infra up` started, through the media adapter.
fn s3_harness() -> HttpHarness {
    let infra = Infra::load().expect("infrastructure state");
    let blobs = S3Blobs::new(
        &infra.s3_endpoint,
        &infra.s3_region,
        &infra.s3_bucket,
        &infra.s3_access_key,
        &infra.s3_secret_key,
    )
    .expect("an S3 client");
    HttpHarness::new(Arc::new(blobs))
}

/// A local store in a fresh directory, opened and served the way the media
/// service does it, on the wall clock; it stops with the harness.
async fn local_harness() -> HttpHarness {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = StoreConfig::Local {
        root: dir.path().join("store"),
        listen_addr: "127.0.0.1:0".parse().expect("an address"),
        public_url: None,
        secret: uuid::Uuid::new_v4().simple().to_string(),
    };
    let tasks = Tasks::new(CancellationToken::new());
    let OpenedStore { blobs, .. } = chatmesh_media::store::open(&config, 1 << 20, &tasks)
        .await
        .expect("a local store");
    HttpHarness::new(blobs)
        .keeping(tasks.shutdown().clone().drop_guard())
        .keeping(dir)
}

mod s3 {
    chatmesh_media::blob_store_suite!(super::s3_harness());
}

mod local {
    chatmesh_media::blob_store_suite!(super::local_harness().await);
}

/// The directory schema, migrated once per test binary: parallel
/// migrations of one database would race.
static MIGRATED: OnceCell<()> = OnceCell::const_new();

async fn directory() -> Pool {
    let infra = Infra::load().expect("infrastructure state");
    MIGRATED
        .get_or_init(|| async {
            chatmesh_db::migrate(&infra.directory_url, chatmesh_db::MigrationSet::Directory)
                .await
                .expect("directory migration");
        })
        .await;
    let config: chatmesh_config::PostgresConfig =
        toml::from_str(&format!("url = {:?}", infra.directory_url)).expect("a Postgres config");
    chatmesh_db::connect(&config)
}

/// Creates `channel` with `members` in the directory, as the chat service
/// would.
async fn add_channel(pool: &Pool, channel: &ChannelId, members: &[&UserId]) {
    let mut conn = pool.get().await.expect("a directory connection");
    diesel::insert_into(channels::table)
        .values((
            channels::channel_id.eq(channel.as_str()),
            channels::name.eq(channel.as_str()),
            channels::created_by.eq(members[0].as_str()),
            channels::moderation.eq(1i16),
            channels::created_at.eq(diesel::dsl::now),
        ))
        .on_conflict_do_nothing()
        .execute(&mut *conn)
        .await
        .expect("insert channel");
    for member in members {
        diesel::insert_into(memberships::table)
            .values((
                memberships::channel_id.eq(channel.as_str()),
                memberships::user_id.eq(member.as_str()),
                memberships::joined_at.eq(diesel::dsl::now),
            ))
            .on_conflict_do_nothing()
            .execute(&mut *conn)
            .await
            .expect("insert membership");
    }
}

/// The catalog on the directory database.
struct PostgresUnderTest {
    catalog: PostgresCatalog,
    pool: Pool,
}

async fn postgres_catalog() -> PostgresUnderTest {
    let pool = directory().await;
    PostgresUnderTest {
        catalog: PostgresCatalog::new(pool.clone()),
        pool,
    }
}

#[tonic::async_trait]
impl CatalogHarness for PostgresUnderTest {
    fn catalog(&self) -> &dyn Catalog {
        &self.catalog
    }

    async fn add_channel(&self, channel: &ChannelId, members: &[&UserId]) {
        add_channel(&self.pool, channel, members).await;
    }
}

mod postgres {
    chatmesh_media::catalog_suite!(super::postgres_catalog().await);
}

const GRACE: Duration = Duration::from_secs(2);

/// The media service on a local store, running until its token is
/// cancelled.
struct Running {
    grpc: SocketAddr,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start_media() -> anyhow::Result<Running> {
    chatmesh_integration_tests::logs();
    let infra = Infra::load()?;
    directory().await;
    let dir = tempfile::tempdir()?;
    let config: MediaConfig = toml::from_str(&format!(
        "[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\nshutdown_grace = \"{}s\"\n[directory]\nurl = {:?}\n[store]\nkind = \"local\"\nroot = {:?}\nlisten_addr = \"127.0.0.1:0\"\nsecret = {:?}\n",
        GRACE.as_secs(),
        infra.directory_url,
        dir.path().join("store"),
        uuid::Uuid::new_v4().simple().to_string(),
    ))?;
    let listeners = Listeners::bind(&config.server).await?;
    let grpc = listeners.grpc_addr();
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(chatmesh_media::serve(config, listeners, shutdown.clone()));
    Ok(Running {
        grpc,
        shutdown,
        served,
        _dir: dir,
    })
}

/// An upload URL from the running service, for a new channel of one member.
async fn upload_url(media: &Running, size: u64) -> anyhow::Result<pb::CreateUploadResponse> {
    let (room, alice) = (unique_channel("shutdown"), unique_user("alice"));
    add_channel(&directory().await, &room, &[&alice]).await;
    let mut client = MediaServiceClient::new(channel(media.grpc));
    let created = client
        .create_upload(pb::CreateUploadRequest {
            channel_id: room.as_str().into(),
            user_id: alice.as_str().into(),
            filename: "a.png".into(),
            content_type: "image/png".into(),
            size,
        })
        .await?
        .into_inner();
    Ok(created)
}

fn store_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let url = reqwest::Url::parse(url)?;
    Ok(url.socket_addrs(|| None)?[0])
}

/// Stops `media` and returns how long `serve` took to return.
async fn stop(media: Running) -> anyhow::Result<Duration> {
    let stopping = Instant::now();
    media.shutdown.cancel();
    let served = tokio::time::timeout(GRACE * 5, media.served).await??;
    let took = stopping.elapsed();
    served?;
    Ok(took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_once_the_idle_local_store_has_stopped() -> anyhow::Result<()> {
    let media = start_media().await?;
    let upload = upload_url(&media, 10).await?;
    let addr = store_addr(&upload.upload_url)?;
    drop(TcpStream::connect(addr).await?);

    let took = stop(media).await?;
    assert!(took < GRACE, "nothing in flight, yet serve took {took:?}");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the local store still listens after serve returned"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_gives_an_upload_in_flight_the_grace_period_then_returns() -> anyhow::Result<()> {
    let media = start_media().await?;
    let upload = upload_url(&media, 10).await?;
    let url = reqwest::Url::parse(&upload.upload_url)?;
    let addr = store_addr(&upload.upload_url)?;

    // Headers, then part of the body: the server asks for the body once the
    // handler reads it, so the upload is in flight from then on.
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: image/png\r\ncontent-length: 10\r\nexpect: 100-continue\r\n\r\n",
        url.path(),
        url.query().unwrap_or_default()
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).await?;
    let answer = std::str::from_utf8(&answer[..n])?;
    assert!(answer.starts_with("HTTP/1.1 100 Continue"), "{answer:?}");
    stream.write_all(b"abc").await?;

    let took = stop(media).await?;
    assert!(
        took >= GRACE,
        "serve returned after {took:?}, within the grace period"
    );
    assert!(took < GRACE * 3, "serve took {took:?}");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the local store still listens after serve returned"
    );
    Ok(())
}
