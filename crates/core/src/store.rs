//! The one durable flush of the state store (sled).
//!
//! sled 0.34 traps, both seen as hangs under CI load: `Tree::apply_batch` and transactions take
//! a process-wide lock that every sled database in the process then goes through (with sled's
//! log flusher this deadlocked), and `flush_async` runs on sled's small IO pool, which many
//! concurrent callers can fill with flushes that wait for writes needing that same pool. So
//! nothing uses those; a durable write is an insert followed by [`flush_durably`], a blocking
//! `flush()` on tokio's blocking pool. The tidy test keeps it that way.

use crate::error::CoreError;

/// Flushes the database `tree` belongs to (sled flushes the whole database, every tree) and
/// returns once everything written before the call is on disk.
pub async fn flush_durably(tree: &sled::Tree) -> Result<(), CoreError> {
    let tree = tree.clone();
    match tokio::task::spawn_blocking(move || tree.flush()).await {
        Ok(r) => r.map(|_| ()).map_err(CoreError::from),
        Err(e) => Err(CoreError::Store(format!("flush task failed: {e}"))),
    }
}
