//! The storage service migrates every shard database, on both Postgres
//! servers, before it reports SERVING.

use std::time::Duration;

use chatmesh_integration_tests::sandbox::health;
use chatmesh_integration_tests::{Infra, wait};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use tokio_util::sync::CancellationToken;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn admin(infra: &Infra, server: char) -> anyhow::Result<AsyncPgConnection> {
    Ok(AsyncPgConnection::establish(&infra.postgres_url(server, "postgres")).await?)
}

#[tokio::test]
async fn storage_migrates_every_shard_on_both_servers() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    // Two fresh shard databases on each server, so the migrations really run.
    let shards: Vec<(char, String)> = ['a', 'a', 'b', 'b']
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, format!("chatmesh_test_{run}_{i}")))
        .collect();
    for (server, db) in &shards {
        diesel::sql_query(format!("CREATE DATABASE {db}"))
            .execute(&mut admin(&infra, *server).await?)
            .await?;
    }
    let urls: Vec<String> = shards
        .iter()
        .map(|(s, db)| infra.postgres_url(*s, db))
        .collect();
    let topic = format!("chatmesh.test.{run}");
    infra.create_topic(&topic).await?;

    let config: chatmesh_storage::StorageConfig = toml::from_str(&format!(
        "consumer_group = \"test-{run}\"\n[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\nprobe_interval = \"200ms\"\n{}[directory]\nurl = {:?}\n{}",
        infra.kafka_toml_for(&topic),
        infra.directory_url,
        Infra::shards_toml(&urls, 64)
    ))?;
    let listeners = chatmesh_server::Listeners {
        grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    };
    let addr = listeners.grpc_addr();
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(chatmesh_storage::serve(config, listeners, shutdown.clone()));
    wait::until("storage SERVING", Duration::from_secs(60), || {
        health(addr, "chatmesh.storage.v1.StorageService")
    })
    .await?;

    for url in &urls {
        let mut conn = AsyncPgConnection::establish(url).await?;
        let tables: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'messages'",
        )
        .get_result(&mut conn)
        .await?;
        assert_eq!(tables.n, 1, "messages table missing on {url}");
        let applied: Count =
            diesel::sql_query("SELECT count(*) AS n FROM __diesel_schema_migrations")
                .get_result(&mut conn)
                .await?;
        assert!(applied.n >= 1, "no migrations recorded on {url}");
    }

    shutdown.cancel();
    service.await??;
    for (server, db) in &shards {
        diesel::sql_query(format!("DROP DATABASE {db} WITH (FORCE)"))
            .execute(&mut admin(&infra, *server).await?)
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn shard_databases_span_both_servers() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let on = |port: u16| {
        infra
            .shard_urls
            .iter()
            .filter(|u| u.contains(&format!(":{port}/")))
            .count()
    };
    assert!(
        on(infra.pg_a_port) >= 1 && on(infra.pg_b_port) >= 1,
        "{:?}",
        infra.shard_urls
    );
    for url in &infra.shard_urls {
        chatmesh_db::migrate(url, chatmesh_db::MigrationSet::Shard).await?;
        let mut conn = AsyncPgConnection::establish(url).await?;
        let rows: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'messages'",
        )
        .get_result(&mut conn)
        .await?;
        assert_eq!(rows.n, 1, "{url}");
    }
    Ok(())
}
