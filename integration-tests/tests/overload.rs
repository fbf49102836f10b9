//! Past a chat instance's concurrency limit, calls fail fast with a
//! retryable error instead of queueing, and the calls it accepts keep the
//! latency of an unloaded instance. A test binary of its own, so no other
//! test shares the machine while it measures latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmesh_integration_tests::fixtures::create_channel_at;
use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_proto::common::v1::ModerationPolicy;
use tonic_types::StatusExt as _;

/// Sends into one channel straight to a chat instance.
#[derive(Clone)]
struct Sender {
    client: ChatServiceClient<tonic::transport::Channel>,
    channel: String,
    user: String,
}

impl Sender {
    async fn send(
        &self,
        key: String,
    ) -> (
        Duration,
        Result<tonic::Response<chat::SendMessageResponse>, tonic::Status>,
    ) {
        let mut client = self.client.clone();
        let request = chat::SendMessageRequest {
            channel_id: self.channel.clone(),
            sender_id: self.user.clone(),
            body: key.clone(),
            attachments: Vec::new(),
            idempotency_key: key,
            reply_to: 0,
        };
        let started = Instant::now();
        let result = client.send_message(request).await;
        (started.elapsed(), result)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_the_concurrency_limit_calls_fail_fast_and_the_rest_stay_fast() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let mesh = Mesh::start(MeshOptions {
        chats: 1,
        gateways: 1,
        chat_server: "max_concurrent_requests = 8".into(),
        ..MeshOptions::default()
    })
    .await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let channel = format!("overload-{run}");
    let user = format!("overload-user-{run}");
    create_channel_at(mesh.chats[0], &channel, ModerationPolicy::Reject, &[&user]).await?;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", mesh.chats[0]))?
        .tcp_nodelay(true);
    let client = ChatServiceClient::new(endpoint.connect().await?);
    let send = Sender {
        client,
        channel,
        user,
    };

    // Unloaded: one send at a time; and at the limit: 8 callers, as many
    // as the limit admits, with no excess to refuse. Each before and after
    // the overload, so both see the machine as it was during it.
    let alone = |phase: &'static str| {
        let send = send.clone();
        async move {
            let mut times = Vec::new();
            for i in 0..300 {
                let (took, result) = send.send(format!("alone-{phase}-{i}")).await;
                result?;
                times.push(took);
            }
            anyhow::Ok(times)
        }
    };
    let at_limit = |phase: &'static str| {
        let send = send.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for caller in 0..8 {
                let send = send.clone();
                tasks.spawn(async move {
                    let mut times = Vec::new();
                    for i in 0..40 {
                        let (took, result) = send.send(format!("eight-{phase}-{caller}-{i}")).await;
                        result?;
                        times.push(took);
                    }
                    anyhow::Ok(times)
                });
            }
            let mut times = Vec::new();
            while let Some(done) = tasks.join_next().await {
                times.extend(done??);
            }
            anyhow::Ok(times)
        }
    };
    let mut unloaded = alone("before").await?;
    let mut limit_only = at_limit("before").await?;

    // 200 callers, each with one send in flight for 4 s, from 4
    // connections as 4 gateways would make them. A refused caller backs
    // off as the browser SDK does on a retryable error (full jitter over
    // 100 ms doubling per refusal, up to 5 s, plus 20 ms) and sends again.
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(ChatServiceClient::new(endpoint.connect().await?));
    }
    let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let shed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(4);
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..200_usize {
        let send = Sender {
            client: connections[caller % connections.len()].clone(),
            ..send.clone()
        };
        let (accepted, shed) = (accepted.clone(), shed.clone());
        tasks.spawn(async move {
            let (mut i, mut refusals) = (0, 0_u32);
            while Instant::now() < until {
                let (took, result) = send.send(format!("crowd-{caller}-{i}")).await;
                i += 1;
                match result {
                    Ok(_) => {
                        accepted.lock().unwrap().push(took);
                        refusals = 0;
                    }
                    Err(status) => {
                        shed.lock().unwrap().push((took, status));
                        let ceiling = (100_u64 << refusals.min(6)).min(5_000);
                        refusals += 1;
                        let backoff = rand::random_range(0..ceiling) + 20;
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.transpose()?.is_some() {}
    unloaded.extend(alone("after").await?);
    limit_only.extend(at_limit("after").await?);
    unloaded.sort();
    limit_only.sort();
    let unloaded_p99 = percentile(&unloaded, 0.99);
    let limit_p99 = percentile(&limit_only, 0.99);
    let mut accepted = accepted.lock().unwrap().clone();
    accepted.sort();
    let shed = std::mem::take(&mut *shed.lock().unwrap());
    let mut shed_times: Vec<Duration> = shed.iter().map(|(t, _)| *t).collect();
    shed_times.sort();
    let accepted_p99 = percentile(&accepted, 0.99);
    eprintln!(
        "one at a time p50 {:?} p99 {unloaded_p99:?}; 8 callers p50 {:?} p99 {limit_p99:?}; 200 callers: {} accepted, p50 {:?} p99 {accepted_p99:?}; {} shed, p50 {:?} p99 {:?}",
        percentile(&unloaded, 0.5),
        percentile(&limit_only, 0.5),
        accepted.len(),
        percentile(&accepted, 0.5),
        shed.len(),
        percentile(&shed_times, 0.5),
        percentile(&shed_times, 0.99),
    );
    assert!(
        !shed.is_empty(),
        "nothing was shed with 200 callers and a limit of 8"
    );
    assert!(!accepted.is_empty(), "nothing was accepted");
    for (_, status) in &shed {
        let reason = status
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone());
        assert_eq!(
            (status.code(), reason.as_deref()),
            (tonic::Code::Unavailable, Some("overloaded")),
            "{status:?}"
        );
    }
    // The excess costs the accepted calls little: their p99 stays under
    // twice that of one call at a time, and under twice that of as many
    // callers as the limit admits, rather than growing with a queue of 200.
    assert!(
        accepted_p99 < unloaded_p99 * 2,
        "accepted p99 {accepted_p99:?} against {unloaded_p99:?} one at a time"
    );
    assert!(
        accepted_p99 < limit_p99 * 2,
        "accepted p99 {accepted_p99:?} against {limit_p99:?} with 8 callers"
    );
    // Refused at once, not after a wait in a queue.
    assert!(
        percentile(&shed_times, 0.5) < percentile(&accepted, 0.5),
        "refusals took {:?} (p50), accepted sends {:?}",
        percentile(&shed_times, 0.5),
        percentile(&accepted, 0.5)
    );
    Ok(())
}
