//! [`RecordTree`]: a sled tree of JSON records, each sealed with the [`RecordMac`] under the
//! tree's name and written durably through one [`GroupFlush`]. The stores of the workflow,
//! day-two and invitation crates are this plus their own keys.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{GroupFlush, RecordMac};
use crate::error::CoreError;

/// A sled tree of MACed JSON records.
#[derive(Clone)]
pub struct RecordTree {
    /// The caller's tree (e.g. `db.open_tree("credentials")`).
    tree: sled::Tree,
    /// The name records are MACed under (the tree's name in the server's database), so a record
    /// moved to another tree fails its MAC.
    name: &'static str,
    /// Every record carries a MAC, checked when read.
    mac: RecordMac,
    /// Concurrent writers share durable flushes.
    flush: Arc<GroupFlush>,
}

impl std::fmt::Debug for RecordTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordTree({})", self.name)
    }
}

impl RecordTree {
    /// Wraps `tree`, whose records are MACed with `mac` under `name`.
    pub fn new(tree: sled::Tree, name: &'static str, mac: RecordMac) -> Self {
        Self {
            tree,
            name,
            mac,
            flush: Arc::default(),
        }
    }

    /// The tree itself, for reads by range or by key alone.
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// A stored value read under `key`, checked against its MAC, decoded.
    pub fn decode<T: DeserializeOwned>(&self, key: &[u8], stored: &[u8]) -> Result<T, CoreError> {
        Ok(serde_json::from_slice(
            self.mac.open(self.name, key, stored)?,
        )?)
    }

    /// Writes `value` under `key` without waiting for the disk (the next [`Self::flush`], or
    /// sled's periodic one, carries it).
    pub fn insert<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), CoreError> {
        let bytes = self.mac.seal(self.name, key, &serde_json::to_vec(value)?);
        self.tree.insert(key, bytes)?;
        Ok(())
    }

    /// Writes `value` under `key` and waits until it is on disk.
    pub async fn put<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), CoreError> {
        self.insert(key, value)?;
        self.flush().await
    }

    /// The record under `key`, if any.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, CoreError> {
        match self.tree.get(key)? {
            Some(v) => Ok(Some(self.decode(key, &v)?)),
            None => Ok(None),
        }
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, CoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                self.decode(&k, &v)
            })
            .collect()
    }

    /// Deletes `key` and waits until that is on disk.
    pub async fn remove(&self, key: &[u8]) -> Result<(), CoreError> {
        self.tree.remove(key)?;
        self.flush().await
    }

    /// Waits until everything written to the tree is on disk ([`GroupFlush`]).
    pub async fn flush(&self) -> Result<(), CoreError> {
        self.flush.flush(&self.tree).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_round_trip_and_a_moved_record_fails_its_mac() -> Result<(), CoreError> {
        let db = sled::Config::new().temporary(true).open()?;
        let mac = crate::SealingKey::new([1; 32]).record_mac();
        let t = RecordTree::new(db.open_tree("t")?, "t", mac.clone());
        t.put(b"a/1", &1u32).await?;
        t.put(b"a/2", &2u32).await?;
        t.insert(b"b/1", &3u32)?;
        t.flush().await?;
        assert_eq!(t.get::<u32>(b"a/2")?, Some(2));
        assert_eq!(t.get::<u32>(b"a/3")?, None);
        assert_eq!(t.scan::<u32>(b"a/")?, vec![1, 2]);
        t.remove(b"a/1").await?;
        assert_eq!(t.scan::<u32>(b"a/")?, vec![2]);
        // The same bytes under another tree name are refused.
        let other = RecordTree::new(db.open_tree("t")?, "u", mac);
        let err = other.get::<u32>(b"a/2").unwrap_err();
        assert!(err.to_string().contains("fails its MAC"), "{err}");
        Ok(())
    }
}
