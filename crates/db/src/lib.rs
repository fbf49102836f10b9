//! PostgreSQL for chatmesh: one connection pool per database, the map from
//! channels to shard databases, the directory schema and the embedded
//! schema migrations.

pub mod directory;
mod migrate;
mod pool;
mod shards;

pub use migrate::{MigrationProbe, MigrationSet, migrate, migrate_until_done};
pub use pool::{DbError, Pool, PoolProbe, connect};
pub use shards::{Shard, ShardMap, bucket_of};
