//! Hash tiles checked against the tree the verifier rebuilds from the entries, one tile per
//! tile level loaded at a time.

use crate::checkpoint::Checkpoint;
use crate::error::AuditError;
use crate::hash::Hash;
use crate::tile_id::TileId;
use crate::tile_source::{TileReader, read_tile};
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH, tile_path};

/// One hash tile being compared.
#[derive(Clone)]
pub(crate) struct LoadedTile {
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
pub(crate) struct TileChecker<'a> {
    reader: &'a dyn TileReader,
    /// A level-0 tile a worker already read: (index, result).
    pub(crate) preloaded: Option<(u64, Result<Vec<u8>, AuditError>)>,
    size: u64,
    /// Per tile level: (tile index, width, bytes or None when unreadable, all matched so far).
    pub(crate) current: Vec<Option<LoadedTile>>,
    pub(crate) valid: u64,
    pub(crate) problems: Vec<String>,
    /// Tiles that could not be read for a reason other than what the log holds.
    pub(crate) unreadable: Vec<String>,
}

impl TileChecker<'_> {
    fn width_of(&self, level: u32, n: u64) -> u64 {
        let count = self.size >> (level * TILE_HEIGHT);
        (count - n * TILE_WIDTH).min(TILE_WIDTH)
    }

    pub(crate) fn finish_tile(&mut self, level: usize) {
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
    pub(crate) fn check(&mut self, tree_level: u8, index: u64, hash: &Hash) -> bool {
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
                    // A tile level is below 8 (tree levels below 64) and a width at most 256;
                    // a partial tile the log deleted is read from its full tile.
                    read_tile(self.reader, &TileId::hash(level as u8, n, width as u16))
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
                    super::file_read_error(&e, &mut self.problems, &mut self.unreadable);
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

impl<'a> TileChecker<'a> {
    /// A checker for the hash tiles of the tree `cp` signs.
    pub(crate) fn new(reader: &'a dyn TileReader, cp: &Checkpoint) -> Self {
        Self {
            reader,
            preloaded: None,
            size: cp.size,
            current: Vec::new(),
            valid: 0,
            problems: Vec::new(),
            unreadable: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tile_source::tests::MapReader;
    use std::collections::HashMap;

    /// c2sp.org/tlog-tiles lets a log delete a partial tile once its full tile is available:
    /// a level-1 tile of an older tree is then checked against its full tile's prefix.
    #[test]
    fn a_deleted_partial_tile_is_checked_against_its_full_tile() {
        let full: Vec<u8> = (0..=255u8).flat_map(|i| [i; 32]).collect();
        let reader = MapReader(HashMap::from([("tile/1/001".to_owned(), full)]));
        // 300 level-1 hashes: tile/1/001.p/44, which the reader no longer has.
        let cp = Checkpoint {
            origin: "log.example".into(),
            size: 300 * 256,
            root: [0; 32],
        };
        let mut tiles = TileChecker::new(&reader, &cp);
        assert!(tiles.check(8, 256 + 3, &[3; 32]), "{:?}", tiles.problems);
        assert!(!tiles.check(8, 256 + 4, &[3; 32]));
        assert_eq!(tiles.problems.len(), 1, "{:?}", tiles.problems);
        assert!(tiles.problems[0].contains("tile/1/001.p/44 has"));
    }
}
