//! Past a chat instance's concurrency limit, calls fail fast with a
//! retryable error instead of queueing, and the calls it accepts keep the
//! latency of an instance at its limit with nothing to refuse. A test
//! binary of its own, so no other test shares the machine while it
//! measures latency.

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
    // as the limit admits, with no excess to refuse.
    let alone = |round: usize| {
        let send = send.clone();
        async move {
            let mut times = Vec::new();
            for i in 0..300 {
                let (took, result) = send.send(format!("alone-{round}-{i}")).await;
                result?;
                times.push(took);
            }
            times.sort();
            anyhow::Ok(times)
        }
    };
    let at_limit = |round: usize| {
        let send = send.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for caller in 0..8 {
                let send = send.clone();
                tasks.spawn(async move {
                    let mut times = Vec::new();
                    for i in 0..40 {
                        let (took, result) = send.send(format!("eight-{round}-{caller}-{i}")).await;
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
            times.sort();
            anyhow::Ok(times)
        }
    };
    // 200 callers, each with one send in flight for 4 s, from 4
    // connections as 4 gateways would make them. A refused caller backs
    // off as the browser SDK does on a retryable error (full jitter over
    // 100 ms doubling per refusal, up to 5 s, plus 20 ms) and sends again.
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(ChatServiceClient::new(endpoint.connect().await?));
    }
    let crowd = |round: usize| {
        let (send, connections) = (send.clone(), connections.clone());
        async move {
            let until = Instant::now() + Duration::from_secs(4);
            let mut tasks = tokio::task::JoinSet::new();
            for caller in 0..200_usize {
                let send = Sender {
                    client: connections[caller % connections.len()].clone(),
                    ..send.clone()
                };
                tasks.spawn(async move {
                    let (mut accepted, mut shed) = (Vec::new(), Vec::new());
                    let (mut i, mut refusals) = (0, 0_u32);
                    while Instant::now() < until {
                        let (took, result) = send.send(format!("crowd-{round}-{caller}-{i}")).await;
                        i += 1;
                        match result {
                            Ok(_) => {
                                accepted.push(took);
                                refusals = 0;
                            }
                            Err(status) => {
                                shed.push((took, status));
                                let ceiling = (100_u64 << refusals.min(6)).min(5_000);
                                refusals += 1;
                                let backoff = rand::random_range(0..ceiling) + 20;
                                tokio::time::sleep(Duration::from_millis(backoff)).await;
                            }
                        }
                    }
                    (accepted, shed)
                });
            }
            let (mut accepted, mut shed) = (Vec::new(), Vec::new());
            while let Some(done) = tasks.join_next().await {
                let (a, s) = done?;
                accepted.extend(a);
                shed.extend(s);
            }
            accepted.sort();
            anyhow::Ok((accepted, shed))
        }
    };

    // Five rounds, each measuring the two baselines right before its
    // crowd, so each crowd is compared with the machine as it was then; the
    // broker's acknowledgement dominates a send and its latency drifts over
    // a run. The median round is judged, so one round that lands on a
    // broker stall (seen on either side of the ratio) does not decide.
    let (mut against_unloaded, mut against_limit) = (Vec::new(), Vec::new());
    let (mut all_accepted, mut all_shed) = (Vec::new(), Vec::new());
    for round in 0..5 {
        let unloaded = alone(round).await?;
        let limit_only = at_limit(round).await?;
        let (accepted, shed) = crowd(round).await?;
        let mut shed_times: Vec<Duration> = shed.iter().map(|(t, _)| *t).collect();
        shed_times.sort();
        let (unloaded_p99, limit_p99) =
            (percentile(&unloaded, 0.99), percentile(&limit_only, 0.99));
        let accepted_p99 = percentile(&accepted, 0.99);
        eprintln!(
            "round {round}: one at a time p50 {:?} p99 {unloaded_p99:?}; 8 callers p50 {:?} p99 {limit_p99:?}; 200 callers: {} accepted, p50 {:?} p99 {accepted_p99:?}; {} shed, p50 {:?} p99 {:?}",
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
            "round {round}: nothing was shed with 200 callers and a limit of 8"
        );
        assert!(!accepted.is_empty(), "round {round}: nothing was accepted");
        against_unloaded.push(accepted_p99.as_secs_f64() / unloaded_p99.as_secs_f64());
        against_limit.push(accepted_p99.as_secs_f64() / limit_p99.as_secs_f64());
        all_accepted.extend(accepted);
        all_shed.extend(shed);
    }
    for (_, status) in &all_shed {
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
    // twice that of as many callers as the limit admits, rather than
    // growing with a queue of 200. The ratio to one call at a time is
    // printed, not asserted: on two cores, eight concurrent sends already
    // contend for the same cores (and for the broker's one writer) before
    // any excess arrives, so that ratio measures the machine more than the
    // limit (1.4 to 2.5 over the runs here).
    let median = |ratios: &mut Vec<f64>| {
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    eprintln!(
        "accepted p99 ÷ one at a time: {against_unloaded:.2?}, median {:.2}; ÷ 8 callers: {against_limit:.2?}",
        median(&mut against_unloaded)
    );
    assert!(
        median(&mut against_limit) < 2.0,
        "accepted p99 ÷ 8-caller p99 by round: {against_limit:.2?}"
    );
    all_accepted.sort();
    let mut shed_times: Vec<Duration> = all_shed.iter().map(|(t, _)| *t).collect();
    shed_times.sort();
    // Refused at once, not after a wait in a queue.
    assert!(
        percentile(&shed_times, 0.5) < percentile(&all_accepted, 0.5),
        "refusals took {:?} (p50), accepted sends {:?}",
        percentile(&shed_times, 0.5),
        percentile(&all_accepted, 0.5)
    );
    Ok(())
}
