//! Export in the C2SP tlog-tiles layout: `checkpoint`, `tile/<L>/<N>[.p/<W>]` and
//! `tile/entries/<N>[.p/<W>]`, so any static file server can serve the log and generic
//! tlog-tiles tools can check it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::error::AuditError;
use crate::log::AuditLog;
use crate::tile_id::{TileId, TileKind, checkpointed_partials, tiles_between};

/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels one tile level spans.
pub const TILE_HEIGHT: u32 = 8;

/// `N` written in 3-digit groups, all but the last prefixed with `x`: 1234067 → `x001/x234/067`.
pub fn index_path(n: u64) -> String {
    let mut s = format!("{:03}", n % 1000);
    let mut rest = n / 1000;
    while rest > 0 {
        s = format!("x{:03}/{s}", rest % 1000);
        rest /= 1000;
    }
    s
}

/// The relative path of tile `n` at tile level `level` (`None` = entry bundle) of `width` items.
pub fn tile_path(level: Option<u32>, n: u64, width: u64) -> String {
    let dir = match level {
        Some(l) => format!("tile/{l}"),
        None => "tile/entries".to_owned(),
    };
    if width == TILE_WIDTH {
        format!("{dir}/{}", index_path(n))
    } else {
        format!("{dir}/{}.p/{width}", index_path(n))
    }
}

/// The tiles (index, width) that make up `count` items at one level: full ones, then a partial.
pub fn tiles_for(count: u64) -> impl Iterator<Item = (u64, u64)> {
    let full = count / TILE_WIDTH;
    let partial = count % TILE_WIDTH;
    (0..full)
        .map(|n| (n, TILE_WIDTH))
        .chain((partial > 0).then_some((full, partial)))
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// The exported tree size.
    pub size: u64,
    /// Hash tiles written (full tiles already present are left as they are).
    pub hash_tiles_written: u64,
    /// Entry bundles written.
    pub bundles_written: u64,
    /// Full tiles and bundles that were already there (immutable, so skipped).
    pub skipped: u64,
}

fn write_atomic(dir: &Path, rel: &str, data: &[u8]) -> Result<(), AuditError> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| AuditError::io(format!("creating {}", parent.display()), e))?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    fs::write(&tmp, data).map_err(|e| AuditError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, &path).map_err(|e| AuditError::io(format!("renaming {}", path.display()), e))
}

/// A full tile that is already exported has the same bytes forever, so it is not rewritten.
fn already_there(dir: &Path, rel: &str, width: u64, expected_len: Option<u64>) -> bool {
    if width != TILE_WIDTH {
        return false;
    }
    match (fs::metadata(dir.join(rel)), expected_len) {
        (Ok(m), Some(len)) => m.len() == len,
        (Ok(_), None) => true,
        _ => false,
    }
}

impl AuditLog {
    /// The bytes of hash tile or entry bundle `id`, served from stored node hashes and entries
    /// (nothing is exported). The tile must lie inside the tree of the latest checkpoint: a
    /// partial tile of width `W` exists once its level holds `N × 256 + W` hashes, and its bytes
    /// never change after that (a full tile is a partial tile of width 256).
    pub fn tile(&self, id: &TileId) -> Result<Vec<u8>, AuditError> {
        let size = self.size();
        let (count, item) = match id.kind {
            TileKind::Entries => (size, "entries"),
            TileKind::Hash { level } => {
                let shift = u32::from(level) * TILE_HEIGHT;
                (size.checked_shr(shift).unwrap_or(0), "hashes")
            }
        };
        let from = id.index.checked_mul(TILE_WIDTH);
        let to = from.and_then(|f| f.checked_add(u64::from(id.width)));
        let (Some(from), Some(to)) = (from, to) else {
            return Err(AuditError::OutOfRange(format!("{id} is beyond any tree")));
        };
        if id.width == 0 || u64::from(id.width) > TILE_WIDTH || to > count {
            return Err(AuditError::OutOfRange(format!(
                "{id} is beyond the latest checkpoint ({size} entries, {count} {item} at this level)"
            )));
        }
        match id.kind {
            TileKind::Entries => self.bundle_bytes(id.index, from, to),
            TileKind::Hash { level } => {
                let tree_level = u8::try_from(u32::from(level) * TILE_HEIGHT)
                    .map_err(|_| AuditError::OutOfRange("tree too tall".into()))?;
                self.hash_tile_bytes(tree_level, from, to)
                    .map_err(|e| match e {
                        AuditError::Integrity { detail, .. } => AuditError::Integrity {
                            location: format!("tile {id}"),
                            detail,
                        },
                        other => other,
                    })
            }
        }
    }

    /// What a copy holding `after` entries lacks to serve a tree of `latest` entries: the tiles
    /// and bundles that are new or grew ([`tiles_between`]), then the partial ones of this
    /// log's checkpoints of sizes in `after + 1 .. latest` whose full tile a tree of `latest`
    /// lacks ([`checkpointed_partials`]; tlog-tiles: a log serves the partial tiles of every
    /// checkpointed size). A publisher uploads them each round, an export from 0.
    pub fn tiles_to_copy(&self, after: u64, latest: u64) -> Result<Vec<TileId>, AuditError> {
        let store = self.store();
        let earlier =
            checkpointed_partials(after, latest, |lo, hi| store.any_checkpoint_in(lo, hi))?;
        Ok(tiles_between(after, latest).chain(earlier).collect())
    }

    /// Whether `dir` holds an export of this log at a size up to `size` whose full tiles may be
    /// kept (see [`AuditLog::export_tiles`]); an error when it holds another log or history.
    fn earlier_export_of_this_log(&self, dir: &Path, size: u64) -> Result<bool, AuditError> {
        let text = match std::fs::read_to_string(dir.join("checkpoint")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(AuditError::io("reading the export's checkpoint", e)),
        };
        let refuse = |why: String| {
            Err(AuditError::Config(format!(
                "{} holds {why}; export into an empty directory or a copy of this log",
                dir.display()
            )))
        };
        let Ok(body) = Checkpoint::parse_unverified_note(&text) else {
            return refuse("a checkpoint that does not parse".into());
        };
        if body.origin != self.origin() {
            return refuse(format!("an export of another log ({:?})", body.origin));
        }
        let ours = body.size <= self.size() && self.root_at(body.size)? == body.root;
        if ours && body.size > size {
            return refuse(format!(
                "a later export of this log ({} entries) than the checkpoint exported now \
                 ({size} entries), and a copy never moves back",
                body.size
            ));
        }
        if !ours {
            return refuse(format!(
                "an export of another history of this log (a checkpoint of {} entries this \
                 log never had)",
                body.size
            ));
        }
        Ok(true)
    }

    /// Writes the log, as of its latest checkpoint, to `dir` in the tlog-tiles layout: its
    /// tiles and bundles, and the partial ones of every earlier checkpoint whose full tile it
    /// does not have yet. The checkpoint is written last, so a reader never sees a checkpoint
    /// before its tiles.
    ///
    /// Full tiles already in `dir` are kept (their bytes never change) only when `dir` holds an
    /// earlier export of this very log: its `checkpoint` names this origin and a size and root
    /// this tree had. A directory with another log's or another history's checkpoint is refused
    /// (mixing its tiles with ours would make an export no checkpoint verifies); one with tiles
    /// but no checkpoint (an interrupted export of unknown origin) is rewritten in full.
    pub fn export_tiles(&self, dir: &Path) -> Result<ExportSummary, AuditError> {
        self.export_as_of(dir, &self.checkpoint())
    }

    /// [`Self::export_tiles`] as of `cp`, a checkpoint of this log ([`Self::check_own`]): an
    /// older one its witnesses cosigned, say, so the export carries their cosignatures. Tiles
    /// beyond its size are not written.
    pub fn export_tiles_at(
        &self,
        dir: &Path,
        cp: &SignedCheckpoint,
    ) -> Result<ExportSummary, AuditError> {
        self.check_own(&cp.checkpoint)?;
        self.export_as_of(dir, cp)
    }

    /// The export as of `cp`, known to be this log's.
    fn export_as_of(&self, dir: &Path, cp: &SignedCheckpoint) -> Result<ExportSummary, AuditError> {
        let size = cp.checkpoint.size;
        let mut summary = ExportSummary {
            size,
            ..Default::default()
        };
        let keep_full = self.earlier_export_of_this_log(dir, size)?;
        for id in self.tiles_to_copy(0, size)? {
            let rel = id.path();
            let expected_len = match id.kind {
                TileKind::Entries => None,
                TileKind::Hash { .. } => Some(32 * TILE_WIDTH),
            };
            if keep_full && already_there(dir, &rel, u64::from(id.width), expected_len) {
                summary.skipped += 1;
                continue;
            }
            write_atomic(dir, &rel, &self.tile(&id)?)?;
            match id.kind {
                TileKind::Entries => summary.bundles_written += 1,
                TileKind::Hash { .. } => summary.hash_tiles_written += 1,
            }
        }
        write_atomic(dir, "checkpoint", cp.note.as_bytes())?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_follow_the_spec() {
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(5), "005");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(index_path(1_234_067), "x001/x234/067");
        assert_eq!(tile_path(Some(1), 1_234_067, 256), "tile/1/x001/x234/067");
        assert_eq!(tile_path(None, 3, 7), "tile/entries/003.p/7");
    }

    #[test]
    fn tiles_for_counts() {
        assert_eq!(tiles_for(0).count(), 0);
        assert_eq!(tiles_for(256).collect::<Vec<_>>(), vec![(0, 256)]);
        assert_eq!(tiles_for(257).collect::<Vec<_>>(), vec![(0, 256), (1, 1)]);
    }
}
