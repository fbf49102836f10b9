//! Ownership of a process's long-lived tasks. Every background loop is
//! spawned through [`Tasks`], so shutdown can signal them all and then wait
//! for them, within a bound, before the runtime is dropped. Without it a
//! task's last act (a final flush, a lease release) races the process exit.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// The tasks a process (or one component of it) owns, and the token that
/// tells them to stop. Cheap to clone; clones share both.
#[derive(Debug, Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Tasks {
    /// Tasks stopped by `shutdown`.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            shutdown,
        }
    }

    /// The token that tells every task to stop.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Tasks of a component inside this one: stopped with it (or on their
    /// own token), and drained separately, so a component can finish before
    /// the ones it depends on.
    pub fn child(&self) -> Self {
        Self::new(self.shutdown.child_token())
    }

    /// Spawns `task`, owned by this set, inside a span named after it.
    pub fn spawn<F>(&self, name: &'static str, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker
            .spawn(task.instrument(tracing::debug_span!("task", name)))
    }

    /// How many tasks are still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// True when no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Signals every task to stop and waits for them, at most `grace`.
    /// Returns whether they all ended in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.wait(grace).await
    }

    /// Waits, at most `grace`, for every task to end without signalling
    /// them: for tasks that stop on their own once their input ends.
    pub async fn wait(&self, grace: Duration) -> bool {
        self.tracker.close();
        let done = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        if !done {
            tracing::warn!(
                running = self.tracker.len(),
                ?grace,
                "tasks still running after the grace period"
            );
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_a_task_that_cleans_up() {
        let tasks = Tasks::new(CancellationToken::new());
        let cleaned = Arc::new(AtomicBool::new(false));
        let flag = cleaned.clone();
        let token = tasks.shutdown().clone();
        tasks.spawn("cleaner", async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert!(tasks.drain(Duration::from_secs(1)).await);
        assert!(cleaned.load(Ordering::SeqCst));
        assert!(tasks.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_the_grace_period() {
        let tasks = Tasks::new(CancellationToken::new());
        tasks.spawn("stuck", std::future::pending::<()>());
        let started = tokio::time::Instant::now();
        assert!(!tasks.drain(Duration::from_secs(2)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(tasks.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_child_is_stopped_with_its_parent_but_drained_alone() {
        let parent = Tasks::new(CancellationToken::new());
        let child = parent.child();
        let token = child.shutdown().clone();
        child.spawn("child", async move { token.cancelled().await });
        parent.shutdown().cancel();
        assert!(child.wait(Duration::from_secs(1)).await);
        assert!(parent.wait(Duration::from_secs(1)).await);
    }
}
