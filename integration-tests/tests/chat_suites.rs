//! The chat service's real adapters against the shared trait suites that
//! the in-memory stores pass too (Redis, Kafka, Postgres), then what the
//! other services depend on: the wire formats and key names they read, and
//! a worker ID lease that is gone once the service has shut down.

use std::net::SocketAddr;
use std::time::Duration;

use chatmesh_chat::adapters::{
    KafkaLog, RedisAdmission, RedisFanOut, RedisIdempotency, RedisRateLimiter, RedisSequencer,
};
use chatmesh_chat::lease::{WorkerLease, lease_key};
use chatmesh_chat::memory::{Appended, ManualClock};
use chatmesh_chat::ports::{
    Claim, FanOut as _, IdempotencyKey, IdempotencyStore as _, MessageLog, Sequencer as _,
};
use chatmesh_chat::testsuite::sequencer::CounterFaults;
use chatmesh_chat::testsuite::{
    LogReader, SuiteResult, message, suite_limits, unique_channel, unique_user,
};
use chatmesh_chat::{ChatError, Directory};
use chatmesh_ids::{ChannelId, ChatMessage, Snowflake};
use chatmesh_integration_tests::sandbox::{channel, health};
use chatmesh_integration_tests::{Infra, wait};
use chatmesh_proto::chat::v1 as pb;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_proto::common::v1::{Message, ModerationPolicy};
use chatmesh_server::Tasks;
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Headers as _;
use tokio_util::sync::CancellationToken;

fn redis() -> anyhow::Result<chatmesh_redis::Cluster> {
    Infra::load()?.redis()
}

/// The directory database, migrated, through the chat service's adapter.
async fn directory() -> anyhow::Result<Directory> {
    let infra = Infra::load()?;
    chatmesh_db::migrate(&infra.directory_url, chatmesh_db::MigrationSet::Directory).await?;
    let config: chatmesh_config::PostgresConfig =
        toml::from_str(&format!("url = {:?}", infra.directory_url))?;
    Ok(Directory::new(chatmesh_db::connect(&config)))
}

/// Partitions of the topics `Infra::create_topic` makes.
const PARTITIONS: i32 = 8;

/// A Kafka log on a topic of its own, and a consumer reading that topic
/// from the start.
struct KafkaUnderTest {
    log: KafkaLog,
    consumer: StreamConsumer,
}

async fn kafka_log() -> anyhow::Result<KafkaUnderTest> {
    let infra = Infra::load()?;
    let topic = format!("chatmesh.suite.{}", uuid::Uuid::new_v4().simple());
    infra.create_topic(&topic).await?;
    let config: chatmesh_config::KafkaConfig = toml::from_str(&format!(
        "brokers = {:?}\ntopic = {topic:?}",
        infra.kafka_brokers
    ))?;
    let consumer = chatmesh_kafka::consumer(&config, &format!("suite-{topic}"))?;
    let mut partitions = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        partitions.add_partition_offset(&topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&partitions)?;
    Ok(KafkaUnderTest {
        log: KafkaLog::new(config)?,
        consumer,
    })
}

#[tonic::async_trait]
impl MessageLog for KafkaUnderTest {
    async fn append(
        &self,
        message: &ChatMessage,
        traceparent: Option<&str>,
    ) -> Result<(), ChatError> {
        self.log.append(message, traceparent).await
    }
}

/// One consumed record: its key, its payload bytes and what they decode to.
struct Record {
    key: Vec<u8>,
    payload: Vec<u8>,
    appended: Appended,
}

impl KafkaUnderTest {
    async fn records(&self, channel: &ChannelId, count: usize) -> anyhow::Result<Vec<Record>> {
        let mut found = Vec::new();
        let read = async {
            while found.len() < count {
                let m = self.consumer.recv().await?;
                let payload = m.payload().unwrap_or_default().to_vec();
                let message = ChatMessage::try_from(Message::decode(payload.as_slice())?)?;
                if &message.channel != channel {
                    continue;
                }
                let traceparent = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                found.push(Record {
                    key: m.key().unwrap_or_default().to_vec(),
                    payload,
                    appended: Appended {
                        message,
                        traceparent,
                    },
                });
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .map_err(|_| anyhow::anyhow!("only {} of {count} records arrived", found.len()))??;
        Ok(found)
    }
}

#[tonic::async_trait]
impl LogReader for KafkaUnderTest {
    async fn read(&self, channel: &ChannelId, count: usize) -> SuiteResult<Vec<Appended>> {
        let records = self.records(channel, count).await?;
        Ok(records.into_iter().map(|r| r.appended).collect())
    }
}

/// The Redis sequencer, with the faults of a Redis Cluster made by hand:
/// a flush deletes the counter, a failover leaves it behind under another
/// master's replication ID.
struct RedisCounters {
    redis: chatmesh_redis::Cluster,
    seq: RedisSequencer,
}

async fn redis_counters() -> anyhow::Result<RedisCounters> {
    let infra = Infra::load()?;
    Ok(RedisCounters {
        redis: infra.redis()?,
        seq: infra.sequencer().await?,
    })
}

#[tonic::async_trait]
impl chatmesh_chat::ports::Sequencer for RedisCounters {
    async fn next(&self, channel: &ChannelId) -> Result<u64, ChatError> {
        self.seq.next(channel).await
    }

    async fn release(&self, channel: &ChannelId, seq: u64) -> Result<(), ChatError> {
        self.seq.release(channel, seq).await
    }

    async fn give_back(&self, channel: &ChannelId, seq: u64) -> Result<(), ChatError> {
        self.seq.give_back(channel, seq).await
    }
}

#[tonic::async_trait]
impl CounterFaults for RedisCounters {
    async fn lose(&self, channel: &ChannelId) -> SuiteResult<()> {
        let mut conn = self.redis.conn().await?;
        redis::cmd("DEL")
            .arg(chatmesh_redis::keys::seq(channel.as_str()))
            .arg(chatmesh_redis::keys::seq_origin(channel.as_str()))
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn fail_over(&self, channel: &ChannelId, behind: u64) -> SuiteResult<()> {
        let mut conn = self.redis.conn().await?;
        redis::pipe()
            .cmd("DECRBY")
            .arg(chatmesh_redis::keys::seq(channel.as_str()))
            .arg(behind)
            .ignore()
            .cmd("SET")
            .arg(chatmesh_redis::keys::seq_origin(channel.as_str()))
            .arg("a-master-that-failed")
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

chatmesh_chat::sequencer_suite!(redis_counters().await?);
chatmesh_chat::idempotency_suite!(RedisIdempotency::new(redis()?));
chatmesh_chat::rate_limiter_suite!(RedisRateLimiter::with_clock(
    redis()?,
    &suite_limits(),
    ManualClock::stopped_now()
));
/// A user's sends through two chat instances count together: each holds
/// the user to the limit on its own at once, and learns of the other's
/// sends when its next batch of counts comes back from Redis.
#[tokio::test]
async fn chat_instances_share_a_users_window() -> anyhow::Result<()> {
    use chatmesh_chat::ports::RateLimiter as _;
    let clock = ManualClock::stopped_now();
    let limits = suite_limits();
    let a = RedisRateLimiter::with_clock(redis()?, &limits, clock.clone());
    let b = RedisRateLimiter::with_clock(redis()?, &limits, clock.clone());
    let user = unique_user("shared-window");
    let refused =
        |r: Result<(), ChatError>| matches!(r, Err(ChatError::RateLimited { scope: "user" }));
    for _ in 0..limits.user_per_second {
        a.check_user(&user).await?;
    }
    assert!(refused(a.check_user(&user).await), "a passed the limit");

    // a adds its counts in the background, without being asked.
    let key = chatmesh_redis::keys::user_rates(
        chatmesh_redis::keys::user_rate_bucket(user.as_str()),
        chatmesh_ids::Clock::now_ms(&clock) / 1000,
    );
    let cluster = redis()?;
    wait::until("a's counts in Redis", Duration::from_secs(5), || {
        let (cluster, key, user) = (cluster.clone(), key.clone(), user.clone());
        async move {
            let mut conn = cluster.conn().await?;
            let count: Option<u32> = redis::cmd("HGET")
                .arg(&key)
                .arg(user.as_str())
                .query_async(&mut conn)
                .await?;
            anyhow::ensure!(count == Some(limits.user_per_second), "{count:?}");
            Ok(())
        }
    })
    .await?;

    // b had no word of them before its first send; the answer to its
    // batch brings them, and b refuses from then on.
    b.check_user(&user).await?;
    b.user_windows().flush().await?;
    assert!(
        refused(b.check_user(&user).await),
        "b passed the shared limit"
    );
    // Another user is untouched on both.
    let other = unique_user("shared-window-other");
    a.check_user(&other).await?;
    b.check_user(&other).await?;
    Ok(())
}

chatmesh_chat::admission_suite!({
    let infra = Infra::load()?;
    let idempotency = RedisIdempotency::new(infra.redis()?);
    chatmesh_chat::testsuite::admission::Admitter {
        admission: std::sync::Arc::new(RedisAdmission::with_clock(
            infra.sequencer().await?,
            idempotency.clone(),
            &suite_limits(),
            ManualClock::stopped_now(),
        )),
        idempotency: std::sync::Arc::new(idempotency),
    }
});
chatmesh_chat::fan_out_suite!(RedisFanOut::new(redis()?, suite_limits().recent_history));
chatmesh_chat::settlement_suite!({
    let redis = redis()?;
    let fanout = std::sync::Arc::new(RedisFanOut::new(
        redis.clone(),
        suite_limits().recent_history,
    ));
    chatmesh_chat::testsuite::settlement::Settler {
        settlement: fanout.clone(),
        idempotency: std::sync::Arc::new(RedisIdempotency::new(redis)),
        fanout,
    }
});
chatmesh_chat::message_log_suite!(kafka_log().await?);
chatmesh_chat::directory_suite!(directory().await?);

fn ids() -> Snowflake {
    Snowflake::new(5).expect("5 is a worker ID")
}

/// The storage service decodes the record payload as a Protobuf `Message`;
/// the record key keeps a channel on one partition.
#[tokio::test]
async fn a_log_record_is_the_proto_message_keyed_by_channel() -> anyhow::Result<()> {
    let kafka = kafka_log().await?;
    let channel = unique_channel("wire-log");
    let m = message(&ids(), &channel, &unique_user("sender"), 1);
    kafka.append(&m, None).await?;
    let records = kafka.records(&channel, 1).await?;
    assert_eq!(records[0].key, channel.as_str().as_bytes());
    assert_eq!(records[0].payload, Message::from(&m).encode_to_vec());
    Ok(())
}

/// The gateway reads the recent window as Protobuf `Message`s scored by
/// seq; the trace context of the live copy stays out of it.
#[tokio::test]
async fn the_recent_window_holds_proto_messages_scored_by_seq() -> anyhow::Result<()> {
    let redis = redis()?;
    let fanout = RedisFanOut::new(redis.clone(), 10);
    let channel = unique_channel("wire-recent");
    let sent: Vec<_> = (1..=2)
        .map(|seq| message(&ids(), &channel, &unique_user("sender"), seq))
        .collect();
    for m in &sent {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        fanout.publish(m, Some(traceparent)).await?;
    }
    let mut conn = redis.conn().await?;
    let stored: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
        .arg(chatmesh_redis::keys::recent(channel.as_str()))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await?;
    let want: Vec<_> = sent
        .iter()
        .map(|m| (Message::from(m).encode_to_vec(), m.seq as f64))
        .collect();
    assert_eq!(stored, want);
    Ok(())
}

/// The gateway skips void numbers it reads from `cm:{channel}:void`.
#[tokio::test]
async fn released_numbers_land_in_the_keys_the_gateway_reads() -> anyhow::Result<()> {
    let redis = redis()?;
    let seq = Infra::load()?.sequencer().await?;
    let channel = unique_channel("wire-void");
    for _ in 0..3 {
        seq.next(&channel).await?;
    }
    seq.release(&channel, 3).await?;
    seq.release(&channel, 1).await?;
    let mut conn = redis.conn().await?;
    let latest: u64 = redis::cmd("GET")
        .arg(chatmesh_redis::keys::seq(channel.as_str()))
        .query_async(&mut conn)
        .await?;
    assert_eq!(latest, 3, "the gateway reads the latest number here");
    let mut void: Vec<u64> = redis::cmd("SMEMBERS")
        .arg(chatmesh_redis::keys::void_seqs(channel.as_str()))
        .query_async(&mut conn)
        .await?;
    void.sort_unstable();
    assert_eq!(void, vec![1, 3]);
    let ttl: i64 = redis::cmd("TTL")
        .arg(chatmesh_redis::keys::void_seqs(channel.as_str()))
        .query_async(&mut conn)
        .await?;
    assert!(ttl > 0, "void numbers expire, ttl {ttl}");
    Ok(())
}

/// Idempotency keys keep their name and expire as configured.
#[tokio::test]
async fn idempotency_keys_live_under_their_shared_name_with_a_ttl() -> anyhow::Result<()> {
    let redis = redis()?;
    let store = RedisIdempotency::new(redis.clone());
    let key = IdempotencyKey {
        channel: unique_channel("wire-idem"),
        sender: unique_user("sender"),
        key: "k-1".into(),
    };
    let name =
        chatmesh_redis::keys::idempotency(key.channel.as_str(), key.sender.as_str(), &key.key);
    let m = message(&ids(), &key.channel, &key.sender, 1);
    assert_eq!(
        store.claim(&key, &m, Duration::from_secs(600)).await?,
        Claim::New
    );
    store.record(&key, &m, Duration::from_secs(600)).await?;
    let mut conn = redis.conn().await?;
    let (stored, ttl_ms): (Vec<u8>, i64) = redis::pipe()
        .cmd("GET")
        .arg(&name)
        .cmd("PTTL")
        .arg(&name)
        .query_async(&mut conn)
        .await?;
    assert_eq!(stored[0], b'S', "tagged as acknowledged");
    assert_eq!(stored[1..], Message::from(&m).encode_to_vec());
    assert!((1..=600_000).contains(&ttl_ms), "ttl {ttl_ms} ms");
    Ok(())
}

async fn lease_holder(
    conn: &mut chatmesh_redis::Conn,
    worker: u16,
) -> anyhow::Result<Option<String>> {
    Ok(redis::cmd("GET")
        .arg(lease_key(worker))
        .query_async(conn)
        .await?)
}

async fn leased(lease: &WorkerLease) -> anyhow::Result<u16> {
    wait::until("worker id leased", Duration::from_secs(30), || async {
        lease
            .ids()
            .map(Snowflake::worker)
            .ok_or_else(|| anyhow::anyhow!("no worker id yet"))
    })
    .await
}

#[tokio::test]
async fn draining_the_lease_task_deletes_its_key() -> anyhow::Result<()> {
    let redis = redis()?;
    let tasks = Tasks::new(CancellationToken::new());
    let lease = WorkerLease::start(redis.clone(), None, Duration::from_secs(3), &tasks);
    let worker = leased(&lease).await?;
    let mut conn = redis.conn().await?;
    assert!(lease_holder(&mut conn, worker).await?.is_some());

    assert!(
        tasks.drain(Duration::from_secs(10)).await,
        "lease task ended"
    );
    assert_eq!(lease_holder(&mut conn, worker).await?, None);
    assert!(lease.ids().is_none(), "no IDs after shutdown");
    Ok(())
}

#[tokio::test]
async fn a_lease_taken_over_is_not_deleted_on_shutdown() -> anyhow::Result<()> {
    let redis = redis()?;
    let tasks = Tasks::new(CancellationToken::new());
    let lease = WorkerLease::start(redis.clone(), None, Duration::from_secs(3), &tasks);
    let worker = leased(&lease).await?;
    let mut conn = redis.conn().await?;
    // As if the lease had expired and another instance had won it.
    redis::cmd("SET")
        .arg(lease_key(worker))
        .arg("another-instance")
        .arg("PX")
        .arg(30_000)
        .query_async::<()>(&mut conn)
        .await?;

    assert!(
        tasks.drain(Duration::from_secs(10)).await,
        "lease task ended"
    );
    let holder = lease_holder(&mut conn, worker).await?;
    redis::cmd("DEL")
        .arg(lease_key(worker))
        .query_async::<()>(&mut conn)
        .await?;
    assert_eq!(holder.as_deref(), Some("another-instance"));
    Ok(())
}

/// `serve` returns only once the lease is released, so a restarted
/// instance configured with the same worker ID gets it at once. The server
/// runs like a process: its runtime is dropped as soon as `serve` returns,
/// taking any task still running with it.
#[test]
fn serve_releases_its_worker_id_before_returning() -> anyhow::Result<()> {
    let client = tokio::runtime::Runtime::new()?;
    let infra = Infra::load()?;
    let topic = format!("chatmesh.suite.{}", uuid::Uuid::new_v4().simple());
    client.block_on(infra.create_topic(&topic))?;
    let config: chatmesh_chat::ChatConfig = toml::from_str(&format!(
        "worker_lease_ttl = \"30s\"\n[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\nprobe_interval = \"200ms\"\nshutdown_grace = \"5s\"\n{}{}[directory]\nurl = {:?}\n",
        infra.redis_toml(),
        infra.kafka_toml_for(&topic),
        infra.directory_url
    ))?;
    let (grpc, admin) = (
        std::net::TcpListener::bind("127.0.0.1:0")?,
        std::net::TcpListener::bind("127.0.0.1:0")?,
    );
    grpc.set_nonblocking(true)?;
    admin.set_nonblocking(true)?;
    let grpc_addr: SocketAddr = grpc.local_addr()?;
    let stop = CancellationToken::new();
    let server = std::thread::spawn({
        let stop = stop.clone();
        move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Runtime::new()?;
            let served = runtime.block_on(async move {
                let listeners = chatmesh_server::Listeners {
                    grpc: tokio::net::TcpListener::from_std(grpc)?,
                    admin: tokio::net::TcpListener::from_std(admin)?,
                };
                chatmesh_chat::serve(config, listeners, stop).await
            });
            drop(runtime);
            served
        }
    });

    let worker = client.block_on(async {
        wait::until("chat SERVING", Duration::from_secs(30), || {
            health(grpc_addr, "")
        })
        .await?;
        // The worker ID is in the bits of every message ID it mints.
        let mut chat = ChatServiceClient::new(channel(grpc_addr));
        let (room, user) = (unique_channel("lease"), unique_user("owner"));
        chat.create_channel(pb::CreateChannelRequest {
            channel_id: room.as_str().into(),
            name: String::new(),
            created_by: user.as_str().into(),
            moderation: ModerationPolicy::Reject as i32,
            ..Default::default()
        })
        .await?;
        let sent = chat
            .send_message(pb::SendMessageRequest {
                channel_id: room.as_str().into(),
                sender_id: user.as_str().into(),
                body: "hello".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let id = chatmesh_ids::MessageId::from_raw(sent.message.expect("a message").message_id);
        let mut conn = infra.redis()?.conn().await?;
        anyhow::ensure!(lease_holder(&mut conn, id.worker()).await?.is_some());
        anyhow::Ok(id.worker())
    })?;

    stop.cancel();
    server.join().expect("the server thread does not panic")?;
    // With a 30 s TTL, only a release can have removed it by now.
    let holder = client.block_on(async {
        let mut conn = infra.redis()?.conn().await?;
        lease_holder(&mut conn, worker).await
    })?;
    assert_eq!(holder, None, "worker id {worker} still leased");
    Ok(())
}
