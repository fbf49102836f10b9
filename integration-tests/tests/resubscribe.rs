//! Fan-out survives losing its pub/sub connections: after every master
//! drops its pub/sub clients, the gateway subscribes each channel again
//! and delivery resumes on channels spread over all masters. Runs alone in
//! its binary because it disconnects every pub/sub client of the cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::create_channel;
use chatmesh_integration_tests::sandbox::Options;
use chatmesh_integration_tests::{Infra, Sandbox, wait};
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_redis::{key_slot, keys};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_resumes_after_pubsub_connections_are_killed() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let infra = Infra::load()?;
    let masters = infra.redis_masters().await?;
    assert_eq!(masters.len(), 3);

    // Two channels per master: six channels whose fan-out slots span all three.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut rooms = Vec::new();
    for master in &masters {
        let mine = (0..)
            .map(|i| format!("resub-{run}-{i}"))
            .filter(|c| master.owns(key_slot(keys::fanout(c).as_bytes())))
            .take(2);
        rooms.extend(mine.map(|c| (c, master.addr.clone())));
    }

    let sb = Sandbox::start(&infra, Options::default()).await?;
    sb.wait_ready(Duration::from_secs(60)).await?;
    let gw = sb.gateways[0];
    let mut bob = Client::connect(gw, &dev_token(gw, "bob").await?, None).await?;
    let mut alice = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;
    for (room, _) in &rooms {
        create_channel(&sb, room, ModerationPolicy::Reject, &["alice", "bob"]).await?;
        bob.subscribe(room).await?;
    }

    for master in &masters {
        let mut direct = redis::Client::open(format!("redis://{}", master.addr))?
            .get_multiplexed_async_connection()
            .await?;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut direct)
            .await?;
        assert!(killed >= 1, "{} had no pub/sub client to kill", master.addr);
    }

    // Wait until every channel has a subscriber again on its own master.
    for (room, addr) in &rooms {
        let direct = redis::Client::open(format!("redis://{addr}"))?
            .get_multiplexed_async_connection()
            .await?;
        let key = keys::fanout(room);
        wait::until(
            &format!("{room} re-subscribed"),
            Duration::from_secs(30),
            || {
                let mut direct = direct.clone();
                let key = key.clone();
                async move {
                    let counts: Vec<redis::Value> = redis::cmd("PUBSUB")
                        .arg("SHARDNUMSUB")
                        .arg(&key)
                        .query_async(&mut direct)
                        .await?;
                    let n: i64 = counts
                        .get(1)
                        .map(redis::from_redis_value_ref)
                        .transpose()?
                        .unwrap_or(0);
                    if n >= 1 {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!("no subscriber yet"))
                    }
                }
            },
        )
        .await?;
    }

    let mut expected = BTreeSet::new();
    for (room, _) in &rooms {
        alice
            .send(json!({"type": "send", "channel_id": room, "body": format!("hello {room}")}))
            .await?;
        alice.expect("ack").await?;
        expected.insert(room.clone());
    }
    let mut got = BTreeSet::new();
    while got.len() < expected.len() {
        let m = bob.expect("message").await?;
        got.insert(m["channel_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, expected);
    sb.stop().await
}
