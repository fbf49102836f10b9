//! Snowflake worker IDs are leased: two chat instances configured with the
//! same ID never mint IDs at the same time, and the ID passes to the second
//! once the first shuts down.

use std::net::SocketAddr;
use std::time::Duration;

use chatmesh_integration_tests::sandbox::health;
use chatmesh_integration_tests::{Infra, wait};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Chat {
    grpc: SocketAddr,
    admin: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start_chat(infra: &Infra, worker: u16) -> anyhow::Result<Chat> {
    let config: chatmesh_chat::ChatConfig = toml::from_str(&format!(
        "worker_id = {worker}\nworker_lease_ttl = \"3s\"\n[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\nprobe_interval = \"200ms\"\n{}{}[directory]\nurl = {:?}\n",
        infra.redis_toml(),
        infra.kafka_toml(),
        infra.directory_url
    ))?;
    let listeners = chatmesh_server::Listeners {
        grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    };
    let (grpc, admin) = (listeners.grpc_addr(), listeners.admin_addr());
    let stop = CancellationToken::new();
    let task = tokio::spawn(chatmesh_chat::serve(config, listeners, stop.clone()));
    Ok(Chat {
        grpc,
        admin,
        stop,
        task,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_worker_id_one_live_instance() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    // High IDs: automatic leases elsewhere start at random points.
    let worker = 1000 + (uuid::Uuid::new_v4().as_u128() % 23) as u16;
    let first = start_chat(&infra, worker).await?;
    wait::until("first SERVING", Duration::from_secs(30), || {
        health(first.grpc, "")
    })
    .await?;

    // The second instance reaches every dependency but not the lease.
    let second = start_chat(&infra, worker).await?;
    let readyz = format!("http://{}/readyz", second.admin);
    wait::until("second refused the lease", Duration::from_secs(30), || {
        let readyz = readyz.clone();
        async move {
            let body = reqwest::get(&readyz).await?.text().await?;
            let others_ok = ["redis: ok", "kafka: ok", "postgres:directory: ok"]
                .iter()
                .all(|d| body.contains(d));
            anyhow::ensure!(
                others_ok && body.contains("worker-id-lease: no snowflake worker id leased"),
                "{body}"
            );
            Ok(())
        }
    })
    .await?;
    assert!(
        health(second.grpc, "").await.is_err(),
        "two live instances hold worker id {worker}"
    );

    // Shutting the first down releases the lease; the second takes it.
    first.stop.cancel();
    first.task.await??;
    wait::until("second SERVING", Duration::from_secs(30), || {
        health(second.grpc, "")
    })
    .await?;
    second.stop.cancel();
    second.task.await??;
    Ok(())
}
