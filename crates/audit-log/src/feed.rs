//! Which signed checkpoint the log's readers are handed: the log's own latest, or one that
//! others vouch for too (witness cosignatures), kept current by whoever collects them. The
//! tiles API serves it as `checkpoint` and publication uploads it; both follow its changes
//! through a [`CheckpointToShow`], which says which one to hand out now.

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

/// The checkpoint to show the log's readers now, one rule for all who show it (the tiles API's
/// `checkpoint`, the checkpoint publication uploads): the feed's, or the log's own latest while
/// the feed has none (tlog-tiles: the checkpoint "MUST be served"; signed by the log alone, a
/// reader that requires the witnesses' cosignatures refuses it, as it found none before, and
/// any other reader reads the log). Once the feed has one, only the feed's are shown, never an
/// own checkpoint again; but never a smaller one than was shown before either, so a reader
/// never sees the log rewind: an own checkpoint shown last stays until the feed's is at least
/// as large (about one witness round, as the feed's lags the log's). Clones follow the same
/// sources.
#[derive(Debug, Clone)]
pub struct CheckpointToShow {
    /// The checkpoints to show once there is one (the log's own for [`CheckpointFeed::Log`]).
    feed: CheckpointFeed,
    /// The log's own latest signed checkpoint, shown while `feed` has none.
    own: watch::Receiver<Arc<SignedCheckpoint>>,
}

impl CheckpointToShow {
    /// The checkpoints of `feed` (`log.feed()` for the log's own) for readers of `log`; `feed`
    /// must hand out checkpoints of `log`.
    pub fn new(log: &AuditLog, feed: CheckpointFeed) -> Self {
        Self {
            feed,
            own: log.subscribe(),
        }
    }

    /// The checkpoint to show now, before the rule against rewinding: the feed's, or the log's
    /// own latest while the feed has none.
    fn latest(&self) -> Arc<SignedCheckpoint> {
        self.feed
            .current()
            .unwrap_or_else(|| self.own.borrow().clone())
    }

    /// The checkpoint to show readers who were last shown `*shown` (`None`: nothing yet), kept
    /// there as the one shown last: the latest, unless it is smaller than `*shown`, which is
    /// then shown again.
    pub fn next(&self, shown: &mut Option<Arc<SignedCheckpoint>>) -> Arc<SignedCheckpoint> {
        let latest = self.latest();
        match shown {
            Some(kept) if rewinds(&latest, kept.checkpoint.size) => kept.clone(),
            _ => {
                *shown = Some(latest.clone());
                latest
            }
        }
    }

    /// The checkpoint to show readers who hold one of `held` entries (`None`: none yet), e.g.
    /// what a bucket holds; `None` when they are to keep theirs (the latest is smaller). One of
    /// the same size is returned: its note may carry more cosignatures.
    pub fn instead_of(&self, held: Option<u64>) -> Option<Arc<SignedCheckpoint>> {
        let latest = self.latest();
        (!held.is_some_and(|h| rewinds(&latest, h))).then_some(latest)
    }

    /// Marks both sources as seen, so [`CheckpointToShow::changed`] waits for something new.
    pub fn mark_seen(&mut self) {
        self.feed.mark_seen();
        self.own.borrow_and_update();
    }

    /// Waits until the checkpoint to show may have changed: the feed's changed, or, while the
    /// feed has none, the log's own. False when nothing will change any more (the log, or
    /// whoever vouches, is gone).
    pub async fn changed(&mut self) -> bool {
        if self.feed.current().is_some() {
            return self.feed.changed().await;
        }
        tokio::select! {
            changed = self.feed.changed() => changed,
            changed = self.own.changed() => changed.is_ok(),
        }
    }
}

/// Whether showing `next` to readers shown a checkpoint of `shown` entries would rewind the
/// log before their eyes.
fn rewinds(next: &SignedCheckpoint, shown: u64) -> bool {
    next.checkpoint.size < shown
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::hash::leaf_hash;
    use crate::note::NoteSigner;

    const ORIGIN: &str = "log.example/feed";

    /// The log's own checkpoints and those a witness cosigned too (their notes differ), on
    /// watch channels standing in for the log and a quorum feed.
    struct Sources {
        log: NoteSigner,
        witness: NoteSigner,
        own: watch::Sender<Arc<SignedCheckpoint>>,
        vouched: watch::Sender<Option<Arc<SignedCheckpoint>>>,
    }

    impl Sources {
        /// Sources whose log is at `size` and whose feed has none yet, and what they show.
        fn at(size: u64) -> (Self, CheckpointToShow) {
            let log = NoteSigner::generate(ORIGIN).unwrap();
            let witness = NoteSigner::generate("w.example").unwrap();
            let (own, own_rx) = watch::channel(sign(&[&log], size));
            let (vouched, vouched_rx) = watch::channel(None);
            let show = CheckpointToShow {
                feed: CheckpointFeed::Vouched(vouched_rx),
                own: own_rx,
            };
            let sources = Self {
                log,
                witness,
                own,
                vouched,
            };
            (sources, show)
        }

        /// The log signs a checkpoint of `size` entries; returns it.
        fn grow(&self, size: u64) -> Arc<SignedCheckpoint> {
            let cp = sign(&[&self.log], size);
            self.own.send_replace(cp.clone());
            cp
        }

        /// The feed hands out the checkpoint of `size` entries, cosigned; returns it.
        fn vouch(&self, size: u64) -> Arc<SignedCheckpoint> {
            let cp = sign(&[&self.log, &self.witness], size);
            self.vouched.send_replace(Some(cp.clone()));
            cp
        }
    }

    fn sign(signers: &[&NoteSigner], size: u64) -> Arc<SignedCheckpoint> {
        let checkpoint = Checkpoint {
            origin: ORIGIN.to_owned(),
            size,
            root: leaf_hash(&size.to_be_bytes()),
        };
        Arc::new(checkpoint.sign(signers).unwrap())
    }

    #[test]
    fn the_own_checkpoint_is_shown_until_a_cosigned_one_as_large_and_never_after() {
        let (s, show) = Sources::at(10);
        let own_10 = s.own.borrow().clone();
        let mut shown = None;
        // No cosigned checkpoint yet: the log's own, as it grows.
        assert_eq!(show.next(&mut shown), own_10);
        assert_eq!(show.instead_of(None), Some(own_10));
        let own_20 = s.grow(20);
        assert_eq!(show.next(&mut shown), own_20);
        assert_eq!(show.instead_of(Some(10)), Some(own_20.clone()));

        // The first cosigned one lags the own one shown: that one stays, no later own one is
        // shown, and a holder of 20 keeps it.
        let cosigned_10 = s.vouch(10);
        s.grow(30);
        assert_eq!(show.next(&mut shown), own_20);
        assert_eq!(show.instead_of(Some(20)), None);
        // Readers that were shown nothing get the cosigned one, however large the log.
        assert_eq!(show.next(&mut None), cosigned_10);
        assert_eq!(show.instead_of(None), Some(cosigned_10));

        // The cosigned one reaches the size shown: it replaces it, as its note does at the same
        // size (more cosignatures).
        let cosigned_20 = s.vouch(20);
        assert_eq!(show.next(&mut shown), cosigned_20);
        assert_eq!(show.instead_of(Some(20)), Some(cosigned_20));
        let cosigned_30 = s.vouch(30);
        assert_eq!(show.next(&mut shown), cosigned_30);

        // The log grows past the cosigned one: never the own one again.
        s.grow(40);
        assert_eq!(show.next(&mut shown), cosigned_30);
        assert_eq!(show.instead_of(Some(30)), Some(cosigned_30.clone()));
        assert_eq!(shown, Some(cosigned_30));
    }

    #[test]
    fn never_a_smaller_tree_than_shown_before() {
        let (s, show) = Sources::at(10);
        let mut shown = None;
        let mut largest = 0;
        // The log and the feed interleaved, the feed lagging by up to two checkpoints.
        for size in (10..200).step_by(10) {
            s.grow(size);
            if size >= 30 && size % 20 == 0 {
                s.vouch(size - 20);
            }
            for cp in [show.next(&mut shown), show.next(&mut shown)] {
                assert!(cp.checkpoint.size >= largest, "{largest} then {cp:?}");
                largest = cp.checkpoint.size;
            }
            let held = Some(largest);
            if let Some(cp) = show.instead_of(held) {
                assert!(cp.checkpoint.size >= largest, "{largest} then {cp:?}");
            }
        }
        // The own 30 was shown until the feed reached 40; the feed's last, 160, is shown now.
        assert_eq!(largest, 160);
        assert_eq!(shown, s.vouched.borrow().clone());
    }

    #[test]
    fn the_log_s_own_feed_shows_its_latest() {
        let (s, mut show) = Sources::at(10);
        show.feed = CheckpointFeed::Log(s.own.subscribe());
        let mut shown = None;
        assert_eq!(show.next(&mut shown), s.own.borrow().clone());
        let own_20 = s.grow(20);
        assert_eq!(show.next(&mut shown), own_20);
        assert_eq!(show.instead_of(Some(20)), Some(own_20));
    }

    /// Whether `show` reports a change without waiting (the clock is paused: the timeout
    /// elapses as soon as nothing else can run).
    async fn reports_change(show: &mut CheckpointToShow) -> Option<bool> {
        tokio::time::timeout(Duration::from_millis(10), show.changed())
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn changes_of_the_own_checkpoint_count_only_while_the_feed_has_none() {
        let (s, mut show) = Sources::at(10);
        show.mark_seen();
        assert_eq!(reports_change(&mut show).await, None);
        s.grow(20);
        assert_eq!(reports_change(&mut show).await, Some(true));
        show.mark_seen();
        s.vouch(10);
        assert_eq!(reports_change(&mut show).await, Some(true));
        show.mark_seen();
        // The feed has one: the log's own checkpoints no longer matter.
        s.grow(30);
        assert_eq!(reports_change(&mut show).await, None);
        s.vouch(20);
        assert_eq!(reports_change(&mut show).await, Some(true));
        show.mark_seen();
        drop(s);
        assert_eq!(reports_change(&mut show).await, Some(false));
    }
}
