//! Stopping well: one signal that the process is going down, and the background work (timer
//! runs, notification dispatches) it waits for, within a bound, before it exits. What a sweep
//! does when told to stop (give its unattempted claims back) lives with the sweep.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long after the stop signal the process waits for background work at most. The HTTP
/// server's own drain (`shutdown_timeout`, 20 s) runs in the same window, not before it, so the
/// whole stop takes at most this long.
pub const BACKGROUND_BOUND: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
pub struct Lifecycle {
    stopping: CancellationToken,
    /// When `stop` was first called: the drain's deadline counts from it.
    stopped_at: std::sync::OnceLock<tokio::time::Instant>,
    background: TaskTracker,
}

impl Lifecycle {
    /// Says the process is stopping: timers start nothing new, sweeps give back what they have
    /// not attempted.
    pub fn stop(&self) {
        self.stopped_at.get_or_init(tokio::time::Instant::now);
        self.stopping.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Resolves once [`stop`](Self::stop) has been called.
    pub async fn stopped(&self) {
        self.stopping.cancelled().await;
    }

    /// Runs `work` in the background, counted by [`drain`](Self::drain).
    pub fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.background.spawn(work);
    }

    /// Stops, then waits for the background work until `bound` after the first `stop`. `false`
    /// if some was still running (its claims lapse with their leases, and nothing is sent twice:
    /// operation ids).
    pub async fn drain(&self, bound: Duration) -> bool {
        self.stop();
        self.background.close();
        let deadline = *self.stopped_at.get_or_init(tokio::time::Instant::now) + bound;
        tokio::time::timeout_at(deadline, self.background.wait()).await.is_ok()
    }
}
