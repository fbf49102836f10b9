//! The TTL a batch's sessions get.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_batch_ttl_below_100ms_is_raised_to_100ms() {
    let h = harness();
    h.send(1, vec![beat("s1", "alice", &[])]).await;
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(h.status("alice").await.0);
    assert!(h.store.session_alive(&user("alice"), "s1"));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!h.status("alice").await.0);
    assert!(!h.store.session_alive(&user("alice"), "s1"));
}

#[tokio::test(start_paused = true)]
async fn a_batch_ttl_above_the_maximum_is_capped() {
    let h = harness_with(
        PresenceSettings {
            max_session_ttl: Duration::from_secs(60),
            ..settings()
        },
        None,
    );
    h.send(3_600_000, vec![beat("s1", "alice", &[])]).await;
    tokio::time::advance(Duration::from_millis(59_999)).await;
    assert!(h.status("alice").await.0);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!h.status("alice").await.0);
    assert_eq!(h.store.take_expired(), [keys::session("alice", "s1")]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_without_a_ttl_gets_the_default() {
    let h = harness();
    let default = PresenceSettings::default().default_session_ttl;
    h.send(0, vec![beat("s1", "alice", &[])]).await;
    h.send(-5, vec![beat("s2", "bob", &[])]).await;
    tokio::time::advance(default - Duration::from_millis(1)).await;
    assert!(h.status("alice").await.0 && h.status("bob").await.0);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!h.status("alice").await.0 && !h.status("bob").await.0);
}

#[test]
fn session_ttls_stay_within_the_limits() {
    let h = harness();
    let max = h.engine.settings.max_session_ttl;
    let default = h.engine.settings.default_session_ttl;
    assert_eq!(h.engine.session_ttl(None), default);
    assert_eq!(
        h.engine.session_ttl(Some(Duration::from_millis(1))),
        MIN_SESSION_TTL
    );
    assert_eq!(h.engine.session_ttl(Some(max * 2)), max);
    let tight = harness_with(
        PresenceSettings {
            default_session_ttl: Duration::from_millis(50),
            max_session_ttl: Duration::from_millis(50),
            ..settings()
        },
        None,
    );
    assert_eq!(
        tight.engine.session_ttl(Some(Duration::from_millis(1))),
        Duration::from_millis(50),
        "a maximum under 100ms wins over the minimum"
    );
}
