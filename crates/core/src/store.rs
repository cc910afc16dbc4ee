//! The one durable flush of the state store (sled), and [`RecordTree`], its MACed JSON records.
//!
//! sled 0.34 traps, both seen as hangs under CI load: `Tree::apply_batch` and transactions take
//! a process-wide lock that every sled database in the process then goes through (with sled's
//! log flusher this deadlocked), and `flush_async` runs on sled's small IO pool, which many
//! concurrent callers can fill with flushes that wait for writes needing that same pool. So
//! nothing uses those; a durable write is an insert followed by [`flush_durably`], a blocking
//! `flush()` on tokio's blocking pool. The tidy test keeps it that way.
//!
//! sled's `flush` ends with `sync_file_range`, which survives a killed process but not a power
//! cut (see `audit_log::durable`). So a state store registers its directory once it is open
//! ([`register_durable`]) and every [`flush_durably`] then also `fdatasync`s the registered
//! stores' data files before it returns. A `sled::Tree` does not know its directory, so the
//! flush syncs every store registered in the process: one in `onboard serve`, a few in a test
//! binary (an extra `fdatasync` is only time). A store that was never registered (a test's own
//! sled) gets sled's flush alone.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use audit_log::durable::DataFiles;

use crate::error::CoreError;

mod records;
pub use records::RecordTree;

/// The data files of every registered state store that is still open.
static REGISTERED: Mutex<Vec<Weak<Mutex<DataFiles>>>> = Mutex::new(Vec::new());

/// Keeps a state store's data files registered for [`flush_durably`]; dropping it (with the
/// store) unregisters them.
#[derive(Debug, Clone)]
pub struct DurableStore {
    /// The open data files; the registry holds only a weak reference.
    _files: Arc<Mutex<DataFiles>>,
}

/// Registers the sled directory `dir` (opened already, so its `db` file exists): makes what is
/// there durable now, and has every later [`flush_durably`] `fdatasync` it.
pub fn register_durable(dir: &Path) -> Result<DurableStore, CoreError> {
    let files = DataFiles::open(dir)
        .map_err(|e| CoreError::Store(format!("syncing {}: {e}", dir.display())))?;
    let files = Arc::new(Mutex::new(files));
    let mut all = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(&files));
    Ok(DurableStore { _files: files })
}

/// Flushes the database `tree` belongs to (sled flushes the whole database, every tree) and
/// returns once everything written before the call is on disk, data files `fdatasync`ed.
pub async fn flush_durably(tree: &sled::Tree) -> Result<(), CoreError> {
    let tree = tree.clone();
    match tokio::task::spawn_blocking(move || flush_durably_blocking(&tree)).await {
        Ok(r) => r,
        Err(e) => Err(CoreError::Store(format!("flush task failed: {e}"))),
    }
}

/// Group commit over [`flush_durably`]: callers that ask for a flush while one is running wait
/// for the next one, which then covers all of them. Without it every concurrent writer runs its
/// own sled `flush()`, and each one seals sled's current 512 KiB IO buffer however little it
/// holds: with 500 onboardings writing at once, a heap profile found 105 of the server's
/// 170 MiB peak in such buffers waiting to be written (BENCHMARKS.md, issue 9). One per store
/// handle (sled flushes its whole database, so separate handles on one database stay correct,
/// they only group among themselves).
#[derive(Debug, Default)]
pub struct GroupFlush {
    /// Tickets handed out: a caller takes one after its write, so a flush that starts after
    /// ticket `t` was taken covers the write behind `t`.
    requested: AtomicU64,
    /// Every ticket up to this one is durable (the highest ticket taken before the last
    /// successful flush started).
    completed: AtomicU64,
    /// One flush at a time; waiters queue here (tokio's mutex is FIFO).
    running: tokio::sync::Mutex<()>,
    /// Flushes actually run (the test's evidence that callers share them).
    flushes: AtomicU64,
}

impl GroupFlush {
    /// Returns once everything written to `tree`'s database before the call is durable, as
    /// [`flush_durably`] does, sharing the flush with concurrent callers.
    pub async fn flush(&self, tree: &sled::Tree) -> Result<(), CoreError> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _one = self.running.lock().await;
        if self.completed.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Everyone holding a ticket up to here wrote before this flush starts.
        let covers = self.requested.load(Ordering::SeqCst);
        flush_durably(tree).await?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.completed.fetch_max(covers, Ordering::SeqCst);
        Ok(())
    }

    /// How many flushes ran (fewer than callers when they overlapped).
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

/// [`flush_durably`] on the calling thread (start-up, blocking contexts).
pub fn flush_durably_blocking(tree: &sled::Tree) -> Result<(), CoreError> {
    tree.flush()?;
    let live: Vec<Arc<Mutex<DataFiles>>> = REGISTERED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for files in live {
        // A panic while syncing cannot leave the handles half-updated in a harmful way: the
        // next sync re-reads the directory.
        files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sync()
            .map_err(|e| CoreError::Store(format!("fdatasync of the state store: {e}")))?;
    }
    Ok(())
}

/// The first byte of a record that carries a MAC (a JSON record starts with `{`, an id with a
/// letter or digit; neither with this byte).
const MAC_MAGIC: u8 = 0x01;
/// HMAC-SHA-256 tag length.
const TAG_LEN: usize = 32;
/// The label the record MAC key is derived under.
const MAC_LABEL: &[u8] = b"onboard state-store record MAC v1";

/// MACs of state-store records: `0x01 || HMAC-SHA-256(key, tree || 0 || record key || 0 ||
/// value) || value`, so a corrupted or altered record, or one moved to another key or tree, is
/// detected when read and never used. Records written before MACs (release 0.1) have none; they
/// are readable only until the data directory's one-time migration
/// ([`seal_legacy_records`], audited by the server) has given them one.
#[derive(Clone)]
pub struct RecordMac {
    /// The derived key, wiped on drop.
    key: Arc<zeroize::Zeroizing<[u8; 32]>>,
    /// Whether records without a MAC are still accepted (before the migration).
    legacy: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordMac(..)")
    }
}

type HmacSha256 = ::hmac::Hmac<::sha2::Sha256>;

fn new_hmac(key: &[u8]) -> HmacSha256 {
    use ::hmac::KeyInit;
    // HMAC takes keys of any length; the error case cannot happen.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"))
}

impl RecordMac {
    /// The MAC key derived from a sealing key (see `SealingKey::record_mac`).
    pub(crate) fn derive(sealing_key: &[u8; 32]) -> Self {
        use ::hmac::Mac;
        let mut m = new_hmac(sealing_key);
        m.update(MAC_LABEL);
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&m.finalize().into_bytes());
        Self {
            key: Arc::new(key),
            legacy: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Accept records without a MAC (a data directory not migrated yet), or stop accepting them.
    pub fn allow_legacy(&self, allow: bool) {
        self.legacy
            .store(allow, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether records without a MAC are accepted.
    pub fn legacy_allowed(&self) -> bool {
        self.legacy.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The HMAC over `tree || 0 || key || 0 || value`, not finalised yet: [`Self::seal`] takes
    /// its tag, [`Self::open`] checks one against it (in constant time).
    fn hmac(&self, tree: &str, key: &[u8], value: &[u8]) -> HmacSha256 {
        use ::hmac::Mac;
        let mut m = new_hmac(self.key.as_ref().as_ref());
        m.update(tree.as_bytes());
        m.update(&[0]);
        m.update(key);
        m.update(&[0]);
        m.update(value);
        m
    }

    /// The stored form of `value` under `key` in `tree`.
    pub fn seal(&self, tree: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + TAG_LEN + value.len());
        out.push(MAC_MAGIC);
        out.extend_from_slice(&::hmac::Mac::finalize(self.hmac(tree, key, value)).into_bytes());
        out.extend_from_slice(value);
        out
    }

    /// The value of a stored record, checked; an error names the record and the recovery.
    pub fn open<'a>(
        &self,
        tree: &str,
        key: &[u8],
        stored: &'a [u8],
    ) -> Result<&'a [u8], CoreError> {
        let name = || format!("{tree}/{}", String::from_utf8_lossy(key));
        if stored.first() != Some(&MAC_MAGIC) {
            if self.legacy_allowed() {
                return Ok(stored);
            }
            return Err(CoreError::Store(format!(
                "state record {} has no MAC (written outside Onboard, or corrupted): refused; restore the state directory from a backup",
                name()
            )));
        }
        if stored.len() < 1 + TAG_LEN {
            return Err(CoreError::Store(format!(
                "state record {} is truncated: refused; restore the state directory from a backup",
                name()
            )));
        }
        let (tag, value) = stored[1..].split_at(TAG_LEN);
        use ::hmac::Mac;
        self.hmac(tree, key, value).verify_slice(tag).map_err(|_| {
            CoreError::Store(format!(
                "state record {} fails its MAC (corrupted or altered): refused; restore the state directory from a backup",
                name()
            ))
        })?;
        Ok(value)
    }
}

/// Whether a stored value carries a MAC.
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.first() == Some(&MAC_MAGIC)
}

/// Gives every record of `tree` (named `name`) without a MAC one, in place (compare-and-swap
/// per record, then one durable flush); returns how many it sealed.
pub fn seal_legacy_records(
    tree: &sled::Tree,
    name: &str,
    mac: &RecordMac,
) -> Result<usize, CoreError> {
    let mut sealed = 0;
    for kv in tree.iter() {
        let (k, v) = kv?;
        if is_sealed(&v) {
            continue;
        }
        let new = mac.seal(name, &k, &v);
        if tree.compare_and_swap(&k, Some(&v), Some(new))?.is_ok() {
            sealed += 1;
        }
    }
    flush_durably_blocking(tree)?;
    Ok(sealed)
}

/// How many records of `tree` have no MAC.
pub fn legacy_records(tree: &sled::Tree) -> Result<usize, CoreError> {
    let mut n = 0;
    for kv in tree.iter() {
        let (_, v) = kv?;
        if !is_sealed(&v) {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes_and_a_later_one_gets_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        let group = Arc::new(GroupFlush::default());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64u32 {
            let (tree, group) = (tree.clone(), group.clone());
            tasks.spawn(async move {
                tree.insert(i.to_be_bytes(), b"v".as_slice()).unwrap();
                group.flush(&tree).await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        let shared = group.flushes();
        assert!(
            (1..64).contains(&shared),
            "64 overlapping callers ran {shared} flushes"
        );
        // Nothing is in flight now: a new write must get a flush of its own.
        tree.insert(b"last", b"v".as_slice()).unwrap();
        group.flush(&tree).await.unwrap();
        assert_eq!(group.flushes(), shared + 1);
    }
}
