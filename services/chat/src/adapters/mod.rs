//! The real implementations of the send path's seams: Redis Cluster for
//! sequence numbers, idempotency keys, rate limits and fan-out; Kafka for
//! the message log; the directory database for memberships; the storage
//! service for the posts changes name. Public so the
//! integration tests run the shared trait suites against them.

pub mod kafka;
pub mod postgres;
pub mod redis;
pub mod storage;
pub mod user_windows;

pub use self::kafka::KafkaLog;
pub use self::redis::{
    RedisAdmission, RedisFanOut, RedisIdempotency, RedisRateLimiter, RedisSequencer,
};
pub use self::storage::StorageLookup;
