//! The infrastructure that `scripts/infra up` started, read from its state
//! file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;

/// Endpoints of the running Redis Cluster, Postgres servers, Kafka broker
/// and S3 server.
#[derive(Debug, Clone)]
pub struct Infra {
    /// Redis Cluster seed nodes, `redis://host:port`.
    pub redis_nodes: Vec<String>,
    /// The directory database.
    pub directory_url: String,
    /// Shard databases, across both Postgres servers.
    pub shard_urls: Vec<String>,
    /// Port of Postgres server "a".
    pub pg_a_port: u16,
    /// Port of Postgres server "b".
    pub pg_b_port: u16,
    /// Kafka bootstrap brokers.
    pub kafka_brokers: Vec<String>,
    /// The message topic.
    pub kafka_topic: String,
    /// S3 endpoint URL.
    pub s3_endpoint: String,
    /// S3 region.
    pub s3_region: String,
    /// S3 bucket for media.
    pub s3_bucket: String,
    /// S3 access key.
    pub s3_access_key: String,
    /// S3 secret key.
    pub s3_secret_key: String,
}

impl Infra {
    /// Reads the state file of this checkout's infrastructure, or of the
    /// directory named by `CHATMESH_INFRA_DIR`.
    pub fn load() -> anyhow::Result<Self> {
        let path = Self::state_dir().join("state.env");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: start the infrastructure with `scripts/infra up`",
                path.display()
            )
        })?;
        let vars: BTreeMap<&str, &str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        let get = |key: &str| -> anyhow::Result<String> {
            vars.get(key)
                .map(|v| (*v).to_owned())
                .with_context(|| format!("{} has no {key}", path.display()))
        };
        let list = |key: &str| -> anyhow::Result<Vec<String>> {
            Ok(get(key)?
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect())
        };
        Ok(Self {
            redis_nodes: list("REDIS_NODES")?,
            directory_url: get("DIRECTORY_URL")?,
            shard_urls: list("SHARD_URLS")?,
            pg_a_port: get("PG_A_PORT")?.parse().context("PG_A_PORT")?,
            pg_b_port: get("PG_B_PORT")?.parse().context("PG_B_PORT")?,
            kafka_brokers: list("KAFKA_BROKERS")?,
            kafka_topic: get("KAFKA_TOPIC")?,
            s3_endpoint: get("S3_ENDPOINT")?,
            s3_region: get("S3_REGION")?,
            s3_bucket: get("S3_BUCKET")?,
            s3_access_key: get("S3_ACCESS_KEY")?,
            s3_secret_key: get("S3_SECRET_KEY")?,
        })
    }

    /// The URL of `database` on Postgres server "a" or "b".
    pub fn postgres_url(&self, server: char, database: &str) -> String {
        let port = if server == 'a' {
            self.pg_a_port
        } else {
            self.pg_b_port
        };
        format!("postgres://postgres@127.0.0.1:{port}/{database}")
    }

    /// TOML for a `[redis]` section.
    pub fn redis_toml(&self) -> String {
        format!("[redis]\nnodes = {:?}\n", self.redis_nodes)
    }

    /// A client of the Redis Cluster, for a test's own commands.
    pub fn redis(&self) -> anyhow::Result<chatmesh_redis::Cluster> {
        let config: chatmesh_config::RedisConfig =
            toml::from_str(&format!("nodes = {:?}", self.redis_nodes))?;
        Ok(chatmesh_redis::Cluster::new(&config)?)
    }

    /// The cluster's masters and their slots, as the cluster reports them now.
    pub async fn redis_masters(&self) -> anyhow::Result<Vec<chatmesh_redis::Master>> {
        let mut conn = self.redis()?.conn().await?;
        Ok(chatmesh_redis::masters(&mut conn).await?)
    }

    /// The chat service's sequencer on this Redis Cluster, its epochs from
    /// the (migrated) directory database, as the chat service builds it.
    pub async fn sequencer(&self) -> anyhow::Result<chatmesh_chat::adapters::RedisSequencer> {
        chatmesh_db::migrate(&self.directory_url, chatmesh_db::MigrationSet::Directory).await?;
        let config: chatmesh_config::PostgresConfig =
            toml::from_str(&format!("url = {:?}", self.directory_url))?;
        let directory = chatmesh_chat::Directory::new(chatmesh_db::connect(&config));
        Ok(chatmesh_chat::adapters::RedisSequencer::new(
            self.redis()?,
            std::sync::Arc::new(directory),
        ))
    }

    /// TOML for a `[kafka]` section on the shared message topic.
    pub fn kafka_toml(&self) -> String {
        self.kafka_toml_for(&self.kafka_topic)
    }

    /// TOML for a `[kafka]` section on `topic`.
    pub fn kafka_toml_for(&self, topic: &str) -> String {
        format!(
            "[kafka]\nbrokers = {:?}\ntopic = {topic:?}\n",
            self.kafka_brokers
        )
    }

    /// Creates a message topic of 8 partitions, so a test's consumers read
    /// only what the test produced. Topics are never deleted: the broker's
    /// DeleteTopics removes every topic.
    pub async fn create_topic(&self, topic: &str) -> anyhow::Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<_> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.kafka_brokers.join(","))
            .create()?;
        for result in admin
            .create_topics(
                &[NewTopic::new(topic, 8, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await?
        {
            result.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
        }
        Ok(())
    }

    /// TOML for a `[shards]` section splitting `buckets` evenly over `urls`.
    pub fn shards_toml(urls: &[String], buckets: u32) -> String {
        let mut out = format!("[shards]\nbuckets = {buckets}\n");
        let n = urls.len() as u32;
        for (i, url) in urls.iter().enumerate() {
            let i = i as u32;
            let first = buckets * i / n;
            let last = buckets * (i + 1) / n - 1;
            out.push_str(&format!(
                "[[shards.databases]]\nname = \"shard_{i}\"\nurl = {url:?}\nfirst_bucket = {first}\nlast_bucket = {last}\n"
            ));
        }
        out
    }
}

impl Infra {
    /// A value from the state file, such as `TANSU_PID`.
    pub fn state_value(key: &str) -> anyhow::Result<String> {
        let path = Self::state_dir().join("state.env");
        let text = std::fs::read_to_string(&path)?;
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .with_context(|| format!("{} has no {key}", path.display()))
    }

    /// The pid of the local cluster's Redis node on `addr` (`host:port`).
    pub fn redis_pid(addr: &str) -> anyhow::Result<String> {
        let port = addr.rsplit(':').next().unwrap_or_default();
        let ports = Self::state_value("REDIS_PORTS")?;
        let pids = Self::state_value("REDIS_PIDS")?;
        let i = ports
            .split(',')
            .position(|p| p == port)
            .with_context(|| format!("{addr} is not a node of the local cluster"))?;
        pids.split(',')
            .nth(i)
            .map(str::to_owned)
            .with_context(|| format!("no pid recorded for {addr}"))
    }

    /// Runs `scripts/infra ARGS` for this checkout's infrastructure.
    pub fn script(args: &[&str]) -> anyhow::Result<()> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/infra");
        let out = std::process::Command::new(&script)
            .args(args)
            .env("CHATMESH_INFRA_DIR", Self::state_dir())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "scripts/infra {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn state_dir() -> PathBuf {
        match std::env::var_os("CHATMESH_INFRA_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local/infra"),
        }
    }
}
