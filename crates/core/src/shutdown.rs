//! The one shutdown primitive (mini-redis's `Shutdown` plus drop-guard completion).
//!
//! The server owns one [`ShutdownController`]; every part that runs work of its own (the
//! onboarding engine, the credential manager's rotations, scheduled verification, long-lived
//! streams) holds a [`Shutdown`] handle. A graceful stop is then, in one place:
//!
//! 1. [`ShutdownController::begin`]: every handle sees [`Shutdown::is_shutdown`] turn true and
//!    [`Shutdown::recv`] complete. Streams end; workflows start no new Entra change; loops stop.
//! 2. Work already under way — an Entra call sent, its audit outcome not yet written — runs on:
//!    tasks started with [`Shutdown::spawn`] get [`Shutdown::grace`] to finish, then are cut
//!    off where they stand, as a process exit would (their durable state resumes at the next
//!    start).
//! 3. [`ShutdownController::wait`] returns once every [`TaskGuard`] is dropped, i.e. every such
//!    task has ended.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long work in flight may take to finish once shutdown begins, unless configured.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Starts a shutdown and waits for the work it tracks. One per process (or per server in
/// tests); owned by whoever serves.
#[derive(Debug)]
pub struct ShutdownController {
    /// Turned to `true` once, by [`ShutdownController::begin`].
    notify: watch::Sender<bool>,
    /// The controller's own completion sender, dropped when shutdown begins: after that only
    /// [`TaskGuard`]s keep the channel open.
    complete_tx: Mutex<Option<mpsc::Sender<()>>>,
    /// Closes when the last sender is gone: every tracked task has ended.
    complete_rx: tokio::sync::Mutex<mpsc::Receiver<()>>,
    /// Given to handles: how long in-flight work may take after the signal.
    grace: Duration,
}

/// A handle on the shutdown signal. Cheap to clone; holding one does not delay shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// The signal; `None` for [`Shutdown::never`].
    notify: Option<watch::Receiver<bool>>,
    /// Makes [`TaskGuard`]s while the controller lives.
    complete: Option<mpsc::WeakSender<()>>,
    /// How long in-flight work may take after the signal.
    grace: Duration,
}

/// Held by a task the controller waits for; dropping it says the task has ended.
#[derive(Debug)]
pub struct TaskGuard {
    /// Never sent on: only its drop matters.
    _complete: mpsc::Sender<()>,
}

impl Default for ShutdownController {
    fn default() -> Self {
        Self::new(DEFAULT_GRACE)
    }
}

impl ShutdownController {
    /// A controller whose tasks get `grace` to finish work in flight.
    pub fn new(grace: Duration) -> Self {
        let (complete_tx, complete_rx) = mpsc::channel(1);
        Self {
            notify: watch::Sender::new(false),
            complete_tx: Mutex::new(Some(complete_tx)),
            complete_rx: tokio::sync::Mutex::new(complete_rx),
            grace,
        }
    }

    /// A handle for a part that runs work of its own.
    pub fn handle(&self) -> Shutdown {
        let complete = self
            .complete_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(mpsc::Sender::downgrade);
        Shutdown {
            notify: Some(self.notify.subscribe()),
            complete,
            grace: self.grace,
        }
    }

    /// Signals every handle. Idempotent.
    pub fn begin(&self) {
        self.notify.send_replace(true);
        self.complete_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Whether [`ShutdownController::begin`] was called.
    pub fn is_shutdown(&self) -> bool {
        *self.notify.borrow()
    }

    /// Begins (if not yet) and waits until every tracked task has ended; tasks started with
    /// [`Shutdown::spawn`] end at the latest [`Shutdown::grace`] after the signal. Returns
    /// false if some task still held its guard after `grace` plus one second (a task tracked
    /// by hand that ignores the signal).
    pub async fn wait(&self) -> bool {
        self.begin();
        let mut rx = self.complete_rx.lock().await;
        let deadline = self.grace + Duration::from_secs(1);
        tokio::time::timeout(deadline, rx.recv()).await.is_ok()
    }
}

impl Shutdown {
    /// A handle that never fires, for parts used without a server (tests, one-shot tools).
    pub fn never() -> Self {
        Self {
            notify: None,
            complete: None,
            grace: DEFAULT_GRACE,
        }
    }

    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        self.notify.as_ref().is_some_and(|n| *n.borrow())
    }

    /// Completes once shutdown has begun (at once if it already has; never for
    /// [`Shutdown::never`] or after the controller is gone without beginning).
    pub async fn recv(&self) {
        let Some(n) = &self.notify else {
            return std::future::pending().await;
        };
        let mut n = n.clone();
        // The guard `wait_for` returns is not `Send`; drop it here.
        let fired = n.wait_for(|s| *s).await.map(|_| ()).is_ok();
        if !fired {
            std::future::pending::<()>().await;
        }
    }

    /// How long in-flight work may take after the signal.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// A completion token the controller waits for, or `None` once shutdown has begun (start
    /// no new work then).
    pub fn guard(&self) -> Option<TaskGuard> {
        if self.is_shutdown() {
            return None;
        }
        let complete = match &self.complete {
            Some(weak) => weak.upgrade()?,
            // `never()`: nobody waits; a private channel keeps the guard's shape.
            None => mpsc::channel(1).0,
        };
        Some(TaskGuard {
            _complete: complete,
        })
    }

    /// Runs `work` on its own task, tracked by the controller: it runs to the end unless
    /// shutdown began more than [`Shutdown::grace`] ago, in which case it is dropped where it
    /// stands (`None`). Work that must not start after the signal checks
    /// [`Shutdown::is_shutdown`] itself. Returns `None` (nothing spawned) once shutdown has
    /// begun.
    pub fn spawn<F>(&self, work: F) -> Option<JoinHandle<Option<F::Output>>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let guard = self.guard()?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let _guard = guard;
            tokio::select! {
                out = work => Some(out),
                () = me.expired() => None,
            }
        }))
    }

    /// Completes [`Shutdown::grace`] after shutdown began.
    pub async fn expired(&self) {
        self.recv().await;
        tokio::time::sleep(self.grace).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_in_flight_finishes_within_the_grace_and_the_rest_is_cut_off() {
        let c = ShutdownController::new(Duration::from_secs(5));
        let s = c.handle();
        let quick = s.spawn(tokio::time::sleep(Duration::from_secs(2))).unwrap();
        let slow = s
            .spawn(tokio::time::sleep(Duration::from_secs(60)))
            .unwrap();
        assert!(!s.is_shutdown());
        let started = tokio::time::Instant::now();
        assert!(c.wait().await, "every task ended within the grace");
        assert!(started.elapsed() <= Duration::from_secs(6));
        assert_eq!(quick.await.unwrap(), Some(()));
        assert_eq!(slow.await.unwrap(), None, "cut off at the end of the grace");
        assert!(s.is_shutdown());
        assert!(s.spawn(async {}).is_none(), "no new work after the signal");
        assert!(s.guard().is_none());
        s.recv().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_hand_tracked_task_that_ignores_the_signal_is_reported() {
        let c = ShutdownController::new(Duration::from_secs(1));
        let g = c.handle().guard().unwrap();
        assert!(!c.wait().await);
        drop(g);
    }

    #[tokio::test(start_paused = true)]
    async fn never_never_fires() {
        let s = Shutdown::never();
        assert!(!s.is_shutdown());
        assert!(s.guard().is_some());
        let fired = tokio::time::timeout(Duration::from_secs(3600), s.recv()).await;
        assert!(fired.is_err());
    }
}
