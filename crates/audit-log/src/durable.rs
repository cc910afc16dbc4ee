//! Durable on power loss: what sled 0.34's `flush` leaves out.
//!
//! On Linux, sled 0.34 writes its log to `<dir>/db` with `pwrite` and "flushes" it with
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` (`pagecache/iobuf.rs`), which (man 2
//! sync_file_range) writes the pages but commits no metadata (a grown file's size, the extents of
//! newly allocated blocks) and does not flush the device's write cache: what `Db::flush`
//! reports as written survives a killed process, not a power cut or a kernel crash. sled's only
//! `fsync` of `db` is its background flusher's, every 500 ms.
//!
//! sled keeps its data in these files of its directory (`config.rs`, `pagecache/*.rs`):
//! - `db`: the log, all segments. Needs `fdatasync` after every flush whose result is relied
//!   on; fsync through any descriptor of the file flushes it and the device cache.
//! - `blobs/<lsn>`: a log record larger than a quarter segment (128 KiB by default: a node of
//!   16+ large values) is written to its own file with plain `write`s, never fsynced, and the
//!   log only points to it. Each new (or grown) blob file and the `blobs` directory are fsynced
//!   before `db` is, so a durable pointer never names a blob that is not. This costs one `stat`
//!   per blob per sync; a store with small values has no blobs.
//! - `snap.<lsn>`: snapshots, fsynced by sled but renamed into place without syncing the
//!   directory; `conf`: written once at creation without any sync. The directory and `conf` are
//!   fsynced when [`DataFiles`] opens, and the directory again whenever its entries change.
//!
//! Left to sled: a blob that sled's background cleaner writes *while* a sync runs is synced by
//! the next one; its pointer could reach the disk first if power fails in between. Blobs only
//! appear with values of several KiB, which no Onboard store writes today.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::AuditError;

/// The log file's name inside a sled 0.34 directory.
const DB_FILE: &str = "db";
/// The directory of large records inside a sled 0.34 directory.
const BLOBS_DIR: &str = "blobs";
/// sled 0.34's configuration file.
const CONF_FILE: &str = "conf";

/// Open handles on a sled directory's data files, to make a `flush` durable with one
/// `fdatasync` (plus a directory sync when files were created, renamed or removed).
#[derive(Debug)]
pub struct DataFiles {
    /// The sled directory.
    dir: PathBuf,
    /// `<dir>/db`, kept open so each sync is one `fdatasync` (no open/close per batch).
    db: File,
    /// Names in the directory at the last sync; a different set means the directory changed
    /// (a snapshot renamed into place, a file created) and is fsynced again.
    dir_names: BTreeSet<OsString>,
    /// Blob files and their lengths at the last sync, each fsynced at that length (sled writes
    /// a blob once and never rewrites it; a length that changed was caught mid-write).
    blobs: BTreeMap<OsString, u64>,
}

impl DataFiles {
    /// Opens `<dir>/db` (sled must have created it: open the database first) and makes what is
    /// there durable: `conf`, every blob, the directories and `db`.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        let db_path = dir.join(DB_FILE);
        let db = File::open(&db_path)
            .map_err(|e| AuditError::io(format!("opening {}", db_path.display()), e))?;
        let mut files = Self {
            dir: dir.to_path_buf(),
            db,
            dir_names: BTreeSet::new(),
            blobs: BTreeMap::new(),
        };
        let conf = dir.join(CONF_FILE);
        if conf.exists() {
            fsync_path(&conf)?;
        }
        files.sync()?;
        Ok(files)
    }

    /// Makes everything sled has written so far durable. Call it after `Db::flush` returned and
    /// before acknowledging what that flush covered. An error means the data may not be on
    /// disk; do not retry the sync and report success (a failed fsync may have dropped the
    /// dirty pages it could not write): treat the store as failed.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        let blobs_dir = self.dir.join(BLOBS_DIR);
        let blobs = blob_lengths(&blobs_dir)?;
        if blobs != self.blobs {
            for (name, len) in &blobs {
                if self.blobs.get(name) != Some(len) {
                    fsync_path(&blobs_dir.join(name))?;
                }
            }
            fsync_path(&blobs_dir)?;
            self.blobs = blobs;
        }
        let now = names(&self.dir)?;
        if now != self.dir_names {
            fsync_path(&self.dir)?;
            self.dir_names = now;
        }
        self.db.sync_data().map_err(|e| {
            AuditError::io(
                format!("fdatasync of {}", self.dir.join(DB_FILE).display()),
                e,
            )
        })
    }
}

/// One-shot [`DataFiles::open`], which syncs: for a sled store flushed now and then (the state
/// stores), call it after `Db::flush` and before reporting the change as durable. A store that
/// flushes often should keep a [`DataFiles`] and call [`DataFiles::sync`] instead (one
/// `fdatasync`, no open).
pub fn sync_data_files(dir: &Path) -> Result<(), AuditError> {
    DataFiles::open(dir).map(drop)
}

/// The names in `dir`; none if it does not exist (sled creates `blobs/` when it opens).
fn names(dir: &Path) -> Result<BTreeSet<OsString>, AuditError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| AuditError::io(format!("listing {}", dir.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(AuditError::io(format!("listing {}", dir.display()), e)),
    }
}

/// The files in `blobs/` and their lengths; a file sled removes meanwhile is left out.
fn blob_lengths(dir: &Path) -> Result<BTreeMap<OsString, u64>, AuditError> {
    let mut out = BTreeMap::new();
    for name in names(dir)? {
        match std::fs::metadata(dir.join(&name)) {
            Ok(m) => {
                out.insert(name, m.len());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(AuditError::io(
                    format!("reading {}", dir.join(&name).display()),
                    e,
                ));
            }
        }
    }
    Ok(out)
}

/// `fsync` of a file or directory by path (a read-only descriptor is enough on Linux). A file
/// that is gone (sled removed a blob it no longer needs) needs no sync.
fn fsync_path(path: &Path) -> Result<(), AuditError> {
    match File::open(path) {
        Ok(f) => f
            .sync_all()
            .map_err(|e| AuditError::io(format!("fsync of {}", path.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AuditError::io(format!("opening {}", path.display()), e)),
    }
}
