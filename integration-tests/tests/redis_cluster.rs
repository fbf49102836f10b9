//! The Redis Cluster started by scripts/infra: three masters, each reachable,
//! each holding keys, with keyspace expiry events on.

use chatmesh_integration_tests::Infra;
use chatmesh_redis::key_slot;

#[tokio::test]
async fn keys_live_on_every_master() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let mut conn = infra.redis()?.conn().await?;
    let masters = infra.redis_masters().await?;
    assert_eq!(masters.len(), 3, "expected 3 masters, got {masters:?}");

    let run = uuid::Uuid::new_v4();
    for master in &masters {
        // Find a key whose slot this master serves.
        let key = (0..100_000)
            .map(|i| format!("chatmesh-test:{run}:{i}"))
            .find(|k| master.owns(key_slot(k.as_bytes())))
            .expect("some key hashes to every master");
        let value = format!("on {}", master.addr);
        redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .arg("EX")
            .arg(60)
            .exec_async(&mut conn)
            .await?;
        let read: String = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        assert_eq!(read, value);

        // A plain connection to the master answers the key without a
        // redirect, so the key really lives there.
        let mut direct = redis::Client::open(format!("redis://{}", master.addr))?
            .get_multiplexed_async_connection()
            .await?;
        let local: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut direct).await?;
        assert_eq!(
            local.as_deref(),
            Some(value.as_str()),
            "key not on {}",
            master.addr
        );

        let events: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(&mut direct)
            .await?;
        let flags = events.get(1).cloned().unwrap_or_default();
        assert!(
            flags.contains('E') && flags.contains('x'),
            "{} has notify-keyspace-events={flags:?}",
            master.addr
        );
        redis::cmd("DEL").arg(&key).exec_async(&mut conn).await?;
    }
    Ok(())
}
