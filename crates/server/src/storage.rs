//! The data directory and key files on disk: who may read them, and the state store's durable
//! registration.
//!
//! - The process's umask is set to `077` before anything is created, so every directory sled or
//!   the audit log makes is `0700` and every file `0600`, whatever umask the service was started
//!   with; directories and files already there are tightened once at start-up.
//! - A key file (audit signing key, sealing key, invitation token key, TLS key) that others may
//!   read or write, or its group may write, is refused with the fix (`chmod 600 PATH`) in the
//!   message; `onboard config check` reports the same rule (and warns about group-readable keys,
//!   which are fine when the service user alone is in the group).
//! - The state store registers its directory with `onboard_core::store`, so every durable flush
//!   also `fdatasync`s its data files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use onboard_core::store::{DurableStore, register_durable};

use crate::error::{Result, ServerError};

/// Data directories: the service user only.
const DIR_MODE: u32 = 0o700;
/// Data files: the service user only.
const FILE_MODE: u32 = 0o600;

/// Sets the umask to `077` and creates `data` (mode `0700`), tightening what is there already.
pub(crate) fn prepare_data_dir(data: &Path) -> Result<()> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    std::fs::create_dir_all(data)
        .map_err(|e| ServerError::io(format!("creating {}", data.display()), e))?;
    tighten(data)
}

/// Makes every directory under `dir` (and `dir`) `0700` and every file `0600`.
pub(crate) fn tighten(dir: &Path) -> Result<()> {
    set_mode(dir, DIR_MODE)?;
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ServerError::io(format!("listing {}", dir.display()), e))?;
    for e in entries {
        let e = e.map_err(|e| ServerError::io(format!("listing {}", dir.display()), e))?;
        let kind = e
            .file_type()
            .map_err(|err| ServerError::io(format!("reading {}", e.path().display()), err))?;
        if kind.is_dir() {
            tighten(&e.path())?;
        } else if kind.is_file() {
            set_mode(&e.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?;
    if meta.permissions().mode() & 0o7777 == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ServerError::io(format!("chmod {mode:o} {}", path.display()), e))
}

/// Refuses a key file that others may read or write, or its group may write.
pub(crate) fn check_key_file(path: &Path, what: &str) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ServerError::io(format!("reading {what} {}", path.display()), e))?;
    let mode = meta.permissions().mode() & 0o7777;
    let problem = if mode & 0o007 != 0 {
        "is readable or writable by others"
    } else if mode & 0o020 != 0 {
        "is writable by its group"
    } else {
        return Ok(());
    };
    Err(ServerError::Config(format!(
        "{what} {} {problem} (mode {mode:04o}); fix: chmod 600 {}",
        path.display(),
        path.display()
    )))
}

/// The state store's page cache. sled's default is 1 GiB, which a busy server grows into
/// (every record and event written stays cached up to it): past a container's memory limit.
/// The state store is small and read by key; the audit log has its own cache (64 MiB).
pub(crate) const STATE_CACHE_BYTES: u64 = 16 << 20;

/// Opens (or creates) the state store at `dir` with [`STATE_CACHE_BYTES`] of cache.
pub(crate) fn open_state(dir: &Path) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(STATE_CACHE_BYTES)
        .open()
}

/// Registers the opened state store at `dir` for durable flushes (see the module doc).
pub(crate) fn register_state(dir: &Path) -> Result<DurableStore> {
    register_durable(dir).map_err(|e| ServerError::Internal(e.to_string()))
}

/// Checks every key file the configuration names (see [`check_key_file`]).
pub(crate) fn check_keys(config: &crate::Config) -> Result<()> {
    check_key_file(&config.audit.signing_key, "audit.signing_key")?;
    if let Some(k) = &config.storage.sealing_key {
        check_key_file(k, "storage.sealing_key")?;
    }
    if let Some(k) = &config.invitations.token_key {
        check_key_file(k, "invitations.token_key")?;
    }
    if let Some(k) = &config.tls.key {
        check_key_file(k, "tls.key")?;
    }
    Ok(())
}
