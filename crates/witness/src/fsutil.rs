//! Durable file replacement: write a temporary file, fsync it, rename it over the target, fsync
//! the directory. A crash leaves either the old or the new contents, never a mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::WitnessError;

/// Atomically and durably replaces `path` with `data`.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), WitnessError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| WitnessError::Config(format!("{} is not a file path", path.display())))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let mut f = File::create(&tmp).map_err(|e| WitnessError::io(ctx("creating"), e))?;
    f.write_all(data)
        .map_err(|e| WitnessError::io(ctx("writing"), e))?;
    f.sync_all()
        .map_err(|e| WitnessError::io(ctx("syncing"), e))?;
    drop(f);
    fs::rename(&tmp, path)
        .map_err(|e| WitnessError::io(format!("renaming into {}", path.display()), e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WitnessError::io(format!("syncing directory {}", dir.display()), e))
}

/// The file's contents, or `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, WitnessError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WitnessError::io(format!("reading {}", path.display()), e)),
    }
}
