//! Which signed checkpoint the log's readers are handed: the log's own latest, or one that
//! others vouch for too (witness cosignatures), kept current by whoever collects them. The
//! tiles API serves it as `checkpoint` and publication uploads it; both follow its changes.

use std::sync::Arc;

use tokio::sync::watch;

use crate::checkpoint::SignedCheckpoint;
use crate::log::AuditLog;

/// A feed of the checkpoint to hand out; clones follow the same source.
#[derive(Debug, Clone)]
pub enum CheckpointFeed {
    /// The log's own latest signed checkpoint ([`AuditLog::feed`]).
    Log(watch::Receiver<Arc<SignedCheckpoint>>),
    /// Checkpoints vouched for by others as well, e.g. the latest one a quorum of witnesses
    /// cosigned (the note then carries their cosignature lines after the log's signature);
    /// `None` until there is one. The sender must never move it back to a smaller size.
    Vouched(watch::Receiver<Option<Arc<SignedCheckpoint>>>),
}

impl CheckpointFeed {
    /// The checkpoint to hand out now (`None`: none is vouched for yet).
    pub fn current(&self) -> Option<Arc<SignedCheckpoint>> {
        match self {
            Self::Log(rx) => Some(rx.borrow().clone()),
            Self::Vouched(rx) => rx.borrow().clone(),
        }
    }

    /// Marks the current checkpoint as seen, so [`CheckpointFeed::changed`] waits for a newer
    /// one.
    pub fn mark_seen(&mut self) {
        match self {
            Self::Log(rx) => {
                rx.borrow_and_update();
            }
            Self::Vouched(rx) => {
                rx.borrow_and_update();
            }
        }
    }

    /// Waits until the checkpoint changes; false when nothing will change any more (the log,
    /// or whoever vouches, is gone).
    pub async fn changed(&mut self) -> bool {
        match self {
            Self::Log(rx) => rx.changed().await.is_ok(),
            Self::Vouched(rx) => rx.changed().await.is_ok(),
        }
    }
}

impl AuditLog {
    /// A feed of this log's own latest signed checkpoint.
    pub fn feed(&self) -> CheckpointFeed {
        CheckpointFeed::Log(self.subscribe())
    }
}
