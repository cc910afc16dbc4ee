//! A copy of a recent signed checkpoint kept beside sled, outside it.
//!
//! sled recovers a *prefix* of its log when its files are damaged, or an empty database when the
//! damage is at the start, and reports success. Without an outside witness the log would then
//! look shorter (or brand new) and would sign a second history. The head file is that witness: at
//! open, sled must still hold at least the entries it records, with the same root. It is written
//! at open, when the writer goes idle, at most once a second under load, and at close, so it is
//! a lower bound of what was acknowledged (damage to the last second of appends under sustained
//! load is caught by the checkpoint history inside sled, not by this file).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// The head file's name inside the data directory.
pub(crate) const NAME: &str = "audit-head.note";

/// Atomically replaces the head file with `note` (write, fsync, rename, fsync the directory).
pub(crate) fn write(dir: &Path, note: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{NAME}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(note.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(NAME))?;
    File::open(dir)?.sync_all()
}

/// The head file's contents, if there is one.
pub(crate) fn read(dir: &Path) -> std::io::Result<Option<String>> {
    match fs::read_to_string(dir.join(NAME)) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
