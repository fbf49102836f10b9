//! Chat's lookups of stored messages (an edit, delete or reaction checks
//! the message it changes) spread over every storage instance, and survive
//! one that dies. Real processes over real connections: two storage
//! instances in one consumer group, and a chat instance configured with a
//! list of both; each storage instance's own request counter (its
//! `/metrics`) says how many lookups it served.

use std::net::SocketAddr;
use std::time::Duration;

use chatmesh_integration_tests::fixtures::{channel_id, create_channel_at};
use chatmesh_integration_tests::sandbox::{channel, health};
use chatmesh_integration_tests::storage_process::{self, StorageProcess, samples};
use chatmesh_integration_tests::{Infra, process, wait};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::storage::v1::GetMessageRequest;
use chatmesh_proto::storage::v1::storage_service_client::StorageServiceClient;

/// Edits made in each phase; each looks its post up once.
const EDITS: u64 = 60;

/// `GetMessage` calls `storage` served, from its own metrics (every status).
async fn lookups_served(storage: &StorageProcess) -> anyhow::Result<u64> {
    let text = storage.metrics().await?;
    Ok(samples(&text, "chatmesh_grpc_server_requests_total")
        .iter()
        .filter(|(labels, _)| labels.contains("method=\"GetMessage\""))
        .map(|(_, v)| *v as u64)
        .sum())
}

/// The sum of the samples of `metric` on the admin port `admin` whose
/// labels contain `label`.
async fn counter(admin: SocketAddr, metric: &str, label: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(samples(&text, metric)
        .iter()
        .filter(|(labels, _)| labels.contains(label))
        .map(|(_, v)| *v as u64)
        .sum())
}

/// Makes `EDITS` edits of post `seq`, one at a time, and returns the
/// errors of those that failed.
async fn edits(
    client: &mut ChatServiceClient<tonic::transport::Channel>,
    channel_id: &str,
    seq: u64,
    phase: &str,
) -> Vec<String> {
    let mut failed = Vec::new();
    for i in 0..EDITS {
        let request = chat::EditMessageRequest {
            channel_id: channel_id.to_owned(),
            sender_id: "ann".into(),
            target_seq: seq,
            body: format!("{phase} edit {i}"),
            idempotency_key: String::new(),
        };
        if let Err(status) = client.edit_message(request).await {
            failed.push(format!("edit {i}: {status:?}"));
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_look_up_posts_on_every_storage_instance_and_survive_one_dying() -> anyhow::Result<()>
{
    chatmesh_integration_tests::logs();
    let infra = Infra::load()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("chatmesh.test.storage-balancing-{run}");
    infra.create_topic(&topic).await?;

    // Two members of one consumer group, each with its own static ID.
    let base = storage_process::config(
        &infra,
        &topic,
        &format!("chatmesh-storage-balancing-{run}"),
        "1s",
        "",
    );
    let mut storages = Vec::new();
    for name in ["a", "b"] {
        let config = storage_process::with_fields(
            &base,
            &[&format!("instance_id = \"storage-{name}-{run}\"")],
        );
        storages.push(StorageProcess::start(&config).await?);
    }
    for storage in &storages {
        wait::until("storage SERVING", Duration::from_secs(60), || {
            health(storage.grpc, "")
        })
        .await?;
    }

    // One chat instance, given both storage instances as a list.
    let dir = process::scratch_dir("chatmesh-chat")?;
    let config = dir.join("chat.toml");
    std::fs::write(
        &config,
        format!(
            "storage = [\"http://{}\", \"http://{}\"]\n\
             [server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
             probe_interval = \"200ms\"\nshutdown_grace = \"2s\"\n\
             [telemetry]\nlog = \"info\"\njson = true\n\
             {}{}[directory]\nurl = {:?}\n\
             [limits]\nuser_per_second = 100000\nchannel_per_second = 100000\n",
            storages[0].grpc,
            storages[1].grpc,
            infra.redis_toml(),
            infra.kafka_toml_for(&topic),
            infra.directory_url,
        ),
    )?;
    let log = dir.join("chat.log");
    let (_chat, (chat_grpc, chat_admin)) = process::spawn_until(
        &process::binary("chatmesh-chat")?,
        &config,
        &log,
        storage_process::serving,
    )
    .await?;
    wait::until("chat SERVING", Duration::from_secs(60), || {
        health(chat_grpc, "")
    })
    .await?;

    // A post, stored before it is edited.
    let channel_id = channel_id("storage-balancing");
    create_channel_at(chat_grpc, &channel_id, ModerationPolicy::Reject, &["ann"]).await?;
    let mut client = ChatServiceClient::new(channel(chat_grpc));
    let post = client
        .send_message(chat::SendMessageRequest {
            channel_id: channel_id.clone(),
            sender_id: "ann".into(),
            body: "to be edited".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .message
        .ok_or_else(|| anyhow::anyhow!("a send answers its message"))?;
    let storage_a = StorageServiceClient::new(channel(storages[0].grpc));
    wait::until("the post stored", Duration::from_secs(30), || {
        let mut storage_a = storage_a.clone();
        let request = GetMessageRequest {
            channel_id: channel_id.clone(),
            seq: post.seq,
        };
        async move { storage_a.get_message(request).await }
    })
    .await?;

    // Both instances serve the lookups. Made one at a time, they go to
    // whichever instance answered faster lately, so the split is even only
    // roughly.
    let before = [
        lookups_served(&storages[0]).await?,
        lookups_served(&storages[1]).await?,
    ];
    let failed = edits(&mut client, &channel_id, post.seq, "spread").await;
    assert!(failed.is_empty(), "failed edits: {failed:#?}");
    let served = [
        lookups_served(&storages[0]).await? - before[0],
        lookups_served(&storages[1]).await? - before[1],
    ];
    let total: u64 = served.iter().sum();
    eprintln!("lookups served by storage a and b: {served:?}");
    assert!(total >= EDITS, "{total} lookups for {EDITS} edits");
    for (name, n) in ["a", "b"].iter().zip(served) {
        let share = n as f64 / total as f64;
        assert!(
            share >= 0.1,
            "storage {name} served {:.1}% of the lookups: {served:?}",
            share * 100.0
        );
    }

    // SIGKILL one: every edit still succeeds, on the other.
    storages[1].kill().await?;
    let before = lookups_served(&storages[0]).await?;
    let failed = edits(&mut client, &channel_id, post.seq, "survive").await;
    let retries = counter(
        chat_admin,
        "chatmesh_upstream_retries_total",
        "service=\"storage\"",
    )
    .await?;
    let ejections = counter(
        chat_admin,
        "chatmesh_upstream_ejections_total",
        "service=\"storage\"",
    )
    .await?;
    eprintln!("with storage b dead: {retries} lookups retried, {ejections} ejections");
    assert!(
        failed.is_empty(),
        "failed edits with storage b dead: {failed:#?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let served = lookups_served(&storages[0]).await? - before;
    assert!(
        served >= EDITS,
        "storage a served {served} of {EDITS} lookups"
    );
    assert!(ejections >= 1, "storage b was never taken out");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
