use chatmesh_config::ShardMapConfig;
use chatmesh_ids::ChannelId;

use crate::pool::{Pool, connect};

/// One shard database.
#[derive(Debug, Clone)]
pub struct Shard {
    /// Stable name from the config, used in logs and metrics.
    pub name: String,
    /// Connection URL, for migrations.
    pub url: String,
    /// The shard's pool.
    pub pool: Pool,
    first_bucket: u32,
    last_bucket: u32,
}

/// Routes channels to shard databases through fixed logical buckets.
#[derive(Debug, Clone)]
pub struct ShardMap {
    buckets: u32,
    shards: Vec<Shard>,
}

impl ShardMap {
    /// Opens a pool per database of a validated config.
    pub fn connect(config: &ShardMapConfig) -> Self {
        let mut shards: Vec<Shard> = config
            .databases
            .iter()
            .map(|db| Shard {
                name: db.name.clone(),
                url: db.postgres.url.clone(),
                pool: connect(&db.postgres),
                first_bucket: db.first_bucket,
                last_bucket: db.last_bucket,
            })
            .collect();
        shards.sort_by_key(|s| s.first_bucket);
        Self {
            buckets: config.buckets,
            shards,
        }
    }

    /// Every shard, in bucket order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The shard holding `channel`.
    pub fn shard_for(&self, channel: &ChannelId) -> &Shard {
        self.shard_of_bucket(bucket_of(channel, self.buckets))
    }

    /// Index into [`Self::shards`] of the shard holding `channel`.
    pub fn shard_index(&self, channel: &ChannelId) -> usize {
        let bucket = bucket_of(channel, self.buckets);
        self.shards.partition_point(|s| s.last_bucket < bucket)
    }

    fn shard_of_bucket(&self, bucket: u32) -> &Shard {
        let i = self.shards.partition_point(|s| s.last_bucket < bucket);
        // A validated config covers every bucket, so `i` is in range and
        // the shard's range holds the bucket.
        debug_assert!(self.shards[i].first_bucket <= bucket);
        &self.shards[i]
    }
}

/// The logical bucket of `channel`: FNV-1a of its ID modulo `buckets`. The
/// hash is spelled out here because it must never change between releases
/// or differ between processes.
pub fn bucket_of(channel: &ChannelId, buckets: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = channel
        .as_str()
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    (hash % u64::from(buckets)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_hash_is_stable() {
        // Pinned values: changing the hash would strand stored messages.
        let c = |s: &str| ChannelId::new(s).unwrap();
        assert_eq!(bucket_of(&c("general"), 256), bucket_of(&c("general"), 256));
        assert_eq!(
            bucket_of(&c("a"), u32::MAX),
            (0xaf63_dc4c_8601_ec8c_u64 % u64::from(u32::MAX)) as u32
        );
    }

    #[test]
    fn buckets_spread_channels() {
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            counts[bucket_of(&ChannelId::new(format!("room-{i}")).unwrap(), 16) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
    }
}
