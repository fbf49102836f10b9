use diesel::RunQueryDsl as _;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _, embed_migrations};

use crate::DbError;

const SHARD: EmbeddedMigrations = embed_migrations!("../../migrations/shard");
const DIRECTORY: EmbeddedMigrations = embed_migrations!("../../migrations/directory");

/// Which schema a database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationSet {
    /// A message shard.
    Shard,
    /// The directory: channels, memberships, media.
    Directory,
}

impl MigrationSet {
    fn migrations(self) -> EmbeddedMigrations {
        match self {
            Self::Shard => SHARD,
            Self::Directory => DIRECTORY,
        }
    }

    // Distinct advisory lock keys, so migrating a shard never waits on the
    // directory when both live on one server.
    fn lock_key(self) -> i64 {
        match self {
            Self::Shard => 0x6368_6174_0001,
            Self::Directory => 0x6368_6174_0002,
        }
    }
}

/// Applies pending migrations of `set` to the database at `url` and returns
/// the versions applied. Instances starting together serialise on an
/// advisory lock, so each migration runs once.
pub async fn migrate(url: &str, set: MigrationSet) -> Result<Vec<String>, DbError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection as _;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| DbError::Connection(e.to_string()))?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({})", set.lock_key()))
            .execute(&mut conn)?;
        let applied = conn
            .run_pending_migrations(set.migrations())
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| DbError::Migration(e.to_string()));
        diesel::sql_query(format!("SELECT pg_advisory_unlock({})", set.lock_key()))
            .execute(&mut conn)?;
        applied
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))?
}

/// Reports whether a database's migrations have been applied; failing
/// until then keeps the service NOT_SERVING.
#[derive(Debug, Clone)]
pub struct MigrationProbe {
    name: String,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl chatmesh_probe::Probe for MigrationProbe {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> chatmesh_probe::ProbeFuture<'_> {
        let done = self.done.load(std::sync::atomic::Ordering::Acquire);
        Box::pin(async move {
            if done {
                Ok(())
            } else {
                Err("migrations not applied yet".into())
            }
        })
    }
}

/// Applies `set` to the database at `url` in the background, retrying with
/// backoff until it succeeds or `shutdown` fires. A service can start while
/// its database is still coming up; the returned probe fails until done.
pub fn migrate_until_done(
    name: impl Into<String>,
    url: String,
    set: MigrationSet,
    shutdown: tokio_util::sync::CancellationToken,
) -> MigrationProbe {
    let name = name.into();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = MigrationProbe {
        name: format!("migrations:{name}"),
        done: done.clone(),
    };
    tokio::spawn(async move {
        use backon::{BackoffBuilder as _, ExponentialBuilder};
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(200))
            .with_max_delay(std::time::Duration::from_secs(5))
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let err = match migrate(&url, set).await {
                Ok(applied) => {
                    tracing::info!(database = %name, applied = applied.len(), "migrations up to date");
                    done.store(true, std::sync::atomic::Ordering::Release);
                    return;
                }
                Err(err) => err,
            };
            let delay = delays.next().unwrap_or(std::time::Duration::from_secs(5));
            tracing::warn!(database = %name, error = %err, retry_in = ?delay, "migrations failed");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
    probe
}
