//! The writer thread: group commit, hashing, key rotation.
//!
//! It owns the tree's right edge. It takes everything queued (up to `max_batch`), inserts the
//! entries with the tree nodes they complete, in sequence order, and hands the batch to the
//! syncer (`crate::syncer`), which makes it durable (sled's flush, then one `fdatasync` of its
//! log file: `durable`), only then signs the checkpoint for the new size and answers every
//! appender in it. The writer does not wait for that: it writes the next batch while the
//! syncer's `fdatasync` runs.
//!
//! Why plain inserts and not `Tree::apply_batch`: in sled 0.34 `apply_batch` (and transactions)
//! take a *process-wide* write lock and switch every sled operation in the process, on every
//! database, to that lock; together with sled's log flusher this deadlocked a process that ran the
//! audit log next to another sled database (seen in the provision tests under CI load). Plain
//! inserts never take it. Atomicity of a batch is not needed: sled recovers a prefix of its log,
//! entries are written in seq order before the checkpoint note, nothing is acknowledged before
//! the fsync, and the start-up check refuses any gap.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use time::OffsetDateTime;

use crate::entry::{PreparedEntry, format_time};
use crate::error::AuditError;
use crate::hash::leaf_hash;
use crate::keys;
use crate::log::Shared;
use crate::merkle::Frontier;
use crate::note::NoteSigner;
use crate::snapshot::PauseRequest;
use crate::syncer::{Batch, Failure, Reply, Rotation, SyncRequest, poison};

/// How many written batches may wait for the syncer before the writer waits too.
const SYNC_QUEUE: usize = 64;

/// What appenders send the writer.
pub(crate) enum Request {
    Append {
        entry: PreparedEntry,
        reply: Reply,
    },
    Rotate {
        new: Box<NoteSigner>,
        entry: PreparedEntry,
        reply: Reply,
    },
    /// Commit what is queued, store the last note, then append nothing until the pause ends
    /// (`crate::snapshot`).
    Pause(PauseRequest),
}

/// The syncer thread and the channel to it.
pub(crate) struct Syncer {
    /// Written batches, in seq order.
    tx: mpsc::SyncSender<SyncRequest>,
    /// Joined when the writer stops, so the last note is stored before `close` returns.
    thread: JoinHandle<()>,
}

impl Syncer {
    /// Starts `sync` on its own thread.
    pub(crate) fn start(
        make: impl FnOnce(mpsc::Receiver<SyncRequest>) -> crate::syncer::SyncLoop,
    ) -> Result<Self, AuditError> {
        let (tx, rx) = mpsc::sync_channel(SYNC_QUEUE);
        let sync = make(rx);
        let thread = std::thread::Builder::new()
            .name("audit-syncer".into())
            .spawn(move || sync.run())
            .map_err(|e| AuditError::io("starting the audit syncer thread", e))?;
        Ok(Self { tx, thread })
    }
}

/// The writer thread's state.
pub(crate) struct WriterLoop {
    /// Where results are published.
    pub(crate) shared: Arc<Shared>,
    /// Incoming requests.
    pub(crate) rx: mpsc::Receiver<Request>,
    /// The tree's right edge: what is durable in sled plus the batches the syncer has not
    /// committed yet.
    pub(crate) frontier: Frontier,
    /// Group-commit bound.
    pub(crate) max_batch: usize,
    /// Nodes at this level and above also go to `Shared::upper` (by the syncer, once durable).
    pub(crate) memory_from_level: u8,
    /// Shared with the syncer: set by whichever fails first; nothing more is written.
    pub(crate) failed: Arc<Failure>,
    /// Where written batches go.
    pub(crate) syncer: Syncer,
    /// Failures of appends refused here (the syncer counts the rest).
    pub(crate) metrics: crate::metrics::WriterMetrics,
}

impl WriterLoop {
    pub(crate) fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let started = Instant::now();
            let mut appends = Vec::new();
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    Request::Append { entry, reply } => appends.push((entry, reply)),
                    Request::Rotate { new, entry, reply } => {
                        // A rotation is its own commit, after whatever was queued before it.
                        self.write(std::mem::take(&mut appends), started, None);
                        self.rotate(*new, entry, reply);
                    }
                    Request::Pause(p) => {
                        self.write(std::mem::take(&mut appends), started, None);
                        self.pause(p);
                    }
                }
                if appends.len() < self.max_batch {
                    next = self.rx.try_recv().ok();
                }
            }
            self.write(appends, started, None);
        }
        let Syncer { tx, thread } = self.syncer;
        drop(tx);
        let _ = thread.join();
    }

    /// Waits until the syncer has committed everything sent so far and stored the last note.
    fn settle(&self) {
        let (done, wait) = mpsc::channel();
        if self.syncer.tx.send(SyncRequest::Settle(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Answers a pause request with the checkpoint it stops at, then waits for its end.
    fn pause(&mut self, p: PauseRequest) {
        self.settle();
        let head = match self.shared.head.read() {
            Ok(h) => h.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let answer = match self.failed.get() {
            Some(why) => Err(AuditError::Poisoned(why.clone())),
            None => Ok(head),
        };
        let ok = answer.is_ok();
        let PauseRequest {
            paused,
            resume,
            limit,
            expired,
        } = p;
        if paused.send(answer).is_ok() && ok {
            crate::snapshot::wait_for_resume(&resume, limit, &expired);
        }
    }

    /// Inserts `appends` (plus rotation metadata) and hands them to the syncer, which makes
    /// them durable, signs and answers.
    fn write(
        &mut self,
        appends: Vec<(PreparedEntry, Reply)>,
        started: Instant,
        rotation: Option<(Box<Rotation>, Vec<u8>)>,
    ) {
        if appends.is_empty() {
            return;
        }
        if let Some(why) = self.failed.get() {
            poison(&self.metrics, appends, why);
            return;
        }
        // One time per batch: the entries became durable together.
        let now = format_time(OffsetDateTime::now_utc());
        let tree = &self.shared.store.tree;
        let mut replies = Vec::with_capacity(appends.len());
        let mut upper = Vec::new();
        let mut written = Ok(());
        for (entry, reply) in appends {
            let seq = self.frontier.size();
            replies.push((seq, reply));
            if written.is_err() {
                continue;
            }
            // Leaf `seq` completes `1 + trailing_ones(seq)` nodes; they go in front of the entry
            // bytes in one buffer (see `keys`), filled in place.
            let count = 1 + seq.trailing_ones() as usize;
            let hashes_end = 1 + 32 * count;
            let mut value = Vec::with_capacity(hashes_end + entry.encoded_len_max());
            value.push(count as u8);
            value.resize(hashes_end, 0);
            entry.encode_into(seq, &now, &mut value);
            let leaf = leaf_hash(&value[hashes_end..]);
            let mut k = 0usize;
            self.frontier.push(leaf, |level, index, hash| {
                if let Some(slot) = value.get_mut(1 + 32 * k..1 + 32 * k + 32) {
                    slot.copy_from_slice(hash);
                }
                k += 1;
                if level >= self.memory_from_level {
                    upper.push((level, index, *hash));
                }
            });
            debug_assert_eq!(k, count);
            written = tree.insert(keys::entry(seq), value).map(|_| ());
        }
        let rotation = match (written, rotation) {
            (Ok(()), Some((r, text))) => tree.insert(keys::META_VERIFIERS, text).map(|_| Some(r)),
            (w, _) => w.map(|()| None),
        };
        let rotation = match rotation {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "audit log write failed; refusing further appends");
                self.failed.set(e.to_string());
                poison(&self.metrics, replies, &e.to_string());
                return;
            }
        };
        let batch = Batch {
            replies,
            upper,
            size: self.frontier.size(),
            root: self.frontier.root(),
            started,
            rotation,
        };
        if let Err(mpsc::SendError(req)) = self.syncer.tx.send(SyncRequest::Batch(batch)) {
            // The syncer is gone (it panicked): nothing more can become durable.
            let why = "the audit syncer stopped".to_string();
            self.failed.set(why.clone());
            if let SyncRequest::Batch(b) = req {
                poison(&self.metrics, b.replies, &why);
            }
        }
    }

    fn rotate(&mut self, new: NoteSigner, entry: PreparedEntry, reply: Reply) {
        // Everything before is committed under the old key alone, and `verifiers` is current.
        self.settle();
        let mut verifiers = match self.shared.verifiers.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        };
        verifiers.push(new.verifier());
        let text = verifiers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        let rotation = Box::new(Rotation { new, verifiers });
        self.write(
            vec![(entry, reply)],
            Instant::now(),
            Some((rotation, text.into_bytes())),
        );
        // The next rotation reads the verifiers this one stores.
        self.settle();
    }
}
