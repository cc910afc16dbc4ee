//! The credential store: one sled tree of JSON records, each write flushed to disk before it is
//! reported (sled 0.34: plain inserts, never `apply_batch` or transactions, which take a
//! process-wide lock; the blocking `flush()` runs on tokio's blocking pool, never
//! `flush_async`).
//!
//! Keys: `r/<tenant>/<client id>` registrations, `rot/<registration id>/<service id>`
//! rotations in flight, `adm/<tenant>` admin sessions (tenant and client ids lower-cased).

use serde::Serialize;
use serde::de::DeserializeOwned;

use onboard_core::store::{RecordMac, RecordTree};

use crate::error::CredentialsError;

/// The name the tree's records are MACed under (the server opens it as `credentials`).
const TREE: &str = "credentials";

/// The records, over the caller's sled tree.
#[derive(Clone)]
pub struct Store {
    /// The tree (e.g. `db.open_tree("credentials")`): MACed records, durable group flushes.
    records: RecordTree,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

/// The key of a registration.
pub fn registration_key(tenant_id: &str, client_id: &str) -> String {
    format!(
        "r/{}/{}",
        tenant_id.to_ascii_lowercase(),
        client_id.to_ascii_lowercase()
    )
}

/// The key of a rotation of `service_id` on registration `registration_id`.
pub fn rotation_key(registration_id: &str, service_id: &str) -> String {
    format!("rot/{registration_id}/{service_id}")
}

/// The key of a tenant's admin session.
pub fn session_key(tenant_id: &str) -> String {
    format!("adm/{}", tenant_id.to_ascii_lowercase())
}

impl Store {
    /// Wraps the caller's tree; records are MACed with `mac`.
    pub fn new(tree: sled::Tree, mac: RecordMac) -> Self {
        Self {
            records: RecordTree::new(tree, TREE, mac),
        }
    }

    /// Writes `value` under `key` and waits until it is on disk (sled's flush, then an
    /// `fdatasync` of the state store's data files: `onboard_core::store`).
    pub async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), CredentialsError> {
        Ok(self.records.put(key.as_bytes(), value).await?)
    }

    /// Reads the record under `key`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CredentialsError> {
        Ok(self.records.get(key.as_bytes())?)
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, CredentialsError> {
        Ok(self.records.scan(prefix.as_bytes())?)
    }

    /// Deletes `key` and waits until that is on disk.
    pub async fn remove(&self, key: &str) -> Result<(), CredentialsError> {
        Ok(self.records.remove(key.as_bytes()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_scan_remove() -> Result<(), Box<dyn std::error::Error>> {
        let db = sled::Config::new().temporary(true).open()?;
        let s = Store::new(
            db.open_tree("t")?,
            onboard_core::SealingKey::new([1; 32]).record_mac(),
        );
        s.put("a/1", &1u32).await?;
        s.put("a/2", &2u32).await?;
        s.put("b/1", &3u32).await?;
        assert_eq!(s.get::<u32>("a/2")?, Some(2));
        assert_eq!(s.scan::<u32>("a/")?, vec![1, 2]);
        s.remove("a/1").await?;
        assert_eq!(s.scan::<u32>("a/")?, vec![2]);
        assert_eq!(registration_key("T", "C"), "r/t/c");
        Ok(())
    }
}
