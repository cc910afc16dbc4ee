//! The verifier: recomputes a log in the tlog-tiles layout from its entries and checks every
//! hash tile, the root, the checkpoint signature and, optionally, consistency with a checkpoint
//! the auditor saved earlier. It reads through a [`TileReader`]: an export directory, or a
//! mirror or server the caller fetches from. Incrementally, it checks only what was added since
//! the saved checkpoint, plus a consistency proof computed from the tiles.

mod entries;
mod tile_check;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::hash::Hash;
use crate::merkle::{Frontier, consistency_proof, verify_consistency};
use crate::note::{self, NoteVerifier};
use crate::tile_source::{DirReader, TileNodes, TileReader};
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH};

use entries::{Bundle, merge_times, read_bundle};
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use entries::{fast_head, json_head, parse_bundle};
use tile_check::TileChecker;

/// Bundles each worker may read ahead of the tree rebuild (bounds memory: 8 × 256 entries).
const WORKER_QUEUE: usize = 8;

/// What the verifier found. `problems` is empty exactly when everything verified.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// The export's origin (from the checkpoint body).
    pub origin: String,
    /// Entries the checkpoint covers.
    pub size: u64,
    /// The first entry checked: 0, or where an incremental run started (the start of the
    /// bundle holding the saved checkpoint's last entry).
    pub first: u64,
    /// The checkpoint's root.
    pub root: Hash,
    /// Whether the checkpoint signature verified with the given keys.
    pub checkpoint_valid: bool,
    /// Which given keys signed it (`name+id`).
    pub signed_by: Vec<String>,
    /// Entries whose bytes, leaf hash and `seq` were all right.
    pub entries_valid: u64,
    /// Hash tiles that matched the recomputed tree.
    pub tiles_valid: u64,
    /// Hash tiles expected for this size.
    pub tiles_total: u64,
    /// Entry bundles that parsed with the right count.
    pub bundles_valid: u64,
    /// Entry bundles expected for this size.
    pub bundles_total: u64,
    /// Earliest and latest `time` seen.
    pub time_range: Option<(String, String)>,
    /// Entries per `action`.
    pub actions: BTreeMap<String, u64>,
    /// The saved checkpoint's size, and whether the export is consistent with it.
    pub since: Option<(u64, bool)>,
    /// One line per problem, each naming where it is.
    pub problems: Vec<String>,
    /// One line per read that failed for a reason other than what the log holds (the source
    /// unreachable, a server error, a timeout; see [`AuditError::is_unreadable`]): what it
    /// would have checked is unknown, not wrong. Verify again.
    ///
    /// [`AuditError::is_unreadable`]: crate::AuditError::is_unreadable
    pub unreadable: Vec<String>,
}

impl VerifyReport {
    /// True when everything was read and nothing was wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.unreadable.is_empty()
    }

    /// True when something read was wrong: the log fails verification, whatever could not be
    /// read.
    pub fn invalid(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// Files a read error: a failure of the source under `unreadable`, anything else (a missing
/// or malformed resource) under `problems`.
pub(crate) fn file_read_error(
    e: &crate::AuditError,
    problems: &mut Vec<String>,
    unreadable: &mut Vec<String>,
) {
    if e.is_unreadable() {
        unreadable.push(e.to_string());
    } else {
        problems.push(e.to_string());
    }
}

/// How to verify.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Worker threads that read and hash entry bundles (at least one; a network reader may
    /// ask for more, see [`TileReader::parallelism`]).
    pub threads: usize,
    /// With a saved checkpoint: check only the entries added since (from the start of the
    /// bundle holding its last entry), seeding the tree from the hash tiles, and verify a
    /// consistency proof computed from the tiles. Without one, everything is checked.
    pub incremental: bool,
}

/// Verifies the export in `dir` against `keys`; `since` is a signed checkpoint saved earlier.
pub fn verify_export(
    dir: &Path,
    keys: &[NoteVerifier],
    since: Option<&str>,
    threads: usize,
) -> VerifyReport {
    let note_text = match fs::read_to_string(dir.join("checkpoint")) {
        Ok(t) => t,
        Err(e) => {
            let mut report = VerifyReport::default();
            report.problems.push(format!("checkpoint: {e}"));
            return report;
        }
    };
    let options = VerifyOptions {
        threads,
        incremental: false,
    };
    verify_tiles(&DirReader(dir), &note_text, keys, since, options)
}

/// Verifies the log whose signed checkpoint is `note_text` (already fetched, so that a log
/// that grows meanwhile is checked at one size) by reading its tiles from `reader`.
pub fn verify_tiles(
    reader: &dyn TileReader,
    note_text: &str,
    keys: &[NoteVerifier],
    since: Option<&str>,
    options: VerifyOptions,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    // The body is parsed even when the signature fails, for the report; no tile is read then.
    let body = match SignedCheckpoint::open(note_text, keys) {
        Ok(cp) => {
            report.checkpoint_valid = true;
            if let Ok(o) = note::open(note_text, keys) {
                report.signed_by = o
                    .verified_by
                    .iter()
                    .map(|(n, id)| format!("{n}+{id:08x}"))
                    .collect();
            }
            Some(cp.checkpoint)
        }
        Err(e) => {
            report.problems.push(format!("checkpoint signature: {e}"));
            Checkpoint::parse_unverified_note(note_text).ok()
        }
    };
    let Some(cp) = body else {
        report
            .problems
            .push("checkpoint: body does not parse".into());
        return report;
    };
    report.origin = cp.origin.clone();
    report.size = cp.size;
    report.root = cp.root;
    if !report.checkpoint_valid {
        // tlog-tiles: "Clients MUST NOT fetch arbitrary partial tiles without verifying a
        // checkpoint with a size that requires their existence".
        report.problems.push(
            "tiles not read: the checkpoint does not verify, so it vouches for no tile".into(),
        );
        return report;
    }
    let since_cp = since.and_then(|s| match SignedCheckpoint::open(s, keys) {
        Ok(c) if c.checkpoint.origin == cp.origin => Some(c.checkpoint),
        Ok(c) => {
            report.problems.push(format!(
                "saved checkpoint is for origin {:?}, not {:?}",
                c.checkpoint.origin, cp.origin
            ));
            None
        }
        Err(e) => {
            report.problems.push(format!("saved checkpoint: {e}"));
            None
        }
    });
    if let Some(s) = &since_cp {
        if s.size > cp.size {
            report.problems.push(format!(
                "saved checkpoint has {} entries but the export only {}: the log went backwards",
                s.size, cp.size
            ));
            report.since = Some((s.size, false));
        } else if s.size == 0 {
            let ok = s.root == crate::hash::empty_root();
            report.since = Some((0, ok));
        }
    }

    let mut frontier = Frontier::default();
    if let Some(s) = since_cp.as_ref().filter(|s| {
        options.incremental && s.size > 0 && s.size <= cp.size && report.problems.is_empty()
    }) {
        match seed_from_tiles(reader, s, &cp) {
            Ok(f) => {
                report.first = f.size();
                frontier = f;
            }
            Err(SeedFailed::Unreadable(what)) => {
                // Consistency is unknown, not refuted.
                report.unreadable.push(what);
                report.first = s.size / TILE_WIDTH * TILE_WIDTH;
                return finish(report, TileChecker::new(reader, &cp));
            }
            Err(SeedFailed::Invalid(problem)) => {
                report.since = Some((s.size, false));
                report.problems.push(problem);
                report.first = s.size / TILE_WIDTH * TILE_WIDTH;
                return finish(report, TileChecker::new(reader, &cp));
            }
        }
        if s.size == frontier.size() {
            let ok = frontier.root() == s.root;
            report.since = Some((s.size, ok));
            if !ok {
                report.problems.push(format!(
                    "the hash tiles at {} entries do not give the saved checkpoint's root: the log was rewritten",
                    s.size
                ));
            }
        }
    }
    let mut tiles = TileChecker::new(reader, &cp);
    let first_bundle = report.first / TILE_WIDTH;
    // Bundles are listed lazily: the size comes from the export and may be anything up to
    // 2^64 - 1 (an unsigned body is still checked); the first missing bundle ends the walk.
    report.bundles_total = tile_count(cp.size) - first_bundle;
    let threads = options.threads.max(reader.parallelism()).max(1);
    // Worker w reads bundles w, w + T, w + 2T, … into its own bounded channel; the main thread
    // takes them round-robin, which is bundle order, and rebuilds the tree while the workers
    // read and hash ahead.
    let early_exit = std::thread::scope(|s| {
        let mut inboxes = Vec::with_capacity(threads);
        for w in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Bundle>(WORKER_QUEUE);
            let mine = bundles_from(first_bundle, cp.size).skip(w).step_by(threads);
            s.spawn(move || {
                for (n, width) in mine {
                    if tx.send(read_bundle(reader, n, width)).is_err() {
                        break;
                    }
                }
            });
            inboxes.push(rx);
        }
        for (i, (n, _)) in bundles_from(first_bundle, cp.size).enumerate() {
            let Ok(b) = inboxes[i % threads].recv() else {
                report.problems.push("a verifier thread failed".into());
                return true;
            };
            if let Some(t) = b.tile0 {
                tiles.preloaded = Some((n, t));
            }
            report.problems.extend(b.problems);
            let cut_off = !b.unreadable.is_empty();
            report.unreadable.extend(b.unreadable);
            merge_times(&mut report.time_range, b.times);
            for (a, c) in b.actions {
                *report.actions.entry(a).or_default() += c;
            }
            if !b.well_formed {
                // Without this bundle the tree cannot be rebuilt past it.
                let what = format!("entries from {} on cannot be checked", n * TILE_WIDTH);
                if cut_off {
                    report.unreadable.push(what);
                } else {
                    report.problems.push(what);
                }
                return true;
            }
            report.bundles_valid += 1;
            for (i, leaf) in b.leaves.iter().enumerate() {
                let mut leaf_ok = true;
                frontier.push(*leaf, |level, index, hash| {
                    if u32::from(level) % TILE_HEIGHT == 0 {
                        let ok = tiles.check(level, index, hash);
                        if level == 0 {
                            leaf_ok = ok;
                        }
                    }
                });
                if b.good[i] && leaf_ok {
                    report.entries_valid += 1;
                }
                if let Some(s) = &since_cp
                    && s.size == frontier.size()
                {
                    {
                        let ok = frontier.root() == s.root;
                        if !ok {
                            report.problems.push(format!(
                                "the export's first {} entries do not match the saved checkpoint's root: the log was rewritten",
                                s.size
                            ));
                        }
                        report.since = Some((s.size, ok));
                    }
                }
            }
        }
        false
    });
    if early_exit {
        return finish(report, tiles);
    }
    if frontier.root() != cp.root {
        report.problems.push(format!(
            "root: the entries give {} but the checkpoint signs {}",
            hex::encode(frontier.root()),
            hex::encode(cp.root)
        ));
    }
    finish(report, tiles)
}

fn finish(mut report: VerifyReport, mut tiles: TileChecker<'_>) -> VerifyReport {
    for l in 0..tiles.current.len() {
        tiles.finish_tile(l);
    }
    // Tiles holding a node created from `first` on: at tile level L, node indexes
    // `[first >> 8L, size >> 8L)`.
    let mut total = 0u64;
    let mut level = 0u32;
    while level * TILE_HEIGHT < 64 && report.size >> (level * TILE_HEIGHT) > 0 {
        let a = report.first >> (level * TILE_HEIGHT);
        let b = report.size >> (level * TILE_HEIGHT);
        if b > a {
            total += tile_count(b) - a / TILE_WIDTH;
        }
        level += 1;
    }
    report.tiles_total = total;
    report.tiles_valid = tiles.valid;
    report.problems.extend(tiles.problems);
    report.unreadable.extend(tiles.unreadable);
    report
}

/// Why an incremental run could not seed its tree from the hash tiles.
enum SeedFailed {
    /// A tile could not be read (see [`VerifyReport::unreadable`]).
    Unreadable(String),
    /// The tiles contradict the saved checkpoint, or are missing or malformed.
    Invalid(String),
}

impl SeedFailed {
    fn from_error(what: String, e: &crate::AuditError) -> Self {
        if e.is_unreadable() {
            Self::Unreadable(what)
        } else {
            Self::Invalid(what)
        }
    }
}

/// For an incremental run: the tree's right edge at the start of the bundle holding the saved
/// checkpoint's last entry, read from the new tree's hash tiles, after checking a consistency
/// proof (computed from the same tiles) from the saved checkpoint to the new one.
fn seed_from_tiles(
    reader: &dyn TileReader,
    since: &Checkpoint,
    cp: &Checkpoint,
) -> Result<Frontier, SeedFailed> {
    let nodes = TileNodes::new(reader, cp.size);
    let proof = consistency_proof(&nodes, since.size, cp.size).map_err(|e| {
        SeedFailed::from_error(format!("consistency proof from the hash tiles: {e}"), &e)
    })?;
    verify_consistency(since.size, cp.size, &since.root, &cp.root, &proof).map_err(|e| {
        SeedFailed::Invalid(format!(
            "the log of {} entries is not consistent with the saved checkpoint of {} entries ({e}): the log was rewritten",
            cp.size, since.size
        ))
    })?;
    let start = since.size / TILE_WIDTH * TILE_WIDTH;
    Frontier::load(&nodes, start)
        .map_err(|e| SeedFailed::from_error(format!("tree at {start} entries: {e}"), &e))
}

/// How many tiles (full and partial) hold `count` items: `tiles_for(count).count()` without
/// walking them.
fn tile_count(count: u64) -> u64 {
    count / TILE_WIDTH + u64::from(!count.is_multiple_of(TILE_WIDTH))
}

/// The entry bundles `(index, width)` of a tree of `size` entries from bundle `first` on,
/// lazily (`tiles_for(size).skip(first)` without walking the skipped ones).
fn bundles_from(first: u64, size: u64) -> impl Iterator<Item = (u64, u64)> {
    let full = size / TILE_WIDTH;
    let partial = size % TILE_WIDTH;
    (first.min(full)..full)
        .map(|n| (n, TILE_WIDTH))
        .chain((partial > 0 && first <= full).then_some((full, partial)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiles::tiles_for;

    #[test]
    fn bundles_from_skips_without_walking() {
        for size in [0, 1, 255, 256, 257, 1000] {
            for first in 0..6 {
                let want: Vec<_> = tiles_for(size).skip(first as usize).collect();
                assert_eq!(
                    bundles_from(first, size).collect::<Vec<_>>(),
                    want,
                    "{size} {first}"
                );
            }
        }
        assert_eq!(bundles_from(u64::MAX / 256, u64::MAX).count(), 1);
    }
}
