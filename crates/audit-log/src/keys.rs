//! sled key layout. Everything lives in one sled tree; big-endian integers keep iteration in
//! sequence order.
//!
//! Tree nodes are stored inside the entry values: appending leaf `seq` completes exactly the
//! nodes `(l, seq >> l)` for `l` in `0..=trailing_ones(seq)`, so the value of `e || seq` is
//! `[count: u8][count × 32-byte hashes, level 0 first][entry bytes]`. One sled insert per entry
//! (as cheap as storing the entry alone), and node `(l, i)` is found in entry `((i + 1) << l) - 1`.

/// Prefix of `e || seq` → node hashes completed by this leaf, then the entry bytes.
pub(crate) const ENTRY: u8 = b'e';
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

/// The entry whose value holds complete node `(level, index)`: the subtree's last leaf.
pub(crate) fn node_home(level: u8, index: u64) -> Option<u64> {
    if level >= 64 {
        return None;
    }
    let width = 1u64 << level;
    index.checked_mul(width)?.checked_add(width - 1)
}

/// Splits a stored entry value into (node hashes, entry bytes); `None` if it is malformed.
pub(crate) fn split_entry_value(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let count = usize::from(*v.first()?);
    let end = 1 + count * 32;
    if v.len() < end {
        return None;
    }
    Some((&v[1..end], &v[end..]))
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
