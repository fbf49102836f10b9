//! Chat messages written straight to a topic in the chat service's record
//! format (a protobuf `Message` keyed by its channel ID, through the same
//! idempotent `acks=all` producer), and read back from the shard databases.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_config::{KafkaConfig, ShardMapConfig};
use chatmesh_db::ShardMap;
use chatmesh_ids::{ChannelId, Snowflake};
use chatmesh_proto::common::v1::Message;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl as _;
use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::Infra;

/// How long one send may wait in the producer's queue and for its ack.
const SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// A producer of chat messages onto one topic.
pub struct MessageLog {
    producer: FutureProducer,
    topic: String,
    ids: Snowflake,
}

impl fmt::Debug for MessageLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageLog")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl MessageLog {
    /// A producer onto `topic`. It lingers to batch many sends into one
    /// request; an ack still means the message is durable exactly once.
    pub fn new(infra: &Infra, topic: &str) -> anyhow::Result<Self> {
        let properties = [
            ("linger.ms", "20"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "1000000"),
            ("message.timeout.ms", "120000"),
        ];
        let config = KafkaConfig {
            brokers: infra.kafka_brokers.clone(),
            topic: topic.to_owned(),
            properties: properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let worker = (uuid::Uuid::new_v4().as_u128() % 1024) as u16;
        Ok(Self {
            producer: chatmesh_kafka::producer(&config)?,
            topic: topic.to_owned(),
            ids: Snowflake::new(worker).context("worker ID out of range")?,
        })
    }

    /// A message of `channel` with sequence number `seq` and a fresh ID.
    pub fn message(&self, channel: &str, seq: u64) -> Message {
        let id = self.ids.next_id();
        Message {
            message_id: id.get(),
            channel_id: channel.to_owned(),
            sender_id: "loader".into(),
            seq,
            body: format!("message {seq} of {channel}"),
            attachments: Vec::new(),
            created_at_ms: id.unix_ms() as i64,
            ..Message::default()
        }
    }

    /// Sends `message` and waits for its ack.
    pub async fn send(&self, message: &Message) -> anyhow::Result<()> {
        let payload = message.encode_to_vec();
        let record = FutureRecord::to(&self.topic)
            .key(&message.channel_id)
            .payload(&payload);
        self.producer
            .send(record, SEND_TIMEOUT)
            .await
            .map_err(|(err, _)| anyhow::anyhow!("send of {}: {err}", message.message_id))?;
        Ok(())
    }
}

/// One stored message: where it was found and its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, diesel::QueryableByName)]
pub struct StoredRow {
    /// Channel ID.
    #[diesel(sql_type = Text)]
    pub channel_id: String,
    /// Message ID.
    #[diesel(sql_type = BigInt)]
    pub message_id: i64,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The shard databases of the infrastructure, routed as the storage
/// service routes them.
#[derive(Debug, Clone)]
pub struct Shards {
    map: ShardMap,
}

#[derive(serde::Deserialize)]
struct ShardsSection {
    shards: ShardMapConfig,
}

impl Shards {
    /// The same shard map the sandbox and [`crate::storage_process`] use.
    pub fn new(infra: &Infra) -> anyhow::Result<Self> {
        let section: ShardsSection = toml::from_str(&Infra::shards_toml(&infra.shard_urls, 256))?;
        Ok(Self {
            map: ShardMap::connect(&section.shards),
        })
    }

    /// The shard map.
    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    /// Index of the shard that holds `channel`.
    pub fn home(&self, channel: &str) -> anyhow::Result<usize> {
        Ok(self.map.shard_index(&ChannelId::new(channel)?))
    }

    /// Rows of `channels` stored on shard `shard`.
    pub async fn count_on(&self, shard: usize, channels: &[String]) -> anyhow::Result<i64> {
        let mut conn = self.map.shards()[shard].pool.get().await?;
        let count: Count =
            diesel::sql_query("SELECT count(*) AS n FROM messages WHERE channel_id = ANY($1)")
                .bind::<Array<Text>, _>(channels)
                .get_result(&mut *conn)
                .await?;
        Ok(count.n)
    }

    /// Rows of `channels` stored on any shard.
    pub async fn count(&self, channels: &[String]) -> anyhow::Result<i64> {
        let mut total = 0;
        for shard in 0..self.map.shards().len() {
            total += self.count_on(shard, channels).await?;
        }
        Ok(total)
    }

    /// Waits until at least `expected` rows of `channels` are stored.
    pub async fn wait_for(
        &self,
        channels: &[String],
        expected: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        crate::wait::until("every acked message stored", timeout, || async move {
            let n = self.count(channels).await?;
            anyhow::ensure!(n >= expected, "{n} of {expected} stored");
            Ok(())
        })
        .await
    }

    /// Every stored row of `channels`, by the shard it was found on.
    pub async fn rows(&self, channels: &[String]) -> anyhow::Result<Vec<Vec<StoredRow>>> {
        let mut out = Vec::new();
        for shard in self.map.shards() {
            let mut conn = shard.pool.get().await?;
            out.push(
                diesel::sql_query(
                    "SELECT channel_id, message_id FROM messages WHERE channel_id = ANY($1)",
                )
                .bind::<Array<Text>, _>(channels)
                .load(&mut *conn)
                .await?,
            );
        }
        Ok(out)
    }
}

/// Stored rows compared with the acknowledged messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Acknowledged messages.
    pub acked: usize,
    /// Rows found, on any shard.
    pub stored: usize,
    /// Acknowledged but not stored.
    pub missing: usize,
    /// Rows stored more than once (the surplus copies).
    pub duplicates: usize,
    /// Rows that were never acknowledged.
    pub extra: usize,
    /// Rows on a shard other than their channel's.
    pub misplaced: usize,
}

impl Audit {
    /// Compares `rows` (indexed by shard) with `acked` (channel, message ID).
    pub fn of(
        acked: &HashSet<(String, u64)>,
        rows: &[Vec<StoredRow>],
        shards: &Shards,
    ) -> anyhow::Result<Self> {
        let mut audit = Self {
            acked: acked.len(),
            ..Self::default()
        };
        let mut seen: HashMap<(String, u64), usize> = HashMap::new();
        let mut homes: BTreeMap<&str, usize> = BTreeMap::new();
        for (shard, rows) in rows.iter().enumerate() {
            for row in rows {
                audit.stored += 1;
                let home = match homes.entry(&row.channel_id) {
                    Entry::Occupied(known) => *known.get(),
                    Entry::Vacant(new) => *new.insert(shards.home(&row.channel_id)?),
                };
                if home != shard {
                    audit.misplaced += 1;
                }
                let key = (row.channel_id.clone(), row.message_id as u64);
                *seen.entry(key).or_default() += 1;
            }
        }
        for (key, copies) in &seen {
            audit.duplicates += copies - 1;
            if !acked.contains(key) {
                audit.extra += 1;
            }
        }
        audit.missing = acked.iter().filter(|k| !seen.contains_key(*k)).count();
        Ok(audit)
    }

    /// Every acknowledged message stored once, on its shard, and nothing else.
    pub fn is_exact(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.extra == 0
            && self.misplaced == 0
            && self.stored == self.acked
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "acked {}, stored {}, missing {}, duplicates {}, extra {}, misplaced {}",
            self.acked, self.stored, self.missing, self.duplicates, self.extra, self.misplaced
        )
    }
}
