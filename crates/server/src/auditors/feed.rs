//! The checkpoint auditors are handed when witnesses are configured: the latest one at least
//! `quorum` witnesses cosigned, as the submitter collected it (the log's signed note followed by
//! their cosignature lines). It never moves back to a smaller size, so a follower never sees
//! the log rewind; until a checkpoint reaches the quorum there is none.

use std::sync::Arc;

use audit_log::{CheckpointFeed, SignedCheckpoint};
use onboard_core::Shutdown;
use tokio::sync::watch;
use witness::{CosignedCheckpoint, Submitter};

/// The cosigned checkpoint if enough witnesses signed it.
fn with_quorum(view: Option<&Arc<CosignedCheckpoint>>, quorum: usize) -> Option<SignedCheckpoint> {
    view.filter(|c| c.cosigners.len() >= quorum)
        .map(|c| SignedCheckpoint {
            checkpoint: c.checkpoint.clone(),
            note: c.note.clone(),
        })
}

/// Follows `submitter` on a task tracked by `shutdown` and returns the feed of checkpoints a
/// quorum cosigned.
pub fn quorum_feed(submitter: &Submitter, quorum: usize, shutdown: &Shutdown) -> CheckpointFeed {
    let mut views = submitter.subscribe();
    let first = with_quorum(views.borrow_and_update().as_ref(), quorum).map(Arc::new);
    if let Some(f) = &first {
        witnessed(f.checkpoint.size);
    }
    let (tx, rx) = watch::channel(first);
    let stop = shutdown.clone();
    let _ = shutdown.spawn(async move {
        loop {
            tokio::select! {
                () = stop.recv() => break,
                changed = views.changed() => if changed.is_err() {
                    break;
                },
            }
            let Some(next) = with_quorum(views.borrow_and_update().as_ref(), quorum) else {
                continue;
            };
            tx.send_if_modified(|cur| {
                let newer = match cur {
                    None => true,
                    // The same size with more cosignatures, or a larger size.
                    Some(c) => {
                        next.checkpoint.size > c.checkpoint.size
                            || (next.checkpoint == c.checkpoint && next.note != c.note)
                    }
                };
                if newer {
                    witnessed(next.checkpoint.size);
                    *cur = Some(Arc::new(next));
                }
                newer
            });
        }
    });
    CheckpointFeed::Vouched(rx)
}

/// The size of the latest checkpoint a quorum of witnesses cosigned, as a gauge (the witness
/// lag is `onboard_audit_entries` minus it).
fn witnessed(size: u64) {
    metrics::gauge!("onboard_audit_witnessed_entries").set(size as f64);
}
