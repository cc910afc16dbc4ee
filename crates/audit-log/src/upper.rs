//! The upper levels of the tree, kept in memory so that a proof costs few sled reads.
//!
//! A proof for a leaf needs one sibling per level. With levels `from..` in memory only the
//! siblings below `from` come from sled. The log's default is `from = 0`: every node in memory,
//! two hashes per entry (64 MB per million entries), and no sled read in a proof.

use crate::error::AuditError;
use crate::hash::Hash;
use crate::merkle::NodeSource;
use crate::store::Store;

/// Complete-node hashes at levels `from` and above, each level in index order.
#[derive(Debug, Default)]
pub(crate) struct UpperNodes {
    /// The lowest level held.
    from: u8,
    /// `levels[l]` holds level `from + l`, index 0 first.
    levels: Vec<Vec<Hash>>,
}

impl UpperNodes {
    pub(crate) fn new(from: u8) -> Self {
        Self {
            from,
            levels: Vec::new(),
        }
    }

    /// Records a node the frontier just created (nodes arrive in index order per level).
    pub(crate) fn record(&mut self, level: u8, index: u64, hash: &Hash) {
        if level < self.from {
            return;
        }
        let l = usize::from(level - self.from);
        if self.levels.len() <= l {
            self.levels.resize_with(l + 1, Vec::new);
        }
        debug_assert_eq!(self.levels[l].len() as u64, index);
        self.levels[l].push(*hash);
    }

    /// Reads the upper levels of a tree of `size` leaves from the store.
    pub(crate) fn load(store: &Store, size: u64, from: u8) -> Result<Self, AuditError> {
        let mut upper = Self::new(from);
        for level in from..64 {
            let count = size >> level;
            if count == 0 {
                break;
            }
            for index in 0..count {
                upper.record(level, index, &store.node(level, index)?);
            }
        }
        Ok(upper)
    }

    fn get(&self, level: u8, index: u64) -> Option<Hash> {
        let l = usize::from(level.checked_sub(self.from)?);
        let i = usize::try_from(index).ok()?;
        self.levels.get(l)?.get(i).copied()
    }
}

/// Nodes from memory where held, else from sled.
pub(crate) struct View<'a> {
    /// Lower levels.
    pub(crate) store: &'a Store,
    /// Upper levels.
    pub(crate) upper: &'a UpperNodes,
}

impl NodeSource for View<'_> {
    type Error = AuditError;

    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        match self.upper.get(level, index) {
            Some(h) => Ok(h),
            None => self.store.node(level, index),
        }
    }
}
