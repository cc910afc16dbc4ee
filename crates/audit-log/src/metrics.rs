//! The audit log's metrics (docs/operations.md#metrics), through the `metrics` facade: without
//! a recorder (tools, tests) every handle is a no-op. The handles are resolved once, when the
//! writer starts, so a batch costs a few atomic operations and no lookup or allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram};

/// The writer's and the syncer's handles (clones share the series).
#[derive(Clone)]
pub(crate) struct WriterMetrics {
    /// `onboard_audit_appends_total`: entries made durable and signed.
    appends: Counter,
    /// `onboard_audit_append_failures_total`: appends answered with an error.
    failures: Counter,
    /// `onboard_audit_append_duration_seconds`: one batch's write, fsync and signature.
    duration: Histogram,
    /// `onboard_audit_batch_size`: entries per group commit (one fsync).
    batch: Histogram,
    /// `onboard_audit_entries`: the tree size after the last commit.
    entries: Gauge,
}

impl WriterMetrics {
    /// Resolves the handles against the recorder installed now (if any), and reports `size`.
    pub(crate) fn new(size: u64) -> Self {
        let m = Self {
            appends: metrics::counter!("onboard_audit_appends_total"),
            failures: metrics::counter!("onboard_audit_append_failures_total"),
            duration: metrics::histogram!("onboard_audit_append_duration_seconds"),
            batch: metrics::histogram!("onboard_audit_batch_size"),
            entries: metrics::gauge!("onboard_audit_entries"),
        };
        // Series exist from the start, so a dashboard shows 0, not "no data".
        m.appends.increment(0);
        m.failures.increment(0);
        m.entries.set(size as f64);
        m
    }

    /// A batch of `count` entries became durable and signed in `took`; the tree has `size`.
    pub(crate) fn committed(&self, count: usize, took: Duration, size: u64) {
        self.appends.increment(count as u64);
        self.batch.record(count as f64);
        self.duration.record(took.as_secs_f64());
        self.entries.set(size as f64);
    }

    /// `count` appends were answered with an error.
    pub(crate) fn failed(&self, count: usize) {
        self.failures.increment(count as u64);
    }
}

/// `onboard_audit_appends_requested_total`, resolved against the recorder installed now, its
/// series present from the start.
pub(crate) fn appends_requested() -> Counter {
    let c = metrics::counter!("onboard_audit_appends_requested_total");
    c.increment(0);
    c
}

/// When the latest checkpoint was signed, in milliseconds since the Unix epoch; shared by the
/// writer (which stores) and readers (the server's checkpoint-age gauge).
#[derive(Debug, Default)]
pub(crate) struct SignedAt(
    /// Milliseconds since the epoch; 0 before the first signature of this process.
    AtomicU64,
);

impl SignedAt {
    /// Now.
    pub(crate) fn now() -> Self {
        let s = Self::default();
        s.touch();
        s
    }

    /// A checkpoint was signed now.
    pub(crate) fn touch(&self) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.0.store(ms, Ordering::Relaxed);
    }

    /// The time of the latest signature.
    pub(crate) fn get(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}
