//! The verifier: recomputes a log in the tlog-tiles layout from its entries and checks every
//! hash tile, the root, the checkpoint signature and, optionally, consistency with a checkpoint
//! the auditor saved earlier. It reads through a [`TileReader`]: an export directory, or a
//! mirror or server the caller fetches from. Incrementally, it checks only what was added since
//! the saved checkpoint, plus a consistency proof computed from the tiles.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Deserialize;

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::hash::{Hash, leaf_hash};
use crate::merkle::{Frontier, consistency_proof, verify_consistency};
use crate::note::{self, NoteVerifier};
use crate::tile_source::{DirReader, TileNodes, TileReader};
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH, tile_path, tiles_for};

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
}

impl VerifyReport {
    /// True when nothing was wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

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
struct Bundle {
    /// The level-0 hash tile with the same index, read ahead by the worker.
    tile0: Option<std::io::Result<Vec<u8>>>,
    leaves: Vec<Hash>,
    /// Per entry: bytes parsed as JSON with the right `seq`.
    good: Vec<bool>,
    problems: Vec<String>,
    times: Option<(String, String)>,
    actions: std::collections::HashMap<String, u64>,
    well_formed: bool,
}

fn read_bundle(reader: &dyn TileReader, n: u64, width: u64) -> Bundle {
    let rel = tile_path(None, n, width);
    let mut b = Bundle {
        tile0: Some(reader.read(&tile_path(Some(0), n, width))),
        ..Default::default()
    };
    let data = match reader.read(&rel) {
        Ok(d) => d,
        Err(e) => {
            b.problems.push(format!("entry bundle {rel}: {e}"));
            return b;
        }
    };
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
fn fast_head(bytes: &[u8]) -> Option<(u64, &str, Option<&str>)> {
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

fn check_entry(seq: u64, bytes: &[u8], b: &mut Bundle) -> bool {
    let (found_seq, time, action) = match fast_head(bytes) {
        Some((s, t, a)) => (Some(s), Some(t), a),
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

/// One hash tile being compared.
#[derive(Clone)]
struct LoadedTile {
    /// Tile index at its level.
    n: u64,
    /// Hashes in it.
    width: u64,
    /// Its bytes, `None` when it could not be read (already reported).
    data: Option<Vec<u8>>,
    /// Every hash compared so far matched.
    ok: bool,
}

/// Lazily loaded hash tiles, one per tile level, checked against recomputed nodes.
struct TileChecker<'a> {
    reader: &'a dyn TileReader,
    /// A level-0 tile a worker already read: (index, result).
    preloaded: Option<(u64, std::io::Result<Vec<u8>>)>,
    size: u64,
    /// Per tile level: (tile index, width, bytes or None when unreadable, all matched so far).
    current: Vec<Option<LoadedTile>>,
    valid: u64,
    problems: Vec<String>,
}

impl TileChecker<'_> {
    fn width_of(&self, level: u32, n: u64) -> u64 {
        let count = self.size >> (level * TILE_HEIGHT);
        (count - n * TILE_WIDTH).min(TILE_WIDTH)
    }

    fn finish_tile(&mut self, level: usize) {
        if let Some(Some(LoadedTile {
            data: Some(_),
            ok: true,
            ..
        })) = self.current.get(level)
        {
            self.valid += 1;
        }
    }

    /// Compares a recomputed node at a tile boundary level with the exported tile; false when
    /// it differs or the tile cannot be read.
    fn check(&mut self, tree_level: u8, index: u64, hash: &Hash) -> bool {
        let level = u32::from(tree_level) / TILE_HEIGHT;
        let (n, pos) = (index / TILE_WIDTH, (index % TILE_WIDTH) as usize);
        let l = level as usize;
        if self.current.len() <= l {
            self.current.resize(l + 1, None);
        }
        if self.current[l].as_ref().map(|c| c.n) != Some(n) {
            self.finish_tile(l);
            let width = self.width_of(level, n);
            let rel = tile_path(Some(level), n, width);
            let read = match self.preloaded.take() {
                Some((pn, r)) if level == 0 && pn == n => r,
                other => {
                    self.preloaded = other;
                    self.reader.read(&rel)
                }
            };
            let data = match read {
                Ok(d) if d.len() as u64 == width * 32 => Some(d),
                Ok(d) => {
                    self.problems.push(format!(
                        "hash tile {rel}: {} bytes, want {}",
                        d.len(),
                        width * 32
                    ));
                    None
                }
                Err(e) => {
                    self.problems.push(format!("hash tile {rel}: {e}"));
                    None
                }
            };
            self.current[l] = Some(LoadedTile {
                n,
                width,
                data,
                ok: true,
            });
        }
        let Some(LoadedTile {
            n,
            width,
            data: Some(data),
            ok,
        }) = &mut self.current[l]
        else {
            return false;
        };
        if data[pos * 32..pos * 32 + 32] == hash[..] {
            return true;
        }
        {
            {
                *ok = false;
                let what = if tree_level == 0 {
                    format!("entry {index}")
                } else {
                    format!("tree level {tree_level} node {index}")
                };
                self.problems.push(format!(
                    "{what}: hash tile {} has {} but the entries give {}",
                    tile_path(Some(level), *n, *width),
                    hex::encode(&data[pos * 32..pos * 32 + 32]),
                    hex::encode(hash)
                ));
            }
        }
        false
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
    // The body is parsed even when the signature fails, so the rest can still be checked.
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
            note_text
                .rfind("\n\n")
                .and_then(|i| Checkpoint::parse_text(&note_text[..=i]).ok())
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
            Err(problem) => {
                report.since = Some((s.size, false));
                report.problems.push(problem);
                report.first = s.size / TILE_WIDTH * TILE_WIDTH;
                return finish(report, tiles_checker(reader, &cp));
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
    let mut tiles = tiles_checker(reader, &cp);
    let first_bundle = report.first / TILE_WIDTH;
    let bundles: Vec<(u64, u64)> = tiles_for(cp.size)
        .filter(|(n, _)| *n >= first_bundle)
        .collect();
    report.bundles_total = bundles.len() as u64;
    let threads = options.threads.max(reader.parallelism()).max(1);
    // Worker w reads bundles w, w + T, w + 2T, … into its own bounded channel; the main thread
    // takes them round-robin, which is bundle order, and rebuilds the tree while the workers
    // read and hash ahead.
    let early_exit = std::thread::scope(|s| {
        let mut inboxes = Vec::with_capacity(threads);
        for w in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Bundle>(WORKER_QUEUE);
            let mine: Vec<(u64, u64)> = bundles.iter().copied().skip(w).step_by(threads).collect();
            s.spawn(move || {
                for (n, width) in mine {
                    if tx.send(read_bundle(reader, n, width)).is_err() {
                        break;
                    }
                }
            });
            inboxes.push(rx);
        }
        for (i, &(n, _)) in bundles.iter().enumerate() {
            let Ok(b) = inboxes[i % threads].recv() else {
                report.problems.push("a verifier thread failed".into());
                return true;
            };
            if let Some(t) = b.tile0 {
                tiles.preloaded = Some((n, t));
            }
            report.problems.extend(b.problems);
            merge_times(&mut report.time_range, b.times);
            for (a, c) in b.actions {
                *report.actions.entry(a).or_default() += c;
            }
            if !b.well_formed {
                // Without this bundle the tree cannot be rebuilt past it.
                report.problems.push(format!(
                    "entries from {} on cannot be checked",
                    n * TILE_WIDTH
                ));
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

fn merge_times(acc: &mut Option<(String, String)>, b: Option<(String, String)>) {
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
            total += b.div_ceil(TILE_WIDTH) - a / TILE_WIDTH;
        }
        level += 1;
    }
    report.tiles_total = total;
    report.tiles_valid = tiles.valid;
    report.problems.extend(tiles.problems);
    report
}

fn tiles_checker<'a>(reader: &'a dyn TileReader, cp: &Checkpoint) -> TileChecker<'a> {
    TileChecker {
        reader,
        preloaded: None,
        size: cp.size,
        current: Vec::new(),
        valid: 0,
        problems: Vec::new(),
    }
}

/// For an incremental run: the tree's right edge at the start of the bundle holding the saved
/// checkpoint's last entry, read from the new tree's hash tiles, after checking a consistency
/// proof (computed from the same tiles) from the saved checkpoint to the new one.
fn seed_from_tiles(
    reader: &dyn TileReader,
    since: &Checkpoint,
    cp: &Checkpoint,
) -> Result<Frontier, String> {
    let nodes = TileNodes::new(reader, cp.size);
    let proof = consistency_proof(&nodes, since.size, cp.size)
        .map_err(|e| format!("consistency proof from the hash tiles: {e}"))?;
    verify_consistency(since.size, cp.size, &since.root, &cp.root, &proof).map_err(|e| {
        format!(
            "the log of {} entries is not consistent with the saved checkpoint of {} entries ({e}): the log was rewritten",
            cp.size, since.size
        )
    })?;
    let start = since.size / TILE_WIDTH * TILE_WIDTH;
    Frontier::load(&nodes, start).map_err(|e| format!("tree at {start} entries: {e}"))
}
