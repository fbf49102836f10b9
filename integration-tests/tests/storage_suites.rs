//! The storage service's shared trait suites against the real adapters:
//! the message store suite on the Postgres shard databases, across both
//! servers, with the shard map the storage service uses. The suite writes
//! channels unique to the run, so it shares the databases with other tests.

use chatmesh_integration_tests::Infra;
use chatmesh_integration_tests::messages::Shards;
use chatmesh_storage::store::PostgresStore;
use tokio::sync::OnceCell;

/// The shard schema, migrated once per test binary: parallel migrations of
/// one database would race.
static MIGRATED: OnceCell<()> = OnceCell::const_new();

/// A store over every shard database of the infrastructure.
async fn postgres_store() -> PostgresStore {
    let infra = Infra::load().expect("infrastructure state");
    MIGRATED
        .get_or_init(|| async {
            for url in &infra.shard_urls {
                chatmesh_db::migrate(url, chatmesh_db::MigrationSet::Shard)
                    .await
                    .expect("shard migration");
            }
        })
        .await;
    let shards = Shards::new(&infra).expect("shard map");
    PostgresStore::new(shards.map().clone())
}

chatmesh_storage::message_store_suite!(postgres_store().await);
