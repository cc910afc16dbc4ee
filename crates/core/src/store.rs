//! The one durable flush of the state store (sled).
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
use std::sync::{Arc, Mutex, Weak};

use audit_log::durable::DataFiles;

use crate::error::CoreError;

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

    fn tag(&self, tree: &str, key: &[u8], value: &[u8]) -> [u8; TAG_LEN] {
        use ::hmac::Mac;
        let mut m = new_hmac(self.key.as_ref().as_ref());
        m.update(tree.as_bytes());
        m.update(&[0]);
        m.update(key);
        m.update(&[0]);
        m.update(value);
        m.finalize().into_bytes().into()
    }

    /// The stored form of `value` under `key` in `tree`.
    pub fn seal(&self, tree: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + TAG_LEN + value.len());
        out.push(MAC_MAGIC);
        out.extend_from_slice(&self.tag(tree, key, value));
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
        let mut m = new_hmac(self.key.as_ref().as_ref());
        m.update(tree.as_bytes());
        m.update(&[0]);
        m.update(key);
        m.update(&[0]);
        m.update(value);
        m.verify_slice(tag).map_err(|_| {
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
