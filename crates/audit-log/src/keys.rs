//! sled key layout. Everything lives in one sled tree so that one `apply_batch` writes entries,
//! nodes and a checkpoint atomically; big-endian integers keep iteration in sequence order.

/// Prefix of `e || seq` → entry bytes.
pub(crate) const ENTRY: u8 = b'e';
/// Prefix of `n || level || index` → 32-byte complete-node hash.
pub(crate) const NODE: u8 = b'n';
/// Prefix of `c || size` → signed checkpoint note.
pub(crate) const CHECKPOINT: u8 = b'c';
/// Key of the log's origin.
pub(crate) const META_ORIGIN: &[u8] = b"m/origin";
/// Key of the newline-separated verifier keys, oldest first.
pub(crate) const META_VERIFIERS: &[u8] = b"m/verifiers";

pub(crate) fn entry(seq: u64) -> [u8; 9] {
    let mut k = [ENTRY; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn node(level: u8, index: u64) -> [u8; 10] {
    let mut k = [NODE; 10];
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn checkpoint(size: u64) -> [u8; 9] {
    let mut k = [CHECKPOINT; 9];
    k[1..].copy_from_slice(&size.to_be_bytes());
    k
}

/// The big-endian integer after a one-byte prefix.
pub(crate) fn seq_of(key: &[u8]) -> Option<u64> {
    key.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}
