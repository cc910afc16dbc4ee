//! The audit log: group-committed durable appends, signed checkpoints, proofs and reads.
//!
//! One writer thread owns the tree's right edge. Appenders hand it prepared entries over a
//! channel; it takes everything queued (up to `max_batch`), writes entries and new tree nodes in
//! seq order (see `writer`) and hands the batch to the syncer thread, which fsyncs every batch
//! waiting once, and only then signs the checkpoint for the new size and answers every appender
//! with that checkpoint (see `syncer`). The signed note is stored with the next sync (or after a
//! short idle wait), so each group of batches costs one fsync. If the process dies
//! before the note is stored, the next start signs the same size again: the leaves are durable
//! and Ed25519 is deterministic, so it produces the very same note — the log never signs two
//! roots for one size, and each checkpoint extends the last.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use serde_json::{Map, Value};
use tokio::sync::{oneshot, watch};

use crate::bundle_files::BundleFiles;
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::entry::{PreparedEntry, SCHEMA_VERSION};
use crate::error::AuditError;
use crate::hash::Hash;
use crate::head_file;
use crate::keys;
use crate::merkle::{self, Frontier, NodeSource};
use crate::note::{NoteSigner, NoteVerifier};
use crate::store::{StartupCheck, Store};
use crate::syncer::{Failure, SyncLoop};
use crate::upper::{UpperNodes, View};
use crate::writer::{Request, Syncer, WriterLoop};

/// How to open a log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The data directory (sled); never the place for the signing key.
    pub path: PathBuf,
    /// The log's origin, e.g. `onboard.example.net/audit`; the signing key's name must match.
    pub origin: String,
    /// Most entries in one group commit; bounds the latency one batch adds to the next.
    pub max_batch: usize,
    /// sled page cache size, which dominates the log's memory use.
    pub cache_bytes: u64,
    /// How much of the stored tree to recompute at start-up.
    pub startup_check: StartupCheck,
    /// Tree levels from this one up are kept in memory; a proof reads one sled entry per level
    /// below it. The default, 0, keeps every node hash in memory (64 MB per million entries;
    /// each level up halves that) so proofs never touch sled: a sled read of a page that is not
    /// in its cache costs ~15 µs, a whole in-memory proof ~3.5 µs (BENCHMARKS.md).
    pub memory_from_level: u8,
    /// Keep each full entry bundle the log assembles as a file under `bundles/` in the data
    /// directory (a checked cache beside sled, see [`AuditLog::materialize_bundles`]), so
    /// serving it is one file read. Costs as much disk again as the entries themselves.
    pub bundle_files: bool,
}

impl LogConfig {
    /// Defaults for a data directory and origin.
    pub fn new(path: impl Into<PathBuf>, origin: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            origin: origin.into(),
            max_batch: 4096,
            cache_bytes: 64 << 20,
            startup_check: StartupCheck::Full,
            memory_from_level: 0,
            bundle_files: true,
        }
    }
}

/// An acknowledged append: the entry is durable and covered by `checkpoint`.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The entry's index in the log.
    pub seq: u64,
    /// The first signed checkpoint that covers it.
    pub checkpoint: Arc<SignedCheckpoint>,
}

/// State shared by the writer and the readers.
pub(crate) struct Shared {
    /// The storage.
    pub(crate) store: Store,
    /// The origin every checkpoint carries.
    pub(crate) origin: String,
    /// The latest published checkpoint; readers serve nothing beyond its size.
    pub(crate) head: RwLock<Arc<SignedCheckpoint>>,
    /// Every verifier key the log has used, oldest first.
    pub(crate) verifiers: RwLock<Vec<NoteVerifier>>,
    /// Upper tree levels, extended by the writer before it publishes a new head.
    pub(crate) upper: RwLock<UpperNodes>,
    /// Followers learn of each new checkpoint here.
    pub(crate) watch: watch::Sender<Arc<SignedCheckpoint>>,
    /// When the writer last signed a checkpoint (the checkpoint-age gauge reads it).
    pub(crate) signed_at: crate::metrics::SignedAt,
    /// Full entry bundles kept as files; `None` when the configuration turns them off.
    pub(crate) bundles: Option<BundleFiles>,
}

/// The writer thread and the channel to it; dropping it stops the writer after it drains.
pub(crate) struct Writer {
    /// Requests to the writer; `None` once closed.
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    /// Joined on close so that the last note is stored before `close` returns.
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The writer's and syncer's first failure, shared with them: read by [`AuditLog::failure`]
    /// (health turns NOT_SERVING on it). `None` for a log opened read-only.
    pub(crate) failed: Option<Arc<Failure>>,
    /// `onboard_audit_appends_requested_total`: appends handed to the writer. Next to the
    /// checkpoint's age it tells a stuck writer (appends asked for, nothing signed) from an
    /// idle one, which a count of answered calls cannot: a call waits for its entry.
    requested: metrics::Counter,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// A handle to an open audit log; clones share one writer.
#[derive(Clone)]
pub struct AuditLog {
    /// Reads go straight to the shared state.
    shared: Arc<Shared>,
    /// Appends go through the writer.
    pub(crate) writer: Arc<Writer>,
}

fn lock_err<T>(_: T) -> AuditError {
    AuditError::Poisoned("a lock was poisoned by a panic".into())
}

impl AuditLog {
    /// Opens or creates the log at `config.path`, running the start-up check, and starts the
    /// writer. `signer` must be the log's current key (its name = the origin).
    pub fn open(config: LogConfig, signer: NoteSigner) -> Result<Self, AuditError> {
        if signer.name() != config.origin {
            return Err(AuditError::Config(format!(
                "signing key is named {:?} but the log origin is {:?}; they must be equal",
                signer.name(),
                config.origin
            )));
        }
        let store = Store::open(&config.path, config.cache_bytes)?;
        match store.get_meta(keys::META_ORIGIN)? {
            Some(o) if o != config.origin => {
                return Err(AuditError::Config(format!(
                    "the log at {} has origin {o:?}, not {:?}",
                    config.path.display(),
                    config.origin
                )));
            }
            Some(_) => {}
            None => {
                store
                    .tree
                    .insert(keys::META_ORIGIN, config.origin.as_bytes())?;
                store.tree.insert(
                    keys::META_VERIFIERS,
                    signer.verifier().to_string().as_bytes(),
                )?;
                store.flush()?;
            }
        }
        let rec = store.recover(
            &config.origin,
            config.startup_check,
            config.memory_from_level,
        )?;
        let mine = signer.verifier();
        match rec.verifiers.iter().position(|v| *v == mine) {
            Some(i) if i + 1 == rec.verifiers.len() => {}
            Some(_) => {
                return Err(AuditError::Config(format!(
                    "signing key {mine} was retired by a key rotation; use the log's current key {}",
                    rec.verifiers
                        .last()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )));
            }
            None => {
                return Err(AuditError::Config(format!(
                    "signing key {mine} is not this log's key ({}); to change keys, rotate with `onboard audit rotate-key`",
                    rec.verifiers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let frontier = rec.frontier;
        check_head_file(&config.path, &store, &rec.verifiers, &frontier)?;
        // Re-sign the durable size if the last stored note is older (a crash after an fsync
        // but before the note was stored): same leaves, same key, same note.
        let head = match rec.last_checkpoint {
            Some(cp) if cp.checkpoint.size == frontier.size() => cp,
            _ => {
                let cp = Checkpoint {
                    origin: config.origin.clone(),
                    size: frontier.size(),
                    root: frontier.root(),
                }
                .sign(&[&signer])?;
                store
                    .tree
                    .insert(keys::checkpoint(cp.checkpoint.size), cp.note.as_bytes())?;
                store.flush()?;
                cp
            }
        };
        head_file::write(&config.path, &head.note)
            .map_err(|e| AuditError::io("writing the head file", e))?;
        let head = Arc::new(head);
        let (watch_tx, _) = watch::channel(head.clone());
        let shared = Arc::new(Shared {
            store,
            origin: config.origin,
            head: RwLock::new(head),
            verifiers: RwLock::new(rec.verifiers),
            upper: RwLock::new(rec.upper),
            watch: watch_tx,
            signed_at: crate::metrics::SignedAt::now(),
            bundles: config
                .bundle_files
                .then(|| BundleFiles::new(&config.path, true)),
        });
        let (tx, rx) = mpsc::channel();
        let metrics = crate::metrics::WriterMetrics::new(frontier.size());
        let failed = Arc::new(Failure::default());
        let syncer = Syncer::start(|rx| SyncLoop {
            shared: shared.clone(),
            rx,
            signer,
            pending: None,
            failed: failed.clone(),
            dir: config.path.clone(),
            head_written: Instant::now(),
            metrics: metrics.clone(),
        })?;
        let w = WriterLoop {
            shared: shared.clone(),
            rx,
            frontier,
            max_batch: config.max_batch.max(1),
            memory_from_level: config.memory_from_level,
            failed: failed.clone(),
            syncer,
            metrics,
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || w.run())
            .map_err(|e| AuditError::io("starting the audit writer thread", e))?;
        Ok(Self {
            shared,
            writer: Arc::new(Writer {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                failed: Some(failed),
                requested: crate::metrics::appends_requested(),
            }),
        })
    }

    /// Opens an existing log for reading only (export, proofs): the same start-up check, no
    /// writer, nothing signed. The head is the last stored checkpoint. sled locks its directory,
    /// so this works only while no server has the log open.
    pub fn open_read_only(
        path: impl Into<PathBuf>,
        startup_check: StartupCheck,
    ) -> Result<Self, AuditError> {
        let path = path.into();
        if !path.join("conf").exists() {
            return Err(AuditError::Config(format!(
                "{} is not an audit log data directory (no sled store there)",
                path.display()
            )));
        }
        let store = Store::open(&path, 64 << 20)?;
        let origin = store
            .get_meta(keys::META_ORIGIN)?
            .ok_or_else(|| AuditError::Config(format!("{} holds no audit log", path.display())))?;
        // One-shot tools: keep only the top of the tree in memory.
        let rec = store.recover(&origin, startup_check, 8)?;
        check_head_file(&path, &store, &rec.verifiers, &rec.frontier)?;
        let head = Arc::new(rec.last_checkpoint.ok_or_else(|| AuditError::Integrity {
            location: "checkpoint".into(),
            detail: "the log has no signed checkpoint".into(),
        })?);
        let (watch_tx, _) = watch::channel(head.clone());
        Ok(Self {
            shared: Arc::new(Shared {
                store,
                origin,
                head: RwLock::new(head),
                verifiers: RwLock::new(rec.verifiers),
                upper: RwLock::new(rec.upper),
                watch: watch_tx,
                signed_at: crate::metrics::SignedAt::default(),
                // Read-only: existing files are served when they check, none is written.
                bundles: Some(BundleFiles::new(&path, false)),
            }),
            writer: Arc::new(Writer {
                tx: Mutex::new(None),
                thread: Mutex::new(None),
                failed: None,
                requested: metrics::Counter::noop(),
            }),
        })
    }

    pub(crate) fn send(&self, req: Request) -> Result<(), AuditError> {
        if matches!(req, Request::Append { .. } | Request::Rotate { .. }) {
            self.writer.requested.increment(1);
        }
        let tx = self.writer.tx.lock().map_err(lock_err)?;
        tx.as_ref()
            .ok_or(AuditError::Closed)?
            .send(req)
            .map_err(|_| AuditError::Closed)
    }

    /// Appends an entry with these fields (the log adds `v`, `seq`, `time`) and returns once it
    /// is durable and covered by a signed checkpoint.
    pub async fn append_fields(&self, fields: &Map<String, Value>) -> Result<Appended, AuditError> {
        let entry = PreparedEntry::new(SCHEMA_VERSION, fields)?;
        self.append_prepared(entry).await
    }

    /// Appends an already prepared entry.
    pub async fn append_prepared(&self, entry: PreparedEntry) -> Result<Appended, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Append { entry, reply })?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// [`AuditLog::append`] for callers outside an async runtime.
    pub fn append_blocking(&self, fields: &Map<String, Value>) -> Result<Appended, AuditError> {
        let entry = PreparedEntry::new(SCHEMA_VERSION, fields)?;
        let (reply, rx) = oneshot::channel();
        self.send(Request::Append { entry, reply })?;
        rx.blocking_recv().map_err(|_| AuditError::Closed)?
    }

    /// Rotates the signing key: appends `entry` (the caller's record of the rotation, e.g.
    /// Onboard's `signing_key.rotate`) in a checkpoint signed by both keys; from then on only
    /// `new` signs. The old verifier key stays listed.
    pub async fn rotate_key(
        &self,
        new: NoteSigner,
        entry: PreparedEntry,
    ) -> Result<Appended, AuditError> {
        if new.name() != self.shared.origin {
            return Err(AuditError::Config(format!(
                "the new key is named {:?}; it must be named after the origin {:?}",
                new.name(),
                self.shared.origin
            )));
        }
        if self.verifiers().contains(&new.verifier()) {
            return Err(AuditError::Config(
                "the new key has been used by this log before; generate a fresh one".into(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request::Rotate {
            new: Box::new(new),
            entry,
            reply,
        })?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Stops the writer after it has answered everything queued and stored the last note.
    pub fn close(self) {
        if let Ok(mut tx) = self.writer.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.writer.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }

    /// The origin.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> Arc<SignedCheckpoint> {
        match self.shared.head.read() {
            Ok(h) => h.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Why this log refuses every append until the process restarts (its first write, flush
    /// or signing failure: storage may be behind what was written), or `None` while it works.
    pub fn failure(&self) -> Option<String> {
        self.writer.failed.as_ref()?.get().cloned()
    }

    /// The number of entries covered by the latest checkpoint.
    pub fn size(&self) -> u64 {
        self.checkpoint().checkpoint.size
    }

    /// When this process last signed a checkpoint of the log (its opening counts: the head is
    /// checked then); the Unix epoch for a log opened read-only.
    pub fn last_signed(&self) -> std::time::SystemTime {
        self.shared.signed_at.get()
    }

    /// A receiver that sees every new checkpoint (for follow streams).
    pub fn subscribe(&self) -> watch::Receiver<Arc<SignedCheckpoint>> {
        self.shared.watch.subscribe()
    }

    /// Every verifier key this log has signed with, oldest first.
    pub fn verifiers(&self) -> Vec<NoteVerifier> {
        match self.shared.verifiers.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn check_size(&self, size: u64) -> Result<(), AuditError> {
        let have = self.size();
        if size > have {
            return Err(AuditError::OutOfRange(format!(
                "tree size {size} is beyond the latest checkpoint ({have})"
            )));
        }
        Ok(())
    }

    /// The stored bytes of entry `seq`.
    pub fn entry(&self, seq: u64) -> Result<Vec<u8>, AuditError> {
        let size = self.size();
        if seq >= size {
            return Err(AuditError::OutOfRange(format!(
                "entry {seq} does not exist (the log has {size} entries)"
            )));
        }
        self.shared
            .store
            .entry(seq)?
            .ok_or_else(|| AuditError::Integrity {
                location: format!("entry {seq}"),
                detail: "missing from storage".into(),
            })
    }

    /// Entries `[from, to)` (clamped to the checkpointed size), in order.
    pub fn entries(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), AuditError>> + use<> {
        let to = to.min(self.size());
        self.shared.store.entries(from, to.max(from))
    }

    pub(crate) fn with_view<T>(&self, f: impl FnOnce(&View<'_>) -> T) -> T {
        let guard = match self.shared.upper.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&View {
            store: &self.shared.store,
            upper: &guard,
        })
    }

    /// The root of the tree of `size` entries (at most the latest checkpoint's size).
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.check_size(size)?;
        self.with_view(|v| merkle::root(v, size))
    }

    /// The inclusion proof of entry `seq` in the tree of `size` entries.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size)?;
        self.with_view(|v| merkle::inclusion_proof(v, seq, size))
    }

    /// The consistency proof from `size1` to `size2`.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size2)?;
        self.with_view(|v| merkle::consistency_proof(v, size1, size2))
    }

    /// The store, for tile reads.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The complete nodes at tree `level`, indexes `[from, to)`, concatenated: a hash tile's
    /// bytes. Upper levels come from memory (one read lock for the whole tile), the rest from
    /// sled.
    pub(crate) fn hash_tile_bytes(
        &self,
        level: u8,
        from: u64,
        to: u64,
    ) -> Result<Vec<u8>, AuditError> {
        self.with_view(|v| {
            let mut tile = Vec::with_capacity((to.saturating_sub(from) as usize) * 32);
            for i in from..to {
                tile.extend_from_slice(&v.node(level, i)?);
            }
            Ok(tile)
        })
    }
}

/// sled must still hold what the head file says was signed: at least as many entries, and the
/// same root at that size.
fn check_head_file(
    dir: &std::path::Path,
    store: &Store,
    verifiers: &[NoteVerifier],
    frontier: &Frontier,
) -> Result<(), AuditError> {
    let Some(note) =
        head_file::read(dir).map_err(|e| AuditError::io("reading the head file", e))?
    else {
        return Ok(());
    };
    let bad = |location: String, detail: String| AuditError::Integrity { location, detail };
    let cp = SignedCheckpoint::open(&note, verifiers)
        .map_err(|e| bad(head_file::NAME.into(), e.to_string()))?;
    let (want, have) = (cp.checkpoint.size, frontier.size());
    if want > have {
        return Err(bad(
            format!("entry {have}"),
            format!(
                "log truncated: {} records a signed checkpoint of {want} entries but sled holds {have}",
                head_file::NAME
            ),
        ));
    }
    if merkle::root(store, want)? != cp.checkpoint.root {
        return Err(bad(
            format!("checkpoint at size {want}"),
            format!(
                "the stored tree differs from the root signed in {}",
                head_file::NAME
            ),
        ));
    }
    Ok(())
}
