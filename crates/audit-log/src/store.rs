//! The sled store: opening (with the start-up integrity check) and reads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::checkpoint::SignedCheckpoint;
use crate::durable::DataFiles;
use crate::error::AuditError;
use crate::hash::{Hash, leaf_hash};
use crate::keys;
use crate::merkle::{Frontier, NodeSource};
use crate::note::NoteVerifier;
use crate::upper::UpperNodes;

/// How long opening waits for another handle (usually our own, just closed) to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The sled tree that holds the log, and the reads over it.
#[derive(Clone)]
pub(crate) struct Store {
    /// The database, kept for `flush`.
    pub(crate) db: sled::Db,
    /// The one tree holding entries, nodes, checkpoints and metadata.
    pub(crate) tree: sled::Tree,
    /// The sled directory, whose data files [`Store::flush`] syncs.
    path: PathBuf,
    /// Open handles on sled's data files, made at the first [`Store::flush`] (a read-only
    /// open never writes, so never syncs).
    files: Arc<Mutex<Option<DataFiles>>>,
}

/// What the start-up check learned.
pub(crate) struct Recovered {
    /// Complete-subtree roots of all stored entries.
    pub(crate) frontier: Frontier,
    /// The last stored checkpoint, already checked against the recomputed tree.
    pub(crate) last_checkpoint: Option<SignedCheckpoint>,
    /// Verifier keys recorded in the log, oldest first.
    pub(crate) verifiers: Vec<NoteVerifier>,
    /// The tree's upper levels, for fast proofs.
    pub(crate) upper: UpperNodes,
}

/// How much the start-up check recomputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartupCheck {
    /// Rehash every entry and compare with every stored node and checkpoint (linear in size).
    #[default]
    Full,
    /// Trust stored nodes; recompute only the roots of stored checkpoints from them.
    NodesOnly,
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> AuditError {
    AuditError::Corrupt {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

fn integrity(location: impl Into<String>, detail: impl Into<String>) -> AuditError {
    AuditError::Integrity {
        location: location.into(),
        detail: detail.into(),
    }
}

impl Store {
    /// Opens (or creates) the store; sled corruption becomes [`AuditError::Corrupt`].
    pub(crate) fn open(path: &Path, cache_bytes: u64) -> Result<Self, AuditError> {
        // sled's background threads release the directory lock shortly after the last handle
        // is dropped, so a close followed at once by an open (a restart in process, or a
        // service whose predecessor is still exiting) briefly sees the lock held: wait a little.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .open()
            {
                Ok(db) => break db,
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e @ sled::Error::Corruption { .. }) => return Err(corrupt(path, e)),
                Err(other) => return Err(AuditError::Storage(other)),
            }
        };
        let tree = db.open_tree("audit").map_err(|e| corrupt(path, e))?;
        Ok(Self {
            db,
            tree,
            path: path.to_path_buf(),
            files: Arc::new(Mutex::new(None)),
        })
    }

    /// Durable on power loss: sled's flush, then an `fdatasync` of its data files (see
    /// [`crate::durable`]). Nothing written before the call is acknowledged until it returns.
    pub(crate) fn flush(&self) -> Result<(), AuditError> {
        self.db.flush()?;
        let mut files = self
            .files
            .lock()
            .map_err(|_| AuditError::Poisoned("the data-file lock was poisoned".into()))?;
        match files.as_mut() {
            Some(f) => f.sync(),
            None => {
                *files = Some(DataFiles::open(&self.path)?);
                Ok(())
            }
        }
    }

    pub(crate) fn get_meta(&self, key: &[u8]) -> Result<Option<String>, AuditError> {
        match self.tree.get(key)? {
            None => Ok(None),
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|_| integrity("metadata", "not UTF-8")),
        }
    }

    pub(crate) fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, AuditError> {
        match self.tree.get(keys::entry(seq))? {
            None => Ok(None),
            Some(v) => Ok(Some(split(seq, &v)?.1.to_vec())),
        }
    }

    /// Entries `[from, to)` in order.
    pub(crate) fn entries(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), AuditError>> + use<> {
        self.tree
            .range(keys::entry(from)..keys::entry(to))
            .map(|r| {
                let (k, v) = r?;
                let seq = keys::seq_of(&k).ok_or_else(|| integrity("entry key", "too short"))?;
                Ok((seq, split(seq, &v)?.1.to_vec()))
            })
    }

    /// Entries `[from, to)` as a tlog-tiles entry bundle (big-endian uint16 length, bytes),
    /// appended to `out` straight from sled's buffers; returns how many entries were found.
    pub(crate) fn bundle_into(
        &self,
        from: u64,
        to: u64,
        out: &mut Vec<u8>,
    ) -> Result<u64, AuditError> {
        let mut n = 0u64;
        for r in self.tree.range(keys::entry(from)..keys::entry(to)) {
            let (k, v) = r?;
            let seq = keys::seq_of(&k).ok_or_else(|| integrity("entry key", "too short"))?;
            if seq != from + n {
                break;
            }
            let (_, bytes) = split(seq, &v)?;
            let len = u16::try_from(bytes.len()).map_err(|_| {
                AuditError::InvalidEntry(format!("stored entry {seq} of {} bytes", bytes.len()))
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes);
            n += 1;
        }
        Ok(n)
    }

    /// Whether a checkpoint of a size in `lo..hi` is stored.
    pub(crate) fn any_checkpoint_in(&self, lo: u64, hi: u64) -> Result<bool, AuditError> {
        Ok(self
            .tree
            .range(keys::checkpoint(lo)..keys::checkpoint(hi))
            .next()
            .transpose()?
            .is_some())
    }

    /// Every stored checkpoint, oldest first.
    pub(crate) fn checkpoints(
        &self,
    ) -> impl Iterator<Item = Result<(u64, String), AuditError>> + use<> {
        self.tree
            .range(keys::checkpoint(0)..=keys::checkpoint(u64::MAX))
            .map(|r| {
                let (k, v) = r?;
                let size =
                    keys::seq_of(&k).ok_or_else(|| integrity("checkpoint key", "too short"))?;
                let note = String::from_utf8(v.to_vec())
                    .map_err(|_| integrity(format!("checkpoint at size {size}"), "not UTF-8"))?;
                Ok((size, note))
            })
    }

    /// Number of stored entries: one past the last entry key.
    fn stored_size(&self) -> Result<u64, AuditError> {
        let last = self
            .tree
            .range(keys::entry(0)..=keys::entry(u64::MAX))
            .next_back()
            .transpose()?;
        match last {
            None => Ok(0),
            Some((k, _)) => keys::seq_of(&k)
                .map(|s| s + 1)
                .ok_or_else(|| integrity("entry key", "too short")),
        }
    }

    /// The start-up check: recompute the tree and hold every stored checkpoint against it.
    pub(crate) fn recover(
        &self,
        origin: &str,
        check: StartupCheck,
        upper_from: u8,
    ) -> Result<Recovered, AuditError> {
        let verifiers = self.verifiers()?;
        let size = self.stored_size()?;
        let mut checkpoints = self.checkpoints().collect::<Result<Vec<_>, _>>()?;
        checkpoints.sort_by_key(|(s, _)| *s);
        let mut upper = UpperNodes::new(upper_from);
        let frontier = match check {
            StartupCheck::Full => {
                self.rehash_all(size, &checkpoints, &verifiers, origin, &mut upper)?
            }
            StartupCheck::NodesOnly => {
                let f = Frontier::load(self, size)?;
                for (cp_size, note) in &checkpoints {
                    self.check_checkpoint(*cp_size, note, &verifiers, origin, size, None)?;
                }
                upper = UpperNodes::load(self, size, upper_from)?;
                f
            }
        };
        let last_checkpoint = match checkpoints.last() {
            None => None,
            Some((_, note)) => Some(
                SignedCheckpoint::open(note, &verifiers)
                    .map_err(|e| integrity("last checkpoint", e.to_string()))?,
            ),
        };
        Ok(Recovered {
            frontier,
            last_checkpoint,
            verifiers,
            upper,
        })
    }

    pub(crate) fn verifiers(&self) -> Result<Vec<NoteVerifier>, AuditError> {
        let text = self.get_meta(keys::META_VERIFIERS)?.unwrap_or_default();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                NoteVerifier::parse(l).map_err(|e| integrity("stored verifier keys", e.to_string()))
            })
            .collect()
    }

    /// Rehashes every entry in order, comparing each complete node with the stored one and each
    /// checkpoint's root with the root at its size.
    fn rehash_all(
        &self,
        size: u64,
        checkpoints: &[(u64, String)],
        verifiers: &[NoteVerifier],
        origin: &str,
        upper: &mut UpperNodes,
    ) -> Result<Frontier, AuditError> {
        let mut frontier = Frontier::default();
        let mut next_cp = checkpoints.iter().peekable();
        // A checkpoint of size 0 (never written, but harmless) is checked before any entry.
        while let Some((s, note)) = next_cp.next_if(|(s, _)| *s == 0) {
            self.check_checkpoint(*s, note, verifiers, origin, size, Some(frontier.root()))?;
        }
        let all = self.tree.range(keys::entry(0)..=keys::entry(u64::MAX));
        for (expected, item) in (0u64..).zip(all) {
            let (k, raw) = item?;
            let seq = keys::seq_of(&k).ok_or_else(|| integrity("entry key", "too short"))?;
            if seq != expected {
                return Err(integrity(
                    format!("entry {expected}"),
                    format!("missing (the next stored entry is {seq})"),
                ));
            }
            let (stored, bytes) = split(seq, &raw)?;
            let leaf = leaf_hash(bytes);
            let mut mismatch = None;
            let mut created = 0usize;
            frontier.push(leaf, |level, index, hash| {
                let at = usize::from(level) * 32;
                if mismatch.is_none() && stored.get(at..at + 32) != Some(&hash[..]) {
                    mismatch = Some((level, index, "differs from the recomputed hash"));
                }
                upper.record(level, index, hash);
                created += 1;
            });
            if mismatch.is_none() && created * 32 != stored.len() {
                mismatch = Some((0, seq, "count is wrong"));
            }
            if let Some((level, index, what)) = mismatch {
                let location = if level == 0 {
                    format!("entry {seq}")
                } else {
                    format!("entry {seq} (node level {level} index {index})")
                };
                return Err(integrity(location, format!("stored hash {what}")));
            }
            while let Some((s, note)) = next_cp.next_if(|(s, _)| *s == frontier.size()) {
                self.check_checkpoint(*s, note, verifiers, origin, size, Some(frontier.root()))?;
            }
        }
        if let Some((s, _)) = next_cp.next() {
            return Err(integrity(
                format!("entry {size}"),
                format!(
                    "log truncated: a checkpoint covers {s} entries but only {size} are stored"
                ),
            ));
        }
        Ok(frontier)
    }

    /// Checks one stored checkpoint: signature, origin, size within the log, and root.
    fn check_checkpoint(
        &self,
        cp_size: u64,
        note: &str,
        verifiers: &[NoteVerifier],
        origin: &str,
        size: u64,
        root_at_size: Option<Hash>,
    ) -> Result<(), AuditError> {
        let loc = format!("checkpoint at size {cp_size}");
        let cp =
            SignedCheckpoint::open(note, verifiers).map_err(|e| integrity(&loc, e.to_string()))?;
        if cp.checkpoint.size != cp_size {
            return Err(integrity(
                &loc,
                format!("note says size {}", cp.checkpoint.size),
            ));
        }
        if cp.checkpoint.origin != origin {
            return Err(integrity(
                &loc,
                format!("origin {:?}, configured {origin:?}", cp.checkpoint.origin),
            ));
        }
        if cp_size > size {
            return Err(integrity(
                format!("entry {size}"),
                format!(
                    "log truncated: a checkpoint covers {cp_size} entries but only {size} are stored"
                ),
            ));
        }
        let root = match root_at_size {
            Some(r) => r,
            None => crate::merkle::root(self, cp_size)?,
        };
        if root != cp.checkpoint.root {
            return Err(integrity(
                &loc,
                format!(
                    "signed root {} differs from the recomputed root {}",
                    hex::encode(cp.checkpoint.root),
                    hex::encode(root)
                ),
            ));
        }
        Ok(())
    }
}

impl NodeSource for Store {
    type Error = AuditError;

    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        let missing = || {
            integrity(
                format!("node level {level} index {index}"),
                "missing from storage",
            )
        };
        let home = keys::node_home(level, index).ok_or_else(missing)?;
        let v = self.tree.get(keys::entry(home))?.ok_or_else(missing)?;
        let (nodes, _) = split(home, &v)?;
        let at = usize::from(level) * 32;
        nodes
            .get(at..at + 32)
            .and_then(|h| Hash::try_from(h).ok())
            .ok_or_else(missing)
    }
}

/// Splits a stored entry value, naming the entry if it is malformed.
fn split(seq: u64, v: &[u8]) -> Result<(&[u8], &[u8]), AuditError> {
    keys::split_entry_value(v)
        .ok_or_else(|| integrity(format!("entry {seq}"), "stored value is malformed"))
}
