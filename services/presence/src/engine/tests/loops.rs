//! The engine's loops: shutdown, expiries, failed publishes.

use super::*;

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_loop() {
    let h = harness();
    let shutdown = CancellationToken::new();
    // Inputs stay open: only the token can stop the loops.
    let (_heartbeat_tx, heartbeat_rx) = mpsc::channel(8);
    let (_expiry_tx, expiry_rx) = mpsc::channel(8);
    let loops = [
        tokio::spawn(
            h.engine
                .clone()
                .run_heartbeats(heartbeat_rx, shutdown.clone()),
        ),
        tokio::spawn(h.engine.clone().run_expiries(expiry_rx, shutdown.clone())),
        tokio::spawn(h.engine.clone().run_sweeps(shutdown.clone())),
    ];
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(loops.iter().all(|l| !l.is_finished()), "running until told");
    shutdown.cancel();
    for l in loops {
        tokio::time::timeout(Duration::from_secs(1), l)
            .await
            .expect("stopped promptly")
            .expect("no panic");
    }
}

#[tokio::test(start_paused = true)]
async fn the_expiry_loop_ends_sessions_it_hears_of() {
    let h = harness();
    h.send(1_000, vec![beat("s1", "alice", &["room"])]).await;
    let (tx, rx) = mpsc::channel(8);
    let expiries = tokio::spawn(h.engine.clone().run_expiries(rx, CancellationToken::new()));
    tokio::time::advance(Duration::from_secs(1)).await;
    for key in h.store.take_expired() {
        tx.send(key.into_bytes()).await.expect("loop running");
    }
    let events = h.wait_events(2).await;
    assert_eq!(events[1].kind, EventKind::Leave);
    drop(tx);
    expiries.await.expect("loop ends when its input does");
}

#[tokio::test(start_paused = true)]
async fn a_failed_publish_is_counted_and_the_state_still_applied() {
    let h = harness_with(settings(), Some(Arc::new(DownPublisher)));
    h.send(0, vec![beat("s1", "alice", &["room"])]).await;
    assert_eq!(h.online("room").await, ["alice"]);
    assert_eq!(h.stat(|s| &s.errors), 1);
    assert_eq!(h.stat(|s| &s.events), 0);
}
