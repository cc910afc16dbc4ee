//! C2SP tlog-tiles resource names: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`,
//! parsed strictly (one canonical spelling per resource, so caches never hold two copies) and
//! formatted.
//!
//! The rules (c2sp.org/tlog-tiles): `<L>` is a decimal 0–63 without leading zeros; `<N>` is
//! written in zero-padded 3-digit elements, all but the last prefixed with `x`; `.p/<W>` marks a
//! partial tile of width `<W>`, a decimal 1–255 without leading zeros. Full tiles have 256 items.

use crate::error::AuditError;
use crate::tiles::{TILE_WIDTH, index_path};

/// Highest tile level the spec allows.
pub const MAX_TILE_LEVEL: u8 = 63;

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileKind {
    /// Merkle tree hashes at tree level `8 × level`.
    Hash {
        /// The tile level (0 = leaf hashes).
        level: u8,
    },
    /// Entry bundle: big-endian uint16 length-prefixed entries.
    Entries,
}

/// One tile or entry bundle, as named by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Hash tile (and its level) or entry bundle.
    pub kind: TileKind,
    /// `<N>`: the tile's index within its level.
    pub index: u64,
    /// Items in the tile: 256 for a full tile, 1–255 for a partial one.
    pub width: u16,
}

fn bad(path: &str, reason: impl Into<String>) -> AuditError {
    AuditError::BadTilePath {
        path: path.chars().take(200).collect(),
        reason: reason.into(),
    }
}

/// Why a text is not a canonical decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Empty, or something other than ASCII digits (a sign, a space).
    NotDigits,
    /// More than one digit, the first a zero.
    LeadingZero,
    /// More than a `u64` holds.
    TooLarge,
}

impl std::fmt::Display for DecimalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecimalError::NotDigits => "is not an ASCII decimal (digits only, no sign)",
            DecimalError::LeadingZero => "has a leading zero",
            DecimalError::TooLarge => "does not fit in 64 bits",
        })
    }
}

/// A number as every C2SP format writes one (checkpoint sizes, tile paths, a tlog-proof's
/// index, the witness's `old` line): an ASCII decimal without sign or leading zeroes, `0` itself
/// allowed, so each number has one spelling.
pub fn canonical_decimal(s: &str) -> Result<u64, DecimalError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::NotDigits);
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(DecimalError::LeadingZero);
    }
    s.parse().map_err(|_| DecimalError::TooLarge)
}

/// Exactly three ASCII digits.
fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl TileId {
    /// A hash tile.
    pub fn hash(level: u8, index: u64, width: u16) -> Self {
        Self {
            kind: TileKind::Hash { level },
            index,
            width,
        }
    }

    /// An entry bundle.
    pub fn entries(index: u64, width: u16) -> Self {
        Self {
            kind: TileKind::Entries,
            index,
            width,
        }
    }

    /// True for a full (256-item) tile, whose bytes never change.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The resource path relative to the log's prefix, e.g. `tile/0/x001/234.p/7`.
    pub fn path(&self) -> String {
        let dir = match self.kind {
            TileKind::Hash { level } => format!("tile/{level}"),
            TileKind::Entries => "tile/entries".to_owned(),
        };
        if self.is_full() {
            format!("{dir}/{}", index_path(self.index))
        } else {
            format!("{dir}/{}.p/{}", index_path(self.index), self.width)
        }
    }

    /// Parses a path relative to the log's prefix (`tile/…`, no leading `/`). Every string is
    /// either parsed or refused with the rule it breaks; only the canonical spelling is
    /// accepted.
    pub fn parse(path: &str) -> Result<Self, AuditError> {
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad(path, "must start with tile/"))?;
        let (kind_s, rest) = rest
            .split_once('/')
            .ok_or_else(|| bad(path, "missing the tile index"))?;
        let kind = if kind_s == "entries" {
            TileKind::Entries
        } else {
            let level = canonical_decimal(kind_s).ok()
                .and_then(|l| u8::try_from(l).ok())
                .filter(|l| *l <= MAX_TILE_LEVEL)
                .ok_or_else(|| {
                    bad(
                        path,
                        format!(
                            "level {kind_s:?} must be `entries` or a decimal 0-63 without leading zeros"
                        ),
                    )
                })?;
            TileKind::Hash { level }
        };
        let mut elements: Vec<&str> = rest.split('/').collect();
        // `.p/<W>`: the last index element ends in `.p` and one more element follows.
        let mut width = TILE_WIDTH as u16;
        if elements.len() >= 2
            && let Some(stem) = elements[elements.len() - 2].strip_suffix(".p")
        {
            let w = elements[elements.len() - 1];
            width = canonical_decimal(w)
                .ok()
                .filter(|w| (1..TILE_WIDTH).contains(w))
                .and_then(|w| u16::try_from(w).ok())
                .ok_or_else(|| {
                    bad(
                        path,
                        format!(
                            "partial width {w:?} must be a decimal 1-255 without leading zeros"
                        ),
                    )
                })?;
            let at = elements.len() - 2;
            elements[at] = stem;
            elements.pop();
        }
        let (last, groups) = elements
            .split_last()
            .ok_or_else(|| bad(path, "missing the tile index"))?;
        let mut index: u64 = 0;
        for (i, g) in groups.iter().enumerate() {
            let digits = g.strip_prefix('x').and_then(three_digits).ok_or_else(|| {
                bad(
                    path,
                    format!("index element {g:?} must be x followed by 3 digits"),
                )
            })?;
            if i == 0 && digits == 0 {
                return Err(bad(path, "index has a leading x000 element"));
            }
            index = index
                .checked_mul(1000)
                .and_then(|v| v.checked_add(digits))
                .ok_or_else(|| bad(path, "index does not fit in 64 bits"))?;
        }
        let digits = three_digits(last).ok_or_else(|| {
            bad(
                path,
                format!("last index element {last:?} must be exactly 3 digits"),
            )
        })?;
        index = index
            .checked_mul(1000)
            .and_then(|v| v.checked_add(digits))
            .ok_or_else(|| bad(path, "index does not fit in 64 bits"))?;
        Ok(Self { kind, index, width })
    }
}

impl std::fmt::Display for TileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path())
    }
}

/// The tiles and bundles a tree of `size` entries consists of: every bundle, then every hash
/// tile level by level; full tiles first within a level, then the partial one.
pub fn tiles_of_size(size: u64) -> impl Iterator<Item = TileId> {
    tiles_between(0, size)
}

/// The tiles and bundles a tree of `new` entries has that a tree of `old` entries does not
/// (new full tiles, tiles that were partial and grew, and the new partial tiles): what a mirror
/// that already holds `old` must add. Empty when `new <= old`.
pub fn tiles_between(old: u64, new: u64) -> impl Iterator<Item = TileId> {
    let levels = (0u32..8).filter_map(move |l| {
        let shift = l * crate::tiles::TILE_HEIGHT;
        let (o, n) = (old >> shift, new >> shift);
        (n > o).then_some((l, o, n))
    });
    let bundles = (new > old).then_some((None, old, new));
    bundles
        .into_iter()
        .chain(levels.map(|(l, o, n)| (Some(l as u8), o, n)))
        .flat_map(|(level, o, n)| {
            let first = o / TILE_WIDTH;
            let full_end = n / TILE_WIDTH;
            let partial = (n % TILE_WIDTH) as u16;
            let make = move |index: u64, width: u16| match level {
                Some(level) => TileId::hash(level, index, width),
                None => TileId::entries(index, width),
            };
            (first..full_end)
                .map(move |i| make(i, TILE_WIDTH as u16))
                .chain((partial > 0).then(|| make(full_end, partial)))
        })
}

/// The partial tiles and bundles that checkpoints of sizes in `after + 1 .. latest` have and a
/// tree of `latest` entries still needs served: c2sp.org/tlog-tiles says logs "MUST serve
/// partial tiles corresponding to tree sizes for which a checkpoint was produced, but MAY delete
/// any partial tile once the corresponding full tile is available". So only partials of the
/// tiles that are still partial at `latest` count, and those of `latest` itself are left out
/// ([`tiles_between`] lists them). `any_checkpoint(lo, hi)` says whether a checkpoint of a size
/// in `lo..hi` was produced; it is asked at most 254 times a level (once per narrower width of
/// each still-partial tile), however many checkpoints there were.
pub fn checkpointed_partials<E>(
    after: u64,
    latest: u64,
    mut any_checkpoint: impl FnMut(u64, u64) -> Result<bool, E>,
) -> Result<Vec<TileId>, E> {
    let mut out = Vec::new();
    // Entry bundles first (they follow the leaves: level 0's widths), then hash tile levels.
    let kinds = std::iter::once((None, 0u32))
        .chain((0u32..8).map(|l| (Some(l as u8), l * crate::tiles::TILE_HEIGHT)));
    for (level, shift) in kinds {
        let count = latest >> shift;
        if count == 0 {
            break;
        }
        let index = count / TILE_WIDTH;
        let current = count % TILE_WIDTH;
        // Tree sizes whose items at this level fall in the tile still partial at `latest`.
        let tile_start = (index * TILE_WIDTH) << shift;
        for width in 1..current {
            let lo = (tile_start + (width << shift)).max(after.saturating_add(1));
            let hi = (tile_start + ((width + 1) << shift)).min(latest);
            if lo < hi && any_checkpoint(lo, hi)? {
                let width = width as u16;
                out.push(match level {
                    Some(level) => TileId::hash(level, index, width),
                    None => TileId::entries(index, width),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_spec_examples() {
        let t = TileId::parse("tile/1/x001/x234/067").unwrap();
        assert_eq!(t, TileId::hash(1, 1_234_067, 256));
        let t = TileId::parse("tile/entries/x001/234.p/7").unwrap();
        assert_eq!(t, TileId::entries(1234, 7));
        assert_eq!(t.path(), "tile/entries/x001/234.p/7");
        assert_eq!(
            TileId::parse("tile/0/000").unwrap(),
            TileId::hash(0, 0, 256)
        );
        assert_eq!(
            TileId::parse("tile/63/000.p/255").unwrap(),
            TileId::hash(63, 0, 255)
        );
    }

    #[test]
    fn refuses_non_canonical_spellings() {
        for p in [
            "",
            "tile",
            "tile/",
            "tile/0",
            "tile/0/",
            "/tile/0/000",
            "tile/00/000",
            "tile/64/000",
            "tile/-1/000",
            "tile/0/0",
            "tile/0/0000",
            "tile/0/x000/001",
            "tile/0/001/002",
            "tile/0/x1/002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/007",
            "tile/0/000.p/",
            "tile/0/000.p",
            "tile/0/000/",
            "tile/0/000.p/1/2",
            "tile/entry/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
        ] {
            assert!(TileId::parse(p).is_err(), "{p:?} was accepted");
        }
        // The largest index that fits.
        assert_eq!(
            TileId::parse("tile/0/x018/x446/x744/x073/x709/x551/615")
                .unwrap()
                .index,
            u64::MAX
        );
    }

    #[test]
    fn tiles_between_lists_what_changed() {
        let all: Vec<String> = tiles_of_size(257).map(|t| t.path()).collect();
        assert_eq!(
            all,
            [
                "tile/entries/000",
                "tile/entries/001.p/1",
                "tile/0/000",
                "tile/0/001.p/1",
                "tile/1/000.p/1"
            ]
        );
        let delta: Vec<String> = tiles_between(257, 300).map(|t| t.path()).collect();
        assert_eq!(delta, ["tile/entries/001.p/44", "tile/0/001.p/44"]);
        assert_eq!(tiles_between(300, 300).count(), 0);
        assert_eq!(tiles_between(300, 10).count(), 0);
        // 70,000 entries: the spec's own example (plus the bundles).
        let t: Vec<TileId> = tiles_of_size(70_000).collect();
        let hash = |l| {
            t.iter()
                .filter(|x| x.kind == TileKind::Hash { level: l })
                .collect::<Vec<_>>()
        };
        assert_eq!(hash(0).len(), 274);
        assert_eq!(hash(0).last().unwrap().width, 112);
        assert_eq!(hash(1).len(), 2);
        assert_eq!(hash(1).last().unwrap().width, 17);
        assert_eq!(hash(2).len(), 1);
        assert_eq!(hash(2)[0].width, 1);
    }

    /// What [`checkpointed_partials`] computes, the slow way: every partial tile of every
    /// checkpointed size, less those whose full tile a tree of `latest` has and those `latest`
    /// has itself.
    fn partials_brute_force(sizes: &[u64], after: u64, latest: u64) -> Vec<TileId> {
        let at_latest: std::collections::BTreeSet<TileId> = tiles_of_size(latest).collect();
        let mut out: Vec<TileId> = sizes
            .iter()
            .filter(|s| **s > after && **s < latest)
            .flat_map(|s| tiles_of_size(*s))
            .filter(|t| t.width < 256 && !at_latest.contains(t))
            .filter(|t| !at_latest.contains(&TileId { width: 256, ..*t }))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn partials_of(sizes: &[u64], after: u64, latest: u64) -> Vec<TileId> {
        let mut asked = 0;
        let mut out = checkpointed_partials(after, latest, |lo, hi| {
            asked += 1;
            Ok::<_, ()>(sizes.iter().any(|s| (lo..hi).contains(s)))
        })
        .unwrap();
        assert!(asked <= 9 * 254, "{asked} questions");
        out.sort();
        out
    }

    #[test]
    fn checkpointed_partials_are_those_a_reader_of_an_older_checkpoint_needs() {
        let paths = |sizes: &[u64], after, latest| -> Vec<String> {
            partials_of(sizes, after, latest)
                .iter()
                .map(TileId::path)
                .collect()
        };
        // 3 and 10 are in tile 0, full at 300: a reader takes their partials from it.
        assert_eq!(
            paths(&[3, 10, 260, 270, 300], 0, 300),
            [
                "tile/0/001.p/4",
                "tile/0/001.p/14",
                "tile/entries/001.p/4",
                "tile/entries/001.p/14"
            ]
        );
        // What a publisher that already holds 265 entries still uploads.
        assert_eq!(
            paths(&[3, 10, 260, 270, 300], 265, 300),
            ["tile/0/001.p/14", "tile/entries/001.p/14"]
        );
        // 773 is in leaf tile 3, full at 1282, but its level-1 partial (3 hashes) is not.
        assert_eq!(paths(&[773, 1282], 0, 1282), ["tile/1/000.p/3"]);
        // At 256 the level-1 tile holds one hash; at 512 it holds two, still partial.
        assert_eq!(paths(&[256, 512], 0, 512), ["tile/1/000.p/1"]);
        assert!(paths(&[100, 200], 0, 256).is_empty());
        assert!(paths(&[], 0, 0).is_empty());
    }

    proptest! {
        #[test]
        fn checkpointed_partials_match_the_brute_force(
            mut sizes in proptest::collection::vec(1u64..200_000, 0..40),
            after in 0u64..200_000,
            latest in 1u64..200_000,
        ) {
            // Sizes close to `latest` too, so the last tiles of every level are exercised.
            sizes.extend(sizes.clone().iter().map(|s| latest.saturating_sub(s % 600)));
            // The size already published is never uploaded again.
            sizes.push(after);
            sizes.sort();
            sizes.dedup();
            prop_assert_eq!(
                partials_of(&sizes, after, latest),
                partials_brute_force(&sizes, after, latest)
            );
        }

        #[test]
        fn any_string_parses_or_is_refused(s in ".{0,80}") {
            let _ = TileId::parse(&s);
        }

        #[test]
        fn path_like_strings_parse_or_are_refused(
            s in "tile/(entries|[0-9]{1,3})(/x?[0-9]{1,4}){1,8}(\\.p/[0-9]{1,4})?/?"
        ) {
            if let Ok(t) = TileId::parse(&s) {
                prop_assert_eq!(t.path(), s);
            }
        }

        #[test]
        fn formatted_paths_round_trip(
            level in proptest::option::of(0u8..=63),
            index in any::<u64>(),
            width in 1u16..=256,
        ) {
            let t = match level {
                Some(l) => TileId::hash(l, index, width),
                None => TileId::entries(index, width),
            };
            prop_assert_eq!(TileId::parse(&t.path()).unwrap(), t);
        }
    }
}
