//! Expiry subscriptions follow the cluster's topology: a master that joins
//! while the gateway runs is subscribed to, and the expiry of a session key
//! it holds closes the session. Runs alone in its binary because it adds a
//! node to the shared cluster and moves a slot to it (both undone at the
//! end, even on failure).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::Options;
use chatmesh_integration_tests::{Infra, Sandbox, wait};
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_redis::{key_slot, keys};
use serde_json::json;

const TTL: Duration = Duration::from_secs(2);

fn sync_conn(addr: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://{addr}"))?.get_connection()
}

/// The address of every node `addr` knows, itself included.
fn cluster_nodes(addr: &str) -> anyhow::Result<Vec<String>> {
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut sync_conn(addr)?)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|a| a.split('@').next())
        .map(str::to_owned)
        .collect())
}

fn node_id(addr: &str) -> anyhow::Result<String> {
    let id: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut sync_conn(addr)?)?;
    Ok(id)
}

/// Points `slot` at `to` on every node in `nodes`, moving it from `from`.
/// The slot must hold no keys.
fn move_slot(slot: u16, from: &str, to: &str, nodes: &[String]) -> anyhow::Result<()> {
    let (from_id, to_id) = (node_id(from)?, node_id(to)?);
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("IMPORTING")
        .arg(&from_id)
        .query::<()>(&mut sync_conn(to)?)?;
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("MIGRATING")
        .arg(&to_id)
        .query::<()>(&mut sync_conn(from)?)?;
    let keys: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut sync_conn(from)?)?;
    anyhow::ensure!(keys == 0, "slot {slot} still holds {keys} keys on {from}");
    // The destination first, then the source, then everyone else.
    let mut order = vec![to.to_owned(), from.to_owned()];
    order.extend(nodes.iter().filter(|n| *n != to && *n != from).cloned());
    for node in order {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("NODE")
            .arg(&to_id)
            .query::<()>(&mut sync_conn(&node)?)?;
    }
    Ok(())
}

/// A fourth master, joined to the cluster and given one empty slot. Dropping
/// it hands the slot back, makes the cluster forget the node and stops it.
struct ExtraMaster {
    child: Child,
    addr: String,
    dir: std::path::PathBuf,
    originals: Vec<String>,
    slot: u16,
    owner: String,
    slot_moved: bool,
}

impl ExtraMaster {
    fn start(originals: Vec<String>) -> anyhow::Result<Self> {
        let port = chatmesh_integration_tests::process::free_redis_port()?;
        let dir = std::env::temp_dir().join(format!("chatmesh-extra-master-{port}"));
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "bind 127.0.0.1\nport {port}\ndir {}\ncluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 5000\nnotify-keyspace-events Ex\nhz 100\nappendonly no\nsave \"\"\n",
                dir.display()
            ),
        )?;
        let child = Command::new("redis-server")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        Ok(Self {
            child,
            addr: format!("127.0.0.1:{port}"),
            dir,
            originals,
            slot: 0,
            owner: String::new(),
            slot_moved: false,
        })
    }

    /// Joins the cluster and takes `slot` from `owner`.
    async fn join_with_slot(&mut self, slot: u16, owner: &str) -> anyhow::Result<()> {
        let addr = self.addr.clone();
        wait::until("extra master answers", Duration::from_secs(10), || {
            let addr = addr.clone();
            async move {
                let pong: String = redis::cmd("PING").query(&mut sync_conn(&addr)?)?;
                anyhow::ensure!(pong == "PONG");
                Ok::<_, anyhow::Error>(())
            }
        })
        .await?;
        let port = self.addr.rsplit(':').next().context("port")?;
        let expected = cluster_nodes(&self.originals[0])?.len() + 1;
        redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(port)
            .query::<()>(&mut sync_conn(&self.originals[0])?)?;
        let everyone: Vec<String> = self
            .originals
            .iter()
            .cloned()
            .chain([self.addr.clone()])
            .collect();
        wait::until(
            "every node knows the extra master",
            Duration::from_secs(20),
            || {
                let everyone = everyone.clone();
                async move {
                    for node in &everyone {
                        let nodes: String = redis::cmd("CLUSTER")
                            .arg("NODES")
                            .query(&mut sync_conn(node)?)?;
                        let connected = nodes
                            .lines()
                            .filter(|l| l.contains(" connected") && !l.contains("handshake"))
                            .count();
                        anyhow::ensure!(
                            connected == expected,
                            "{node} sees {connected} of {expected} nodes connected"
                        );
                    }
                    Ok::<_, anyhow::Error>(())
                }
            },
        )
        .await?;
        self.slot = slot;
        self.owner = owner.to_owned();
        move_slot(slot, owner, &self.addr, &everyone)?;
        self.slot_moved = true;
        Ok(())
    }
}

impl Drop for ExtraMaster {
    fn drop(&mut self) {
        if self.slot_moved {
            let everyone: Vec<String> = self
                .originals
                .iter()
                .cloned()
                .chain([self.addr.clone()])
                .collect();
            // The slot must be empty to move back: drop whatever landed there.
            if let Ok(mut conn) = sync_conn(&self.addr) {
                let stray: Vec<String> = redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(self.slot)
                    .arg(1000)
                    .query(&mut conn)
                    .unwrap_or_default();
                for key in stray {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query(&mut conn);
                }
            }
            if let Err(err) = move_slot(self.slot, &self.addr, &self.owner, &everyone) {
                eprintln!(
                    "could not hand slot {} back to {}: {err}",
                    self.slot, self.owner
                );
            }
        }
        if let Ok(id) = node_id(&self.addr) {
            // Every node forgets it, replicas too, or gossip brings it back.
            let mut nodes = cluster_nodes(&self.originals[0]).unwrap_or_default();
            nodes.retain(|n| *n != self.addr);
            for node in &nodes {
                let forgot = sync_conn(node).and_then(|mut c| {
                    redis::cmd("CLUSTER")
                        .arg("FORGET")
                        .arg(&id)
                        .query::<()>(&mut c)
                });
                if let Err(err) = forgot {
                    eprintln!("{node} could not forget the extra master: {err}");
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn expiry_subscribers(addr: &str) -> anyhow::Result<i64> {
    let mut conn = redis::Client::open(format!("redis://{addr}"))?
        .get_multiplexed_async_connection()
        .await?;
    let reply: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(keys::EXPIRED_EVENTS)
        .query_async(&mut conn)
        .await?;
    Ok(match reply.get(1) {
        Some(v) => redis::from_redis_value_ref(v)?,
        None => 0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_that_joins_later_delivers_expiry_events() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let infra = Infra::load()?;
    let originals = infra.redis_masters().await?;
    assert_eq!(originals.len(), 3, "expected the 3-master local cluster");
    let addrs: Vec<String> = originals.iter().map(|m| m.addr.clone()).collect();

    // The gateway starts while the cluster has three masters; the sweep is
    // off, so only expiry events can close the session.
    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        gateway_presence: chatmesh_gateway::PresenceSettings {
            session_ttl: TTL,
            flush_interval: Duration::from_millis(100),
            sweep_interval: Duration::from_secs(3600),
            topology_refresh: Duration::from_millis(200),
        },
        presence: chatmesh_presence::PresenceSettings {
            instance_refresh: Duration::from_millis(100),
            instance_ttl: Duration::from_secs(1),
            topology_refresh: Duration::from_millis(200),
            ..Default::default()
        },
        ..Options::default()
    })
    .await?;

    // A user whose keys sit in an empty slot, which then moves to a new master.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut chosen = None;
    for i in 0..1000 {
        let user = format!("mover-{run}-{i}");
        let slot = key_slot(keys::session(&user, "s").as_bytes());
        let owner = originals
            .iter()
            .find(|m| m.owns(slot))
            .context("slot without owner")?;
        let count: i64 = redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query(&mut sync_conn(&owner.addr)?)?;
        if count == 0 {
            chosen = Some((user, slot, owner.addr.clone()));
            break;
        }
    }
    let (user, slot, owner) = chosen.context("no empty slot found")?;
    let mut extra = ExtraMaster::start(addrs.clone())?;
    extra.join_with_slot(slot, &owner).await?;
    let new_master = extra.addr.clone();

    // The gateway and the presence service notice the new master.
    wait::until(
        "expiry subscriptions on the new master",
        Duration::from_secs(20),
        || {
            let addr = new_master.clone();
            async move {
                let n = expiry_subscribers(&addr).await?;
                anyhow::ensure!(n >= 2, "{n} subscribers");
                Ok::<_, anyhow::Error>(())
            }
        },
    )
    .await?;

    let gw = sb.gateways[0];
    let room = channel_id("moved");
    create_channel(&sb, &room, ModerationPolicy::Reject, &[&user]).await?;
    let mut client = Client::connect(gw, &dev_token(gw, &user).await?, None).await?;
    client.subscribe(&room).await?;
    client.send(json!({ "type": "ping" })).await?;
    client.expect("pong").await?;
    wait::until(
        "session key on the new master",
        Duration::from_secs(10),
        || {
            let (addr, user) = (new_master.clone(), user.clone());
            async move {
                let found: Vec<String> = redis::cmd("KEYS")
                    .arg(keys::session(&user, "*"))
                    .query(&mut sync_conn(&addr)?)?;
                anyhow::ensure!(found.len() == 1, "keys: {found:?}");
                Ok::<_, anyhow::Error>(())
            }
        },
    )
    .await?;

    client.send(json!({ "type": "ping" })).await?;
    client.expect("pong").await?;
    let quiet_since = Instant::now();
    let (code, reason) = client.closed().await?;
    let after = quiet_since.elapsed();
    assert_eq!(code, chatmesh_gateway::CLOSE_SESSION_EXPIRED, "{reason}");
    assert!(
        after >= TTL && after < TTL + Duration::from_secs(4),
        "closed {after:?} after the last ping"
    );
    let result = sb.stop().await;
    drop(extra);
    assert_eq!(
        infra.redis_masters().await?.len(),
        3,
        "the cluster is back to three masters"
    );
    result
}
