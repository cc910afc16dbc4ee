//! Reading a log in the tlog-tiles layout from anywhere (an export directory, a mirror, a
//! server), and computing tree nodes, proofs and roots from its hash tiles alone, as a generic
//! tlog-tiles client does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use crate::error::AuditError;
use crate::hash::{Hash, reference_root};
use crate::merkle::NodeSource;
use crate::tile_id::{TileId, TileKind};
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH};

/// A place tiles are read from. Paths are relative to the log's prefix: `checkpoint`,
/// `tile/0/000`, `tile/entries/001.p/7`.
pub trait TileReader: Sync {
    /// The bytes at `path`; a missing resource is an error of kind `NotFound`.
    fn read(&self, path: &str) -> std::io::Result<Vec<u8>>;

    /// How many reads may usefully run at once: 1 for local files (the CPU count decides),
    /// more for network sources whose reads mostly wait.
    fn parallelism(&self) -> usize {
        1
    }
}

/// An export directory on the local file system.
#[derive(Debug, Clone, Copy)]
pub struct DirReader<'a>(pub &'a Path);

impl TileReader for DirReader<'_> {
    fn read(&self, path: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.0.join(path))
    }
}

/// What a tile is, for messages: `hash tile tile/0/001.p/44`, `entry bundle tile/entries/001`.
fn describe(id: &TileId) -> String {
    match id.kind {
        TileKind::Hash { .. } => format!("hash tile {}", id.path()),
        TileKind::Entries => format!("entry bundle {}", id.path()),
    }
}

/// An answer that says the object is not there to read.
fn missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
    )
}

/// Reads tile or entry bundle `id` through `reader`; a partial one that is gone (`NotFound`,
/// or `PermissionDenied`: what a bucket that anonymous readers may not list answers for a
/// missing object) is cut from its full tile with [`partial_from_full`]. c2sp.org/tlog-tiles: "Logs MUST serve
/// partial tiles corresponding to tree sizes for which a checkpoint was produced, but MAY
/// delete any partial tile once the corresponding full tile is available", and clients "MAY
/// fetch the full tile … as a fallback". Errors name the tile (and the full tile when it was
/// the one that failed).
pub fn read_tile<R: TileReader + ?Sized>(reader: &R, id: &TileId) -> Result<Vec<u8>, AuditError> {
    let path = id.path();
    match reader.read(&path) {
        Err(e) if missing(&e) && !id.is_full() => {
            let full = TileId {
                width: TILE_WIDTH as u16,
                ..*id
            };
            let full_path = full.path();
            match reader.read(&full_path) {
                Ok(data) => partial_from_full(id, &data),
                // Neither is there: the partial tile is the one the caller asked for.
                Err(f) if missing(&f) => Err(AuditError::io(
                    format!("{} (nor its full tile {full_path})", describe(id)),
                    e,
                )),
                Err(f) => Err(AuditError::io(
                    format!("{} (gone; its full tile {full_path})", describe(id)),
                    f,
                )),
            }
        }
        read => read.map_err(|e| AuditError::io(describe(id), e)),
    }
}

/// Partial tile `id` (width `W` < 256) cut from `full`, the bytes of its full tile: the first
/// `W` hashes of a hash tile, the first `W` entries of an entry bundle. The tree only grows, so
/// a partial tile is its full tile's prefix (and is checked against a signed root like any
/// tile). A full tile that is not whole (256 hashes, or 256 length-prefixed entries and nothing
/// after them) is refused, not cut.
pub fn partial_from_full(id: &TileId, full: &[u8]) -> Result<Vec<u8>, AuditError> {
    let full_id = TileId {
        width: TILE_WIDTH as u16,
        ..*id
    };
    let broken = |detail: String| AuditError::Integrity {
        location: describe(&full_id),
        detail,
    };
    let width = usize::from(id.width);
    let end = match id.kind {
        TileKind::Hash { .. } => {
            if full.len() as u64 != TILE_WIDTH * 32 {
                return Err(broken(format!(
                    "{} bytes, want {}",
                    full.len(),
                    TILE_WIDTH * 32
                )));
            }
            width * 32
        }
        TileKind::Entries => {
            // Walk the big-endian u16 length prefixes: where entry `W` starts, and whether
            // exactly 256 entries fill the bundle.
            let (mut pos, mut count, mut end) = (0usize, 0usize, 0usize);
            while pos < full.len() {
                let len = full
                    .get(pos..pos + 2)
                    .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                    .ok_or_else(|| broken(format!("truncated length at byte {pos}")))?;
                pos += 2 + len;
                count += 1;
                if count == width {
                    end = pos;
                }
            }
            if pos != full.len() || count as u64 != TILE_WIDTH {
                return Err(broken(format!(
                    "holds {count} entries{}, want {TILE_WIDTH}",
                    if pos != full.len() {
                        " (the last truncated)"
                    } else {
                        ""
                    }
                )));
            }
            end
        }
    };
    Ok(full[..end].to_vec())
}

/// Hash tiles read so far, by (tile level, index).
type TileCache = RefCell<HashMap<(u8, u64), Rc<Vec<u8>>>>;

/// The complete-node hashes of the tree of `size` entries, computed from its hash tiles: a
/// node at tree level `8L + r` is the root of `2^r` consecutive hashes in a level-`L` tile
/// (c2sp.org/tlog-tiles: "the Merkle Tree levels between those expressed by the tile hashes are
/// reconstructed by hashing the leaves"). Each tile is read once and kept.
///
/// The hashes are only as trustworthy as the tiles: check what is computed from them against a
/// signed root (a proof that verifies, a root that matches).
pub struct TileNodes<'a, R: TileReader + ?Sized> {
    /// Where the tiles come from.
    reader: &'a R,
    /// The tree whose tiles are read (it decides the width of each partial tile).
    size: u64,
    /// Tiles read so far, by (tile level, index).
    cache: TileCache,
}

impl<'a, R: TileReader + ?Sized> TileNodes<'a, R> {
    /// Nodes of the tree of `size` entries, read from `reader`.
    pub fn new(reader: &'a R, size: u64) -> Self {
        Self {
            reader,
            size,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// The tree size the tiles are read for.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Hash tile `(level, n)` of this tree, read once.
    fn tile(&self, level: u8, n: u64) -> Result<Rc<Vec<u8>>, AuditError> {
        if let Some(t) = self.cache.borrow().get(&(level, n)) {
            return Ok(t.clone());
        }
        let count = self
            .size
            .checked_shr(u32::from(level) * TILE_HEIGHT)
            .unwrap_or(0);
        let start = n.saturating_mul(TILE_WIDTH);
        let width = count.saturating_sub(start).min(TILE_WIDTH);
        let id = TileId::hash(level, n, width as u16);
        if width == 0 {
            return Err(AuditError::OutOfRange(format!(
                "hash tile {level}/{n} is beyond a tree of {} entries",
                self.size
            )));
        }
        let data = read_tile(self.reader, &id)?;
        if data.len() as u64 != width * 32 {
            return Err(AuditError::Integrity {
                location: describe(&id),
                detail: format!("{} bytes, want {}", data.len(), width * 32),
            });
        }
        let data = Rc::new(data);
        self.cache.borrow_mut().insert((level, n), data.clone());
        Ok(data)
    }
}

impl<R: TileReader + ?Sized> NodeSource for TileNodes<'_, R> {
    type Error = AuditError;

    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        let complete = level < 64
            && index
                .checked_add(1)
                .and_then(|i| i.checked_mul(1u64 << level))
                .is_some_and(|end| end <= self.size);
        if !complete {
            return Err(AuditError::OutOfRange(format!(
                "node level {level} index {index} is not complete in a tree of {} entries",
                self.size
            )));
        }
        let tile_level = (u32::from(level) / TILE_HEIGHT) as u8;
        let r = u32::from(level) % TILE_HEIGHT;
        // The node covers 2^r hashes of its tile level, starting here; they never straddle
        // two tiles because 2^r divides 256.
        let first = index << r;
        let tile = self.tile(tile_level, first / TILE_WIDTH)?;
        let at = (first % TILE_WIDTH) as usize;
        let hashes: Vec<Hash> = tile[at * 32..(at + (1 << r)) * 32]
            .chunks_exact(32)
            .filter_map(|c| Hash::try_from(c).ok())
            .collect();
        Ok(reference_root(&hashes))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::merkle::{Frontier, inclusion_proof, root, verify_inclusion};
    use crate::tile_id::tiles_of_size;
    use std::collections::HashMap;

    /// Tiles in memory, by path; a path not there is NotFound (the unit tests' log).
    pub(crate) struct MapReader(pub(crate) HashMap<String, Vec<u8>>);

    impl TileReader for MapReader {
        fn read(&self, path: &str) -> std::io::Result<Vec<u8>> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, path))
        }
    }

    /// Tiles built the slow way, from the definition in the spec.
    fn tiles_for(leaves: &[Hash]) -> MapReader {
        let size = leaves.len() as u64;
        let mut map = HashMap::new();
        for id in tiles_of_size(size) {
            let crate::tile_id::TileKind::Hash { level } = id.kind else {
                continue;
            };
            let span = 1usize << (8 * u32::from(level));
            let mut bytes = Vec::new();
            for i in 0..usize::from(id.width) {
                let start = (id.index as usize * 256 + i) * span;
                bytes.extend_from_slice(&reference_root(&leaves[start..start + span]));
            }
            map.insert(id.path(), bytes);
        }
        MapReader(map)
    }

    #[test]
    fn nodes_from_tiles_give_the_reference_root_and_proofs() {
        let leaves: Vec<Hash> = (0..70_000u32)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        for size in [1u64, 255, 256, 257, 65_535, 65_536, 65_537, 70_000] {
            let reader = tiles_for(&leaves[..size as usize]);
            let nodes = TileNodes::new(&reader, size);
            let want = reference_root(&leaves[..size as usize]);
            assert_eq!(root(&nodes, size).unwrap(), want, "size {size}");
            assert_eq!(Frontier::load(&nodes, size).unwrap().root(), want);
            for i in [0, size / 2, size - 1] {
                let p: Vec<Hash> = inclusion_proof(&nodes, i, size).unwrap();
                verify_inclusion(i, size, &leaves[i as usize], &p, &want).unwrap();
            }
        }
    }

    /// A log may delete a partial tile once its full tile exists: the reader of an older,
    /// smaller tree then takes the full tile's prefix.
    #[test]
    fn a_missing_partial_tile_is_read_from_its_full_tile() {
        let leaves: Vec<Hash> = (0..70_000u32)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        // Only the tiles of the full tree of 70,000 entries are there.
        let reader = tiles_for(&leaves);
        for size in [1u64, 44, 300, 65_537, 69_888] {
            let nodes = TileNodes::new(&reader, size);
            let want = reference_root(&leaves[..size as usize]);
            assert_eq!(root(&nodes, size).unwrap(), want, "size {size}");
            let i = size - 1;
            let p: Vec<Hash> = inclusion_proof(&nodes, i, size).unwrap();
            verify_inclusion(i, size, &leaves[i as usize], &p, &want).unwrap();
        }
        // A full tile of the wrong length is refused, not cut.
        let mut short = tiles_for(&leaves[..300]);
        short.0.remove("tile/0/001.p/44");
        short.0.insert("tile/0/001".into(), vec![0; 255 * 32]);
        let nodes = TileNodes::new(&short, 300);
        assert!(matches!(
            root(&nodes, 300),
            Err(AuditError::Integrity { .. })
        ));
    }

    /// An entry bundle the log deleted is the first `W` entries of its full bundle; a full
    /// bundle that is not 256 whole entries is refused, not cut; a full tile is never guessed.
    #[test]
    fn a_missing_partial_bundle_is_cut_from_its_full_bundle() {
        let entry = |i: u16| {
            let e = format!("entry {i}");
            let mut b = (e.len() as u16).to_be_bytes().to_vec();
            b.extend_from_slice(e.as_bytes());
            b
        };
        let full: Vec<u8> = (0..256).flat_map(entry).collect();
        let first3: Vec<u8> = (0..3).flat_map(entry).collect();
        let mut reader = MapReader(HashMap::from([(
            "tile/entries/001".to_owned(),
            full.clone(),
        )]));
        let partial = TileId::entries(1, 3);
        assert_eq!(read_tile(&reader, &partial).unwrap(), first3);
        // A partial bundle that is there is read as it is.
        reader.0.insert(partial.path(), b"as served".to_vec());
        assert_eq!(read_tile(&reader, &partial).unwrap(), b"as served");
        reader.0.remove(&partial.path());
        for broken in [
            full[..full.len() - 1].to_vec(),
            (0..255).flat_map(entry).collect(),
            [full.clone(), entry(256)].concat(),
        ] {
            reader.0.insert("tile/entries/001".into(), broken);
            let e = read_tile(&reader, &partial).unwrap_err();
            assert!(matches!(e, AuditError::Integrity { .. }), "{e}");
        }
        reader.0.clear();
        let e = read_tile(&reader, &partial).unwrap_err().to_string();
        assert!(
            e.contains("entry bundle tile/entries/001.p/3 (nor its full tile tile/entries/001)"),
            "{e}"
        );
        assert!(read_tile(&reader, &TileId::entries(1, 256)).is_err());
    }

    #[test]
    fn a_missing_or_short_tile_is_an_error() {
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut reader = tiles_for(&leaves);
        reader.0.remove("tile/0/001.p/44");
        let nodes = TileNodes::new(&reader, 300);
        assert!(root(&nodes, 300).is_err());
        reader.0.insert("tile/0/001.p/44".into(), vec![0; 31]);
        let nodes = TileNodes::new(&reader, 300);
        assert!(matches!(
            root(&nodes, 300),
            Err(AuditError::Integrity { .. })
        ));
        assert!(nodes.node(0, 300).is_err());
    }
}
