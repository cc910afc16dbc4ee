//! Entry bundles: parsing the big-endian uint16 length-prefixed entries, hashing them, and the
//! checks on each entry's header (a JSON object whose `seq` is its index).

use serde::Deserialize;

use crate::error::AuditError;
use crate::hash::{Hash, leaf_hash};
use crate::tile_id::TileId;
use crate::tile_source::{TileReader, read_tile};
use crate::tiles::{TILE_WIDTH, tile_path};

#[derive(Deserialize)]
struct EntryHead<'a> {
    seq: Option<u64>,
    #[serde(borrow)]
    time: Option<&'a str>,
    #[serde(borrow)]
    action: Option<&'a str>,
}

/// One bundle's worth of work done on a worker thread.
#[derive(Default)]
pub(crate) struct Bundle {
    /// The level-0 hash tile with the same index, read ahead by the worker.
    pub(crate) tile0: Option<Result<Vec<u8>, AuditError>>,
    /// Leaf hash of each entry read.
    pub(crate) leaves: Vec<Hash>,
    /// Per entry: bytes parsed as JSON with the right `seq`.
    pub(crate) good: Vec<bool>,
    /// What was wrong, each naming where.
    pub(crate) problems: Vec<String>,
    /// Reads that failed for a reason other than what the log holds.
    pub(crate) unreadable: Vec<String>,
    /// Earliest and latest `time` seen.
    pub(crate) times: Option<(String, String)>,
    /// Entries per `action`.
    pub(crate) actions: std::collections::HashMap<String, u64>,
    /// The bundle held exactly the entries it should.
    pub(crate) well_formed: bool,
}

/// Reads bundle `n` (and, ahead of the tree rebuild, the level-0 hash tile beside it) through
/// `reader`, then parses and hashes its entries. A partial bundle or tile that the log has
/// deleted is read from its full one ([`read_tile`]).
pub(crate) fn read_bundle(reader: &dyn TileReader, n: u64, width: u64) -> Bundle {
    let rel = tile_path(None, n, width);
    // `width` is at most 256 (a bundle's entry count).
    let w = width as u16;
    let tile0 = Some(read_tile(reader, &TileId::hash(0, n, w)));
    let mut b = match read_tile(reader, &TileId::entries(n, w)) {
        Ok(data) => parse_bundle(&rel, &data, n, width),
        Err(e) => {
            let mut b = Bundle::default();
            super::file_read_error(&e, &mut b.problems, &mut b.unreadable);
            b
        }
    };
    b.tile0 = tile0;
    b
}

/// Reads the entries of bundle `n` (file `rel`), each a big-endian u16 length and the bytes.
pub(crate) fn parse_bundle(rel: &str, data: &[u8], n: u64, width: u64) -> Bundle {
    let mut b = Bundle::default();
    let mut pos = 0usize;
    let first = n * TILE_WIDTH;
    while pos < data.len() {
        let seq = first + b.leaves.len() as u64;
        let Some(len) = data
            .get(pos..pos + 2)
            .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
        else {
            b.problems.push(format!(
                "entry bundle {rel}: truncated length at byte {pos}"
            ));
            return b;
        };
        let Some(bytes) = data.get(pos + 2..pos + 2 + len) else {
            b.problems
                .push(format!("entry {seq}: bundle {rel} is truncated"));
            return b;
        };
        pos += 2 + len;
        b.leaves.push(leaf_hash(bytes));
        let good = check_entry(seq, bytes, &mut b);
        b.good.push(good);
    }
    if b.leaves.len() as u64 != width {
        b.problems.push(format!(
            "entry bundle {rel}: holds {} entries, want {width}",
            b.leaves.len()
        ));
    } else {
        b.well_formed = true;
    }
    b
}

/// The header the log writer puts first, `{"v":1,"seq":N,"time":"…"` and usually
/// `,"action":"…"`, read without a JSON parser: the verifier's hot path. Anything else (another
/// writer's layout, escapes) falls back to a full parse.
pub(crate) fn fast_head(bytes: &[u8]) -> Option<(u64, &str, Option<&str>)> {
    let rest = bytes.strip_prefix(b"{\"v\":")?;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(b",\"seq\":")?;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let seq = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b",\"time\":\"")?;
    let end = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
    let time = std::str::from_utf8(&rest[..end]).ok()?;
    let rest = rest[end..].strip_prefix(b"\"")?;
    if bytes.last() != Some(&b'}') {
        return None;
    }
    let action = match rest.strip_prefix(b",\"action\":\"") {
        Some(a) => {
            let end = a.iter().position(|&c| c == b'"' || c == b'\\')?;
            if a[end] != b'"' {
                return None;
            }
            Some(std::str::from_utf8(&a[..end]).ok()?)
        }
        None => None,
    };
    Some((seq, time, action))
}

/// The same header read by a JSON parser (`None` when the bytes are not such a JSON object).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn json_head(bytes: &[u8]) -> Option<(Option<u64>, Option<String>, Option<String>)> {
    let h: EntryHead<'_> = serde_json::from_slice(bytes).ok()?;
    Some((
        h.seq,
        h.time.map(str::to_owned),
        h.action.map(str::to_owned),
    ))
}

pub(crate) fn check_entry(seq: u64, bytes: &[u8], b: &mut Bundle) -> bool {
    let (found_seq, time, action) = match fast_head(bytes) {
        // The header read fast; the rest must still be one well-formed JSON object (checked
        // without building it).
        Some((s, t, a)) => match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => (Some(s), Some(t), a),
            Err(e) => {
                b.problems
                    .push(format!("entry {seq}: not a JSON object: {e}"));
                return false;
            }
        },
        None => match serde_json::from_slice::<EntryHead<'_>>(bytes) {
            Ok(h) => (h.seq, h.time, h.action),
            Err(e) => {
                b.problems
                    .push(format!("entry {seq}: not a JSON object: {e}"));
                return false;
            }
        },
    };
    if let Some(t) = time {
        match &mut b.times {
            None => b.times = Some((t.to_owned(), t.to_owned())),
            Some((lo, hi)) => {
                if t < lo.as_str() {
                    lo.clear();
                    lo.push_str(t);
                }
                if t > hi.as_str() {
                    hi.clear();
                    hi.push_str(t);
                }
            }
        }
    }
    let action = action.unwrap_or("(none)");
    match b.actions.get_mut(action) {
        Some(n) => *n += 1,
        None => {
            b.actions.insert(action.to_owned(), 1);
        }
    }
    if found_seq != Some(seq) {
        b.problems
            .push(format!("entry {seq}: its seq field says {found_seq:?}"));
        return false;
    }
    true
}

/// Widens `acc` to cover the time range `b`.
pub(crate) fn merge_times(acc: &mut Option<(String, String)>, b: Option<(String, String)>) {
    let Some((lo, hi)) = b else { return };
    match acc {
        None => *acc = Some((lo, hi)),
        Some((a, z)) => {
            if lo < *a {
                *a = lo;
            }
            if hi > *z {
                *z = hi;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_valid_only_as_a_whole_json_object_with_its_seq() {
        let mut b = Bundle::default();
        assert!(check_entry(
            3,
            br#"{"v":2,"seq":3,"time":"t","action":"a","x":[1]}"#,
            &mut b
        ));
        // The header reads fast, but what follows is not JSON.
        assert!(!check_entry(
            4,
            br#"{"v":2,"seq":4,"time":"t","action":"a", bad}"#,
            &mut b
        ));
        assert!(!check_entry(5, br#"{"v":2,"seq":6,"time":"t"}"#, &mut b));
        assert_eq!(b.problems.len(), 2, "{:?}", b.problems);
        assert!(b.problems[0].contains("entry 4: not a JSON object"));
    }
}
