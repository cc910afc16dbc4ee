//! Full entry bundles kept as files beside sled, so that serving one costs one file read.
//!
//! A full bundle (256 entries) never changes once its entries are signed, but assembling it from
//! sled reads 256 values through sled's page cache; when the log is larger than that cache (a
//! million entries are ~450 MB, the cache 64 MB) every bundle deserialises pages from disk. The
//! tiles API, publication and export read bundles far more often than they are written, so the
//! log keeps each full bundle it has assembled as one file under `bundles/` in its data
//! directory, named like the tile (`bundles/x001/234` for bundle 1234).
//!
//! The files are a cache: sled stays the only record. Deleting `bundles/` is always safe (it
//! fills again), backups need not copy it, and a file that does not check out is never served:
//!
//! ```text
//! file = bundle bytes ‖ level-8 node (32 bytes) ‖ CRC-32 of (n as u64 BE ‖ bundle ‖ node) (4, BE)
//! ```
//!
//! The level-8 node is the root of the bundle's 256 leaves. A file is served only when its
//! CRC checks (not damaged, not another bundle's file) and its node equals the log's own node
//! (8, n), which the log keeps in memory: a file left from another history (a data directory
//! restored or rolled back under it) has another node and is rebuilt from sled.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::AuditError;
use crate::hash::Hash;
use crate::log::AuditLog;
use crate::merkle::NodeSource;
use crate::tiles::{TILE_WIDTH, index_path};

/// The directory of bundle files inside the log's data directory.
pub(crate) const DIR: &str = "bundles";

/// Where files are written before they are renamed into place, inside [`DIR`]. A crash can
/// leave files here; a writable open empties it (only one process writes a data directory:
/// sled holds its lock).
const TMP_DIR: &str = ".tmp";

/// Bytes after the bundle: the level-8 node and the CRC.
const TRAILER: usize = 32 + 4;

/// Makes temporary names unique (two threads may write one bundle at once; one process writes).
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The bundle files of one log.
#[derive(Debug)]
pub(crate) struct BundleFiles {
    /// `<data dir>/bundles`.
    dir: PathBuf,
    /// False for a log opened read-only: files are read, never written or removed.
    writable: bool,
    /// Every full bundle below this index is known to have its file (what
    /// [`crate::AuditLog::materialize_bundles`] has checked or written), so the next pass
    /// starts here.
    pub(crate) present_below: AtomicU64,
}

fn crc(n: u64, bundle: &[u8], node: &Hash) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&n.to_be_bytes());
    h.update(bundle);
    h.update(node);
    h.finalize()
}

impl BundleFiles {
    /// The bundle files of the log in `data_dir`. A writable log first removes what an
    /// interrupted write left behind.
    pub(crate) fn new(data_dir: &Path, writable: bool) -> Self {
        let dir = data_dir.join(DIR);
        if writable {
            match std::fs::remove_dir_all(dir.join(TMP_DIR)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(error = %e, dir = %dir.display(), "removing unfinished audit bundle files failed");
                }
                _ => {}
            }
        }
        Self {
            dir,
            writable,
            present_below: AtomicU64::new(0),
        }
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(index_path(n))
    }

    /// Whether bundle `n` has a file (not checked).
    pub(crate) fn exists(&self, n: u64) -> bool {
        self.path(n).is_file()
    }

    /// Whether files may be written.
    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// Bundle `n`'s bytes from its file, if there is one whose CRC checks and whose node is
    /// `node`. A file that does not check out is removed (when writable) and `None` returned,
    /// so the caller rebuilds it from sled.
    pub(crate) fn read(&self, n: u64, node: &Hash) -> Option<Vec<u8>> {
        let path = self.path(n);
        let mut data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(error = %e, file = %path.display(), "reading an audit bundle file failed; reading sled instead");
                return None;
            }
        };
        let checks = data.len() >= TRAILER && {
            let (bundle, trailer) = data.split_at(data.len() - TRAILER);
            let stored_crc =
                u32::from_be_bytes([trailer[32], trailer[33], trailer[34], trailer[35]]);
            trailer[..32] == node[..] && crc(n, bundle, node) == stored_crc
        };
        if !checks {
            tracing::warn!(file = %path.display(), bundle = n, "an audit bundle file does not match the log; rebuilding it from sled");
            if self.writable {
                let _ = std::fs::remove_file(&path);
            }
            return None;
        }
        data.truncate(data.len() - TRAILER);
        Some(data)
    }

    /// Writes bundle `n`'s file: a temporary file renamed into place, so a reader sees the whole
    /// file or none. Not synced: a file lost or torn by a crash fails its check and is rebuilt.
    pub(crate) fn write(&self, n: u64, bundle: &[u8], node: &Hash) -> std::io::Result<()> {
        if !self.writable {
            return Ok(());
        }
        let path = self.path(n);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut data = Vec::with_capacity(bundle.len() + TRAILER);
        data.extend_from_slice(bundle);
        data.extend_from_slice(node);
        data.extend_from_slice(&crc(n, bundle, node).to_be_bytes());
        let tmp_dir = self.dir.join(TMP_DIR);
        std::fs::create_dir_all(&tmp_dir)?;
        let tmp = tmp_dir.join(TMP_SEQ.fetch_add(1, Ordering::Relaxed).to_string());
        std::fs::write(&tmp, &data)?;
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

impl AuditLog {
    /// The entries `[from, to)` of bundle `n` in tlog-tiles bundle form: a full bundle from its
    /// file when the file checks, else from sled (then writing its file).
    pub(crate) fn bundle_bytes(&self, n: u64, from: u64, to: u64) -> Result<Vec<u8>, AuditError> {
        let Some((files, node)) = self.bundle_file_of(n, to - from)? else {
            return self.bundle_from_sled(from, to);
        };
        if let Some(b) = files.read(n, &node) {
            return Ok(b);
        }
        let bundle = self.bundle_from_sled(from, to)?;
        if let Err(e) = files.write(n, &bundle, &node) {
            tracing::warn!(error = %e, bundle = n, "writing an audit bundle file failed; serving from sled");
        }
        Ok(bundle)
    }

    /// Bundle files and node (8, `n`), when bundle `n` is full (`width` 256) and files are on.
    fn bundle_file_of(
        &self,
        n: u64,
        width: u64,
    ) -> Result<Option<(&BundleFiles, Hash)>, AuditError> {
        match &self.shared().bundles {
            Some(files) if width == TILE_WIDTH => {
                let node = self.with_view(|v| v.node(8, n))?;
                Ok(Some((files, node)))
            }
            _ => Ok(None),
        }
    }

    fn bundle_from_sled(&self, from: u64, to: u64) -> Result<Vec<u8>, AuditError> {
        let mut bundle = Vec::with_capacity((to - from) as usize * 512);
        let n = self.store().bundle_into(from, to, &mut bundle)?;
        if n != to - from {
            return Err(AuditError::Integrity {
                location: format!("entry {}", from + n),
                detail: "missing from storage".into(),
            });
        }
        Ok(bundle)
    }

    /// Writes the files of up to `at_most` full bundles of the latest checkpoint that have none
    /// yet, oldest first (a server calls this after each checkpoint, so files are written while
    /// their entries are still in sled's cache, and on start, to fill in an older data
    /// directory). Returns whether more remain. Does nothing for a read-only log or with
    /// [`crate::LogConfig::bundle_files`] off.
    pub fn materialize_bundles(&self, at_most: u64) -> Result<bool, AuditError> {
        let Some(files) = self.shared().bundles.as_ref().filter(|f| f.writable()) else {
            return Ok(false);
        };
        let full = self.size() / TILE_WIDTH;
        let mut n = files.present_below.load(Ordering::Relaxed);
        let end = full.min(n.saturating_add(at_most));
        while n < end {
            if !files.exists(n) {
                let from = n * TILE_WIDTH;
                let bundle = self.bundle_from_sled(from, from + TILE_WIDTH)?;
                let node = self.with_view(|v| v.node(8, n))?;
                files
                    .write(n, &bundle, &node)
                    .map_err(|e| AuditError::io(format!("writing bundle file {n}"), e))?;
            }
            n += 1;
            files.present_below.fetch_max(n, Ordering::Relaxed);
        }
        Ok(n < full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_served_only_for_its_own_bundle_and_node() {
        let dir = tempfile::tempdir().unwrap();
        let files = BundleFiles::new(dir.path(), true);
        let node = [7u8; 32];
        let bundle = b"\x00\x02{}".repeat(3);
        assert_eq!(files.read(1234, &node), None);
        files.write(1234, &bundle, &node).unwrap();
        assert!(dir.path().join("bundles/x001/234").is_file());
        assert_eq!(files.read(1234, &node).as_deref(), Some(&bundle[..]));
        // Another history's node: not served, and removed.
        assert_eq!(files.read(1234, &[8u8; 32]), None);
        assert!(!files.exists(1234));
        // Damage anywhere fails the CRC.
        files.write(1234, &bundle, &node).unwrap();
        let path = dir.path().join("bundles/x001/234");
        let mut raw = std::fs::read(&path).unwrap();
        raw[1] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        assert_eq!(files.read(1234, &node), None);
        // Bundle 1234's file moved to bundle 1235's place: the CRC binds the index.
        files.write(1234, &bundle, &node).unwrap();
        std::fs::copy(&path, dir.path().join("bundles/x001/235")).unwrap();
        assert_eq!(files.read(1235, &node), None);
        // Too short to hold a trailer.
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(files.read(1234, &node), None);
    }

    #[test]
    fn a_read_only_log_never_writes_or_removes() {
        let dir = tempfile::tempdir().unwrap();
        let node = [1u8; 32];
        BundleFiles::new(dir.path(), true)
            .write(5, b"\x00\x00", &node)
            .unwrap();
        let ro = BundleFiles::new(dir.path(), false);
        ro.write(6, b"\x00\x00", &node).unwrap();
        assert!(!ro.exists(6));
        assert_eq!(ro.read(5, &[2u8; 32]), None);
        assert!(ro.exists(5), "a read-only log removed a file");
    }

    #[test]
    fn what_a_crash_left_mid_write_is_removed_by_the_next_writable_open() {
        let dir = tempfile::tempdir().unwrap();
        let node = [3u8; 32];
        let files = BundleFiles::new(dir.path(), true);
        files.write(9, b"\x00\x00", &node).unwrap();
        let tmp = dir.path().join("bundles/.tmp");
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "renamed into place"
        );
        // A write cut off between its write and its rename.
        std::fs::write(tmp.join("17"), b"torn").unwrap();
        BundleFiles::new(dir.path(), false);
        assert!(tmp.join("17").exists(), "a read-only log removed a file");
        let files = BundleFiles::new(dir.path(), true);
        assert!(!tmp.exists());
        assert_eq!(files.read(9, &node).as_deref(), Some(&b"\x00\x00"[..]));
    }
}
