//! The writer thread: group commit, signing, key rotation.
//!
//! It owns the tree's right edge. It takes everything queued (up to `max_batch`), writes the
//! entries with the tree nodes they complete, in sequence order, makes them durable once (sled's
//! flush, then one `fdatasync` of its log file: `durable`), and only then signs the checkpoint
//! for the new size and answers every appender in the batch.
//!
//! Why plain inserts and not `Tree::apply_batch`: in sled 0.34 `apply_batch` (and transactions)
//! take a *process-wide* write lock and switch every sled operation in the process, on every
//! database, to that lock; together with sled's log flusher this deadlocked a process that ran the
//! audit log next to another sled database (seen in the provision tests under CI load). Plain
//! inserts never take it. Atomicity of a batch is not needed: sled recovers a prefix of its log,
//! entries are written in seq order before the checkpoint note, nothing is acknowledged before
//! the fsync, and the start-up check refuses any gap.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::entry::{PreparedEntry, format_time};
use crate::error::AuditError;
use crate::hash::leaf_hash;
use crate::head_file;
use crate::keys;
use crate::log::{Appended, Shared};
use crate::merkle::Frontier;
use crate::note::NoteSigner;
use crate::snapshot::PauseRequest;

/// How long the writer waits for more work before storing the last signed note on its own.
const IDLE_PERSIST: Duration = Duration::from_millis(20);
/// Under sustained load, how often the head file is refreshed.
const HEAD_FILE_INTERVAL: Duration = Duration::from_secs(1);

/// What appenders send the writer.
pub(crate) enum Request {
    Append {
        entry: PreparedEntry,
        reply: oneshot::Sender<Result<Appended, AuditError>>,
    },
    Rotate {
        new: Box<NoteSigner>,
        entry: PreparedEntry,
        reply: oneshot::Sender<Result<Appended, AuditError>>,
    },
    /// Commit what is queued, store the last note, then append nothing until the pause ends
    /// (`crate::snapshot`).
    Pause(PauseRequest),
}

/// The writer thread's state.
pub(crate) struct WriterLoop {
    /// Where results are published.
    pub(crate) shared: Arc<Shared>,
    /// Incoming requests.
    pub(crate) rx: mpsc::Receiver<Request>,
    /// The tree's right edge, always equal to what is durable in sled.
    pub(crate) frontier: Frontier,
    /// The current signing key.
    pub(crate) signer: NoteSigner,
    /// Group-commit bound.
    pub(crate) max_batch: usize,
    /// Nodes at this level and above also go to `Shared::upper`.
    pub(crate) memory_from_level: u8,
    /// The last signed checkpoint, not yet stored.
    pub(crate) pending: Option<Arc<SignedCheckpoint>>,
    /// Set by a failed write: the frontier may be ahead of storage, so nothing more is written.
    pub(crate) failed: Option<String>,
    /// The data directory, for the head file.
    pub(crate) dir: PathBuf,
    /// When the head file was last written; it is refreshed at most once a second under load.
    pub(crate) head_written: Instant,
    /// Appends, failures, batch sizes and commit times (no-ops without a recorder).
    pub(crate) metrics: crate::metrics::WriterMetrics,
}

impl WriterLoop {
    pub(crate) fn run(mut self) {
        loop {
            let first = if self.pending.is_some() {
                match self.rx.recv_timeout(IDLE_PERSIST) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        self.store_pending();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
            let mut appends = Vec::new();
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    Request::Append { entry, reply } => appends.push((entry, reply)),
                    Request::Rotate { new, entry, reply } => {
                        // A rotation is its own commit, after whatever was queued before it.
                        self.commit(std::mem::take(&mut appends), None);
                        self.rotate(*new, entry, reply);
                    }
                    Request::Pause(p) => {
                        self.commit(std::mem::take(&mut appends), None);
                        self.pause(p);
                    }
                }
                if appends.len() < self.max_batch {
                    next = self.rx.try_recv().ok();
                }
            }
            self.commit(appends, None);
        }
        self.store_pending();
    }

    /// Answers a pause request with the checkpoint it stops at, then waits for its end.
    fn pause(&mut self, p: PauseRequest) {
        self.store_pending();
        let head = match self.shared.head.read() {
            Ok(h) => h.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let answer = match &self.failed {
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

    fn store_pending(&mut self) {
        let Some(cp) = self.pending.take() else {
            return;
        };
        if self.failed.is_some() {
            return;
        }
        let key = keys::checkpoint(cp.checkpoint.size);
        let r = self
            .shared
            .store
            .tree
            .insert(key, cp.note.as_bytes())
            .map_err(AuditError::from)
            .and_then(|_| self.shared.store.flush());
        if let Err(e) = r {
            // Not fatal for what was acknowledged: the next start re-signs the same size.
            tracing::error!(error = %e, size = cp.checkpoint.size, "failed to store signed checkpoint");
            self.failed = Some(e.to_string());
            return;
        }
        self.write_head(&cp);
    }

    fn write_head(&mut self, cp: &SignedCheckpoint) {
        self.head_written = Instant::now();
        if let Err(e) = head_file::write(&self.dir, &cp.note) {
            // The entries are durable in sled; only the outside witness is stale.
            tracing::error!(error = %e, size = cp.checkpoint.size, "failed to write the audit head file");
        }
    }

    /// Writes `appends` (plus the pending note, plus rotation metadata), fsyncs once, signs
    /// and answers. Returns the new checkpoint when something was written.
    fn commit(
        &mut self,
        appends: Vec<(PreparedEntry, oneshot::Sender<Result<Appended, AuditError>>)>,
        rotation: Option<(&NoteSigner, Vec<u8>)>,
    ) -> Option<Arc<SignedCheckpoint>> {
        if appends.is_empty() {
            return None;
        }
        let started = Instant::now();
        if let Some(why) = &self.failed {
            self.metrics.failed(appends.len());
            for (_, reply) in appends {
                let _ = reply.send(Err(AuditError::Poisoned(why.clone())));
            }
            return None;
        }
        // One time per batch: the entries became durable together.
        let now = format_time(OffsetDateTime::now_utc());
        let mut writes: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(appends.len() + 2);
        let mut replies = Vec::with_capacity(appends.len());
        let mut upper = Vec::new();
        for (entry, reply) in appends {
            let seq = self.frontier.size();
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
            writes.push((keys::entry(seq).to_vec(), value));
            replies.push((seq, reply));
        }
        if let Some(cp) = self.pending.take() {
            writes.push((
                keys::checkpoint(cp.checkpoint.size).to_vec(),
                cp.note.as_bytes().to_vec(),
            ));
        }
        if let Some((_, verifiers)) = &rotation {
            writes.push((keys::META_VERIFIERS.to_vec(), verifiers.clone()));
        }
        let store = &self.shared.store;
        let written = writes
            .into_iter()
            .try_for_each(|(k, v)| store.tree.insert(k, v).map(|_| ()))
            .map_err(AuditError::from)
            .and_then(|()| store.flush());
        if let Err(e) = written {
            tracing::error!(error = %e, "audit log write failed; refusing further appends");
            self.failed = Some(e.to_string());
            self.metrics.failed(replies.len());
            for (_, reply) in replies {
                let _ = reply.send(Err(AuditError::Poisoned(e.to_string())));
            }
            return None;
        }
        // Durable. Readers may now use the new nodes; only now is the new root signed.
        {
            let mut u = match self.shared.upper.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            for (level, index, hash) in &upper {
                u.record(*level, *index, hash);
            }
        }
        let cp = Checkpoint {
            origin: self.shared.origin.clone(),
            size: self.frontier.size(),
            root: self.frontier.root(),
        };
        let signed = match rotation {
            Some((new, _)) => cp.sign(&[&self.signer, new]),
            None => cp.sign(&[&self.signer]),
        };
        let signed = match signed {
            Ok(s) => Arc::new(s),
            Err(e) => {
                // Logged here, once: callers are told only that the log is unavailable.
                tracing::error!(error = %e, "signing the audit checkpoint failed; refusing further appends");
                self.failed = Some(e.to_string());
                self.metrics.failed(replies.len());
                for (_, reply) in replies {
                    let _ = reply.send(Err(AuditError::Poisoned(e.to_string())));
                }
                return None;
            }
        };
        match self.shared.head.write() {
            Ok(mut h) => *h = signed.clone(),
            Err(p) => *p.into_inner() = signed.clone(),
        }
        self.shared.watch.send_replace(signed.clone());
        self.shared.signed_at.touch();
        self.metrics
            .committed(replies.len(), started.elapsed(), self.frontier.size());
        for (seq, reply) in replies {
            let _ = reply.send(Ok(Appended {
                seq,
                checkpoint: signed.clone(),
            }));
        }
        self.pending = Some(signed.clone());
        if self.head_written.elapsed() >= HEAD_FILE_INTERVAL {
            self.write_head(&signed);
        }
        Some(signed)
    }

    fn rotate(
        &mut self,
        new: NoteSigner,
        entry: PreparedEntry,
        reply: oneshot::Sender<Result<Appended, AuditError>>,
    ) {
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
        let (tx, mut rx) = oneshot::channel();
        let signed = self.commit(vec![(entry, tx)], Some((&new, text.into_bytes())));
        if signed.is_some() {
            match self.shared.verifiers.write() {
                Ok(mut v) => *v = verifiers,
                Err(p) => *p.into_inner() = verifiers,
            }
            self.signer = new;
        }
        let result = rx.try_recv().unwrap_or(Err(AuditError::Closed));
        let _ = reply.send(result);
    }
}
