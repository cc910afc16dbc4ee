//! Snapshots of the log for backups, and restoring one into an empty directory.
//!
//! - [`AuditLog::pause`]: the writer finishes what is queued, stores its last signed note, and
//!   then appends nothing until the returned [`Pause`] is dropped (or its time limit passes).
//!   Appenders wait meanwhile; nothing is refused. A backup holds the pause only while it
//!   exports the state store, so the log's size is fixed at one signed checkpoint.
//! - [`AuditLog::snapshot`]: the log's records as of a pause's checkpoint: its metadata, every
//!   checkpoint note up to that size and every entry below it. Entries below a signed size never
//!   change, so these are read after the pause ends, while appends go on.
//! - [`SnapshotCheck`]: checks such records before anything is written: entries contiguous from
//!   0, every leaf rehashed into the root, the checkpoint's signature and root.
//! - [`restore`]: writes checked records into a new sled store and its head file; opening the
//!   result with [`AuditLog::open`] runs the full start-up check once more.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::checkpoint::SignedCheckpoint;
use crate::error::AuditError;
use crate::hash::{Hash, leaf_hash};
use crate::keys;
use crate::log::AuditLog;
use crate::merkle::Frontier;
use crate::note::NoteVerifier;
use crate::store::Store;
use crate::writer::Request;

/// Appends are paused while this lives (at most the limit given to [`AuditLog::pause`]).
#[derive(Debug)]
pub struct Pause {
    /// Dropping it lets the writer go on.
    _resume: mpsc::Sender<()>,
    /// Set by the writer if it resumed because the limit passed.
    expired: Arc<AtomicBool>,
    /// The signed checkpoint the log stands at during the pause.
    checkpoint: Arc<SignedCheckpoint>,
    /// The log's verifier keys during the pause (a later rotation adds one).
    verifiers: Vec<NoteVerifier>,
}

impl Pause {
    /// The checkpoint the log stands at.
    pub fn checkpoint(&self) -> &Arc<SignedCheckpoint> {
        &self.checkpoint
    }

    /// Whether the writer stopped waiting (the limit passed): whatever was read "during" the
    /// pause may have seen later appends.
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }
}

/// What the writer receives with a pause request.
pub(crate) struct PauseRequest {
    /// Where it reports the checkpoint it stopped at.
    pub(crate) paused: oneshot::Sender<Result<Arc<SignedCheckpoint>, AuditError>>,
    /// Closed (sender dropped) when the pause ends.
    pub(crate) resume: mpsc::Receiver<()>,
    /// The longest the writer waits.
    pub(crate) limit: Duration,
    /// Set when the limit passed.
    pub(crate) expired: Arc<AtomicBool>,
}

/// Blocks the writer until the pause ends (`resume` closed) or `limit` passes.
pub(crate) fn wait_for_resume(resume: &mpsc::Receiver<()>, limit: Duration, expired: &AtomicBool) {
    if let Err(mpsc::RecvTimeoutError::Timeout) = resume.recv_timeout(limit) {
        expired.store(true, Ordering::SeqCst);
        tracing::warn!(
            limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            "audit append pause ended by its time limit"
        );
    }
}

/// The log's records as of one signed checkpoint.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The log's origin.
    pub origin: String,
    /// The checkpoint the snapshot is at.
    pub checkpoint: Arc<SignedCheckpoint>,
    /// The verifier keys, oldest first, as stored (`m/verifiers`).
    pub verifiers: Vec<NoteVerifier>,
}

/// One stored record: key and value, as sled holds them.
pub type Record = (Vec<u8>, Vec<u8>);

impl AuditLog {
    /// Pauses appends (see the module docs) for at most `limit`.
    pub async fn pause(&self, limit: Duration) -> Result<Pause, AuditError> {
        let (resume_tx, resume_rx) = mpsc::channel();
        let (paused, rx) = oneshot::channel();
        let expired = Arc::new(AtomicBool::new(false));
        self.send(Request::Pause(PauseRequest {
            paused,
            resume: resume_rx,
            limit,
            expired: expired.clone(),
        }))?;
        let checkpoint = rx.await.map_err(|_| AuditError::Closed)??;
        Ok(Pause {
            _resume: resume_tx,
            expired,
            checkpoint,
            verifiers: self.verifiers(),
        })
    }

    /// What a snapshot at `pause`'s checkpoint holds; read its records with
    /// [`AuditLog::snapshot_records`].
    pub fn snapshot(&self, pause: &Pause) -> Snapshot {
        Snapshot {
            origin: self.origin().to_owned(),
            checkpoint: pause.checkpoint.clone(),
            verifiers: pause.verifiers.clone(),
        }
    }

    /// The records of `snap`, in the order [`SnapshotCheck`] wants them: metadata, the
    /// checkpoint notes up to its size, the entries below it.
    pub fn snapshot_records(
        &self,
        snap: &Snapshot,
    ) -> impl Iterator<Item = Result<Record, AuditError>> + use<> {
        let size = snap.checkpoint.checkpoint.size;
        let verifiers = snap
            .verifiers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        let meta = [
            (keys::META_ORIGIN.to_vec(), snap.origin.clone().into_bytes()),
            (keys::META_VERIFIERS.to_vec(), verifiers.into_bytes()),
        ];
        let tree = self.store().tree.clone();
        let notes = tree
            .range(keys::checkpoint(0)..keys::checkpoint(size))
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(AuditError::from)
            });
        let last = (
            keys::checkpoint(size).to_vec(),
            snap.checkpoint.note.clone().into_bytes(),
        );
        let entries = tree.range(keys::entry(0)..keys::entry(size)).map(|r| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(AuditError::from)
        });
        meta.into_iter()
            .map(Ok)
            .chain(notes)
            .chain(std::iter::once(Ok(last)))
            .chain(entries)
    }
}

/// Checks snapshot records, fed in the order [`AuditLog::snapshot_records`] gives them.
#[derive(Debug, Default)]
pub struct SnapshotCheck {
    /// The tree so far, rebuilt from the entries' bytes.
    frontier: Frontier,
    /// `m/origin`.
    origin: Option<String>,
    /// `m/verifiers`.
    verifiers: Vec<NoteVerifier>,
    /// Checkpoint notes by size.
    notes: Vec<(u64, String)>,
    /// Sizes whose root the caller wants (e.g. a checkpoint a witness knows), and the roots.
    roots_at: Vec<(u64, Option<Hash>)>,
}

/// What a successful check found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The snapshot's checkpoint, signature verified and root recomputed.
    pub checkpoint: SignedCheckpoint,
    /// The log's origin.
    pub origin: String,
    /// Its verifier keys, oldest first.
    pub verifiers: Vec<NoteVerifier>,
    /// The root at each size asked for with [`SnapshotCheck::want_root_at`] that the snapshot
    /// reaches.
    pub roots_at: Vec<(u64, Hash)>,
}

fn bad(location: impl Into<String>, detail: impl Into<String>) -> AuditError {
    AuditError::Integrity {
        location: location.into(),
        detail: detail.into(),
    }
}

impl SnapshotCheck {
    /// Also records the root at `size` (if the snapshot reaches it).
    pub fn want_root_at(&mut self, size: u64) {
        self.roots_at
            .push((size, (size == 0).then(crate::hash::empty_root)));
    }

    /// The verifier keys read so far (`m/verifiers` comes before the notes and entries).
    pub fn verifiers(&self) -> &[NoteVerifier] {
        &self.verifiers
    }

    /// Checks one record.
    pub fn feed(&mut self, key: &[u8], value: &[u8]) -> Result<(), AuditError> {
        let text = || String::from_utf8(value.to_vec()).map_err(|_| bad("metadata", "not UTF-8"));
        match key.first() {
            _ if key == keys::META_ORIGIN => self.origin = Some(text()?),
            _ if key == keys::META_VERIFIERS => {
                self.verifiers = text()?
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(NoteVerifier::parse)
                    .collect::<Result<_, _>>()?;
            }
            Some(&keys::CHECKPOINT) => {
                let size = keys::seq_of(key).ok_or_else(|| bad("checkpoint", "short key"))?;
                self.notes.push((size, text()?));
            }
            Some(&keys::ENTRY) => {
                let seq = keys::seq_of(key).ok_or_else(|| bad("entry", "short key"))?;
                let n = self.frontier.size();
                if seq != n {
                    return Err(bad(
                        format!("entry {n}"),
                        format!("missing: the next entry in the snapshot is {seq}"),
                    ));
                }
                let (_, bytes) = keys::split_entry_value(value)
                    .ok_or_else(|| bad(format!("entry {seq}"), "malformed stored value"))?;
                self.frontier.push(leaf_hash(bytes), |_, _, _| {});
                let size = self.frontier.size();
                for (want, root) in &mut self.roots_at {
                    if *want == size {
                        *root = Some(self.frontier.root());
                    }
                }
            }
            _ => {
                return Err(bad(
                    "snapshot",
                    format!("unexpected record key {}", String::from_utf8_lossy(key)),
                ));
            }
        }
        Ok(())
    }

    /// Ends the check: the last checkpoint note must verify with the log's keys and name the
    /// recomputed size and root; every earlier note must verify too.
    pub fn finish(self) -> Result<Checked, AuditError> {
        let origin = self.origin.ok_or_else(|| bad("snapshot", "no origin"))?;
        if self.verifiers.is_empty() {
            return Err(bad("snapshot", "no verifier keys"));
        }
        let size = self.frontier.size();
        let (last_size, last_note) = self
            .notes
            .last()
            .cloned()
            .ok_or_else(|| bad("snapshot", "no signed checkpoint"))?;
        let cp = SignedCheckpoint::open(&last_note, &self.verifiers)
            .map_err(|e| bad(format!("checkpoint at size {last_size}"), e.to_string()))?;
        if last_size != size || cp.checkpoint.size != size {
            return Err(bad(
                format!("checkpoint at size {last_size}"),
                format!(
                    "the snapshot holds {size} entries but its checkpoint is for {}",
                    cp.checkpoint.size
                ),
            ));
        }
        if cp.checkpoint.origin != origin {
            return Err(bad("checkpoint", "origin differs from the log's"));
        }
        if cp.checkpoint.root != self.frontier.root() {
            return Err(bad(
                format!("checkpoint at size {size}"),
                "the root recomputed from the entries differs from the signed root",
            ));
        }
        for (s, note) in &self.notes {
            if *s > size {
                return Err(bad(format!("checkpoint at size {s}"), "beyond the entries"));
            }
            SignedCheckpoint::open(note, &self.verifiers)
                .map_err(|e| bad(format!("checkpoint at size {s}"), e.to_string()))?;
        }
        Ok(Checked {
            checkpoint: cp,
            origin,
            verifiers: self.verifiers,
            roots_at: self
                .roots_at
                .into_iter()
                .filter_map(|(s, r)| r.map(|r| (s, r)))
                .collect(),
        })
    }
}

/// Writes checked snapshot records into a new log at `dir` (which must hold no log yet), with
/// `head_note` as its head file, durably. Open it with [`AuditLog::open`] afterwards.
pub fn restore(
    dir: &Path,
    records: impl IntoIterator<Item = Result<Record, AuditError>>,
    head_note: &str,
) -> Result<u64, AuditError> {
    if dir.join("conf").exists() {
        return Err(AuditError::Config(format!(
            "{} already holds an audit log; restore only into an empty place",
            dir.display()
        )));
    }
    let store = Store::open(dir, 64 << 20)?;
    let mut n = 0u64;
    for r in records {
        let (k, v) = r?;
        store.tree.insert(k, v)?;
        n += 1;
    }
    store.flush()?;
    crate::head_file::write(dir, head_note)
        .map_err(|e| AuditError::io("writing the head file", e))?;
    Ok(n)
}
