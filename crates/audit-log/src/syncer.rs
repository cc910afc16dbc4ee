//! The syncer thread: durability, signing and answers, pipelined behind the writer.
//!
//! The writer (`crate::writer`) hashes and inserts a batch, then hands it here and goes on with
//! the next one. The syncer takes every batch that is waiting, makes them durable together (one
//! sled flush and one `fdatasync`: `crate::durable`), only then publishes their tree nodes and
//! signs one checkpoint for the last batch's size, and answers every appender in them with it.
//! So while one `fdatasync` runs, the next batches are already being written: the disk wait and
//! the hashing overlap, and a sync covers everything that arrived during the previous one.
//!
//! The order that makes this safe: the writer sends a batch only after all its inserts
//! returned, and sled's flush makes durable every insert that returned before it was called;
//! nothing is published, signed or acknowledged before that flush and its `fdatasync` end.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::error::AuditError;
use crate::hash::Hash;
use crate::head_file;
use crate::keys;
use crate::log::{Appended, Shared};
use crate::note::{NoteSigner, NoteVerifier};

/// How long the syncer waits for more work before storing the last signed note on its own.
const IDLE_PERSIST: Duration = Duration::from_millis(20);
/// Under sustained load, how often the head file is refreshed.
const HEAD_FILE_INTERVAL: Duration = Duration::from_secs(1);

/// Who waits for an append: answered with its seq and the checkpoint that covers it.
pub(crate) type Reply = oneshot::Sender<Result<Appended, AuditError>>;

/// The first write, flush or signing failure of this process. Once set, the writer writes
/// nothing more and the syncer acknowledges nothing more: the frontier may be ahead of storage.
#[derive(Debug, Default)]
pub(crate) struct Failure(
    /// Why, for the `Poisoned` error every later append gets.
    OnceLock<String>,
);

impl Failure {
    /// Records `why` unless an earlier failure was recorded.
    pub(crate) fn set(&self, why: String) {
        let _ = self.0.set(why);
    }

    /// The recorded failure, if any.
    pub(crate) fn get(&self) -> Option<&String> {
        self.0.get()
    }
}

/// Answers every waiting appender (each reply with whatever it came with: an entry, a seq)
/// with the log's failure, and counts them as failed appends.
pub(crate) fn poison<T>(
    metrics: &crate::metrics::WriterMetrics,
    waiting: Vec<(T, Reply)>,
    why: &str,
) {
    metrics.failed(waiting.len());
    for (_, reply) in waiting {
        let _ = reply.send(Err(AuditError::Poisoned(why.to_string())));
    }
}

/// A key rotation recorded by a batch: its checkpoint is signed by the old and the new key,
/// and from then on only the new key signs.
pub(crate) struct Rotation {
    /// The new signing key.
    pub(crate) new: NoteSigner,
    /// Every verifier key after the rotation, oldest first (already in the batch's writes).
    pub(crate) verifiers: Vec<NoteVerifier>,
}

/// One batch the writer has inserted (not yet durable).
pub(crate) struct Batch {
    /// Each entry's seq and who waits for it.
    pub(crate) replies: Vec<(u64, Reply)>,
    /// The batch's new nodes at the levels kept in memory, published once durable.
    pub(crate) upper: Vec<(u8, u64, Hash)>,
    /// The tree size after this batch: what its checkpoint says.
    pub(crate) size: u64,
    /// The tree root after this batch.
    pub(crate) root: Hash,
    /// When the writer took the batch's first request: the commit-time histogram starts here.
    pub(crate) started: Instant,
    /// The key rotation this batch records, if any (boxed: a signing key is large and rare).
    pub(crate) rotation: Option<Box<Rotation>>,
}

/// What the writer sends the syncer.
pub(crate) enum SyncRequest {
    /// Make durable, sign and answer.
    Batch(Batch),
    /// Commit everything sent before, store the last note, then say so: the writer waits for
    /// this before a pause (nothing may be written during one) and around a key rotation.
    Settle(mpsc::Sender<()>),
}

/// The syncer thread's state.
pub(crate) struct SyncLoop {
    /// Where results are published.
    pub(crate) shared: Arc<Shared>,
    /// Batches from the writer, in seq order.
    pub(crate) rx: mpsc::Receiver<SyncRequest>,
    /// The current signing key.
    pub(crate) signer: NoteSigner,
    /// The last signed checkpoint, not yet stored.
    pub(crate) pending: Option<Arc<SignedCheckpoint>>,
    /// Shared with the writer: set by whichever fails first.
    pub(crate) failed: Arc<Failure>,
    /// The data directory, for the head file.
    pub(crate) dir: PathBuf,
    /// When the head file was last written; it is refreshed at most once a second under load.
    pub(crate) head_written: Instant,
    /// Appends, failures, batch sizes and commit times (no-ops without a recorder).
    pub(crate) metrics: crate::metrics::WriterMetrics,
}

impl SyncLoop {
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
            let mut group = Vec::new();
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    SyncRequest::Batch(b) if b.rotation.is_some() => {
                        // A rotation is its own commit, after whatever came before it.
                        self.commit(std::mem::take(&mut group));
                        self.commit(vec![b]);
                    }
                    SyncRequest::Batch(b) => group.push(b),
                    SyncRequest::Settle(done) => {
                        self.commit(std::mem::take(&mut group));
                        self.store_pending();
                        let _ = done.send(());
                    }
                }
                next = self.rx.try_recv().ok();
            }
            self.commit(group);
        }
        self.store_pending();
    }

    /// Inserts the last signed note (if not stored yet), then makes everything written
    /// durable: sled's flush and one `fdatasync`.
    fn flush_with_pending_note(&mut self) -> Result<(), AuditError> {
        let store = &self.shared.store;
        if let Some(cp) = self.pending.take() {
            store
                .tree
                .insert(keys::checkpoint(cp.checkpoint.size), cp.note.as_bytes())?;
        }
        store.flush()
    }

    fn store_pending(&mut self) {
        let Some(cp) = self.pending.clone() else {
            return;
        };
        if self.failed.get().is_some() {
            self.pending = None;
            return;
        }
        if let Err(e) = self.flush_with_pending_note() {
            // Not fatal for what was acknowledged: the next start re-signs the same size.
            tracing::error!(error = %e, size = cp.checkpoint.size, "failed to store signed checkpoint");
            self.failed.set(e.to_string());
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

    /// Makes `group` durable (with the pending note), publishes its nodes, signs one checkpoint
    /// for its last batch and answers every appender in it.
    fn commit(&mut self, group: Vec<Batch>) {
        let Some(last) = group.last() else {
            return;
        };
        let (size, root, started) = (last.size, last.root, group[0].started);
        let mut rotation = None;
        let mut upper = Vec::new();
        let mut replies = Vec::new();
        for b in group {
            rotation = rotation.or(b.rotation);
            upper.extend(b.upper);
            replies.extend(b.replies);
        }
        if let Some(why) = self.failed.get() {
            poison(&self.metrics, replies, why);
            return;
        }
        if let Err(e) = self.flush_with_pending_note() {
            tracing::error!(error = %e, "audit log write failed; refusing further appends");
            self.failed.set(e.to_string());
            poison(&self.metrics, replies, &e.to_string());
            return;
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
            size,
            root,
        };
        let signed = match &rotation {
            Some(r) => cp.sign(&[&self.signer, &r.new]),
            None => cp.sign(&[&self.signer]),
        };
        let signed = match signed {
            Ok(s) => Arc::new(s),
            Err(e) => {
                // Logged here, once: callers are told only that the log is unavailable.
                tracing::error!(error = %e, "signing the audit checkpoint failed; refusing further appends");
                self.failed.set(e.to_string());
                poison(&self.metrics, replies, &e.to_string());
                return;
            }
        };
        if let Some(r) = rotation {
            let Rotation { new, verifiers } = *r;
            match self.shared.verifiers.write() {
                Ok(mut v) => *v = verifiers,
                Err(p) => *p.into_inner() = verifiers,
            }
            self.signer = new;
        }
        match self.shared.head.write() {
            Ok(mut h) => *h = signed.clone(),
            Err(p) => *p.into_inner() = signed.clone(),
        }
        self.shared.watch.send_replace(signed.clone());
        self.shared.signed_at.touch();
        self.metrics
            .committed(replies.len(), started.elapsed(), size);
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
    }
}

#[cfg(test)]
mod tests {
    use crate::{AuditError, AuditLog, LogConfig, NoteSigner};

    /// `AuditLog::failure` reads the failure the writer and syncer share: once one is
    /// recorded, it is reported, and every append is refused with it.
    #[tokio::test]
    async fn a_recorded_failure_is_reported_and_refuses_appends() {
        let dir = tempfile::tempdir().expect("dir");
        let signer = NoteSigner::generate("failure.test/log").expect("key");
        let log =
            AuditLog::open(LogConfig::new(dir.path(), "failure.test/log"), signer).expect("open");
        let fields = serde_json::Map::from_iter([("action".to_owned(), "x.y".into())]);
        log.append_fields(&fields).await.expect("append");
        assert_eq!(log.failure(), None);
        log.writer
            .failed
            .as_ref()
            .expect("a writable log shares its failure")
            .set("disk gone".into());
        assert_eq!(log.failure().as_deref(), Some("disk gone"));
        match log.append_fields(&fields).await {
            Err(AuditError::Poisoned(why)) => assert_eq!(why, "disk gone"),
            other => panic!("appended after a failure: {other:?}"),
        }
        log.close();
    }
}
