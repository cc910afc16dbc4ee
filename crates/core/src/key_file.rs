//! Key files of 32-byte keys (`[storage] sealing_key`, `[invitations] token_key`, and what
//! `onboard keys export` writes): the one rule for reading one, and the one way to write a
//! new key file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use zeroize::Zeroizing;

/// The key a key file's `bytes` hold: 64 hex digits (white space around them ignored), or
/// exactly 32 raw bytes; `None` for anything else.
pub fn parse(bytes: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
    if hex::decode_to_slice(text, key.as_mut()).is_ok() {
        return Some(key);
    }
    key.copy_from_slice(<&[u8; 32]>::try_from(bytes).ok()?);
    Some(key)
}

/// Why the file at `path` is unfit to hold a private key, with its mode: readable or writable
/// by others, or writable by its group; `None` when it is fit (the owner's, perhaps readable by
/// its group).
pub fn mode_problem(path: &Path) -> std::io::Result<Option<(&'static str, u32)>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    Ok(problem_of_mode(mode).map(|p| (p, mode)))
}

/// [`mode_problem`] of a file whose permission bits are `mode`.
pub fn problem_of_mode(mode: u32) -> Option<&'static str> {
    if mode & 0o007 != 0 {
        Some("is readable or writable by others")
    } else if mode & 0o020 != 0 {
        Some("is writable by its group")
    } else {
        None
    }
}

/// Why `what` (a key file's role, as messages name it) at `path` is refused, with the fix:
/// `None` when its mode is fit ([`mode_problem`]).
pub fn refusal(path: &Path, what: &str) -> std::io::Result<Option<String>> {
    Ok(mode_problem(path)?.map(|(problem, mode)| {
        format!(
            "{what} {} {problem} (mode {mode:04o}); fix: chmod 600 {}",
            path.display(),
            path.display()
        )
    }))
}

/// Writes `data` to a new file at `path` that only its owner may read (mode 0600; an existing
/// file is never overwritten), synced with its directory entry. A file left half-written is
/// removed.
pub fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    if let Err(e) = f.write_all(data).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    sync_dir_of(path)
}

/// Syncs the directory entry of `path` (its parent directory).
pub fn sync_dir_of(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn hex_or_raw_32_bytes_and_nothing_else() {
        let hex = "0f".repeat(32);
        assert_eq!(parse(hex.as_bytes()).as_deref(), Some(&[0x0f; 32]));
        assert_eq!(
            parse(format!(" {hex}\n").as_bytes()).as_deref(),
            Some(&[0x0f; 32])
        );
        assert_eq!(parse(&[7u8; 32]).as_deref(), Some(&[7; 32]));
        assert!(parse(&[7u8; 31]).is_none());
        assert!(parse(&[7u8; 33]).is_none());
        assert!(parse("0f".repeat(31).as_bytes()).is_none());
    }
}
