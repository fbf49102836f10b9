use chatmesh_config::PostgresConfig;
use chatmesh_probe::{Probe, ProbeFuture};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};

/// A pool of async connections to one database.
pub type Pool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// A database failure. The text is for logs; clients get a sanitized error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No pooled connection could be had in time.
    #[error("database connection unavailable: {0}")]
    Connection(String),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// Migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migration(String),
}

impl DbError {
    /// True for failures that may pass on their own (no connection could be
    /// had); a failed query or migration is a server fault.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Connection(_))
    }
}

impl From<bb8::RunError<diesel_async::pooled_connection::PoolError>> for DbError {
    fn from(err: bb8::RunError<diesel_async::pooled_connection::PoolError>) -> Self {
        Self::Connection(err.to_string())
    }
}

/// A pool for `config`. Connections open lazily, so a service starts (and
/// reports NOT_SERVING) while its database is still down.
pub fn connect(config: &PostgresConfig) -> Pool {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(&config.url);
    bb8::Pool::builder()
        .max_size(config.pool_size)
        .connection_timeout(config.connect_timeout)
        .build_unchecked(manager)
}

/// Probes a database with `SELECT 1` through its pool.
#[derive(Debug, Clone)]
pub struct PoolProbe {
    name: String,
    pool: Pool,
}

impl PoolProbe {
    /// A probe named `name` (e.g. `postgres:shard_0`) over `pool`.
    pub fn new(name: impl Into<String>, pool: Pool) -> Self {
        Self {
            name: name.into(),
            pool,
        }
    }
}

impl Probe for PoolProbe {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            diesel::sql_query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}
