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

use std::fs::File;
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
    let refusal = onboard_core::key_file::refusal(path, what)
        .map_err(|e| ServerError::io(format!("reading {what} {}", path.display()), e))?;
    refusal.map_or(Ok(()), |r| Err(ServerError::Config(r)))
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
    if let Some(k) = config.audit_http.as_ref().and_then(|a| a.tls_key.as_ref()) {
        check_key_file(k, "audit_http.tls_key")?;
    }
    Ok(())
}

/// Takes the lock sled takes on a store's `db` file (its `flock`) and returns the file that
/// holds it, so no server opens the store until it is dropped; FAILED_PRECONDITION when
/// another process holds the store (saying to stop the server, then `instead`, what else the
/// caller may do). `None` when there is no store.
pub(crate) fn hold_if_free(store: &Path, instead: &str) -> Result<Option<File>> {
    let db = store.join("db");
    let file = match File::open(&db) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ServerError::io(format!("opening {}", db.display()), e)),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(ServerError::FailedPrecondition(format!(
            "{} is in use (a running server holds its lock); stop the server first{instead}",
            store.display()
        ))),
        Err(e) => Err(ServerError::io(
            format!("locking {}", db.display()),
            e.into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock is held while the guard lives (a second taker, as a starting server, is
    /// refused), and let go with it.
    #[test]
    fn a_store_stays_locked_while_its_guard_lives() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = dir.path().join("state");
        assert!(
            hold_if_free(&store, "")?.is_none(),
            "no store, nothing to hold"
        );
        std::fs::create_dir(&store)?;
        std::fs::write(store.join("db"), b"")?;
        let held = hold_if_free(&store, "")?;
        assert!(held.is_some());
        let again = hold_if_free(&store, "").err().map(|e| e.to_string());
        assert!(
            again.as_deref().is_some_and(|m| m.contains("in use")),
            "{again:?}"
        );
        drop(held);
        assert!(hold_if_free(&store, "")?.is_some());
        Ok(())
    }
}
