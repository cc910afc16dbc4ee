//! Continuous publication of the log to a [`Target`]: after each new checkpoint, the tiles and
//! entry bundles that are new or grew, the partial ones of every checkpoint the log signed
//! since the last round (tlog-tiles: a log serves the partial tiles of every checkpointed size
//! until their full tile exists, so a reader holding any checkpoint of this log, from a witness
//! or the gRPC API, finds its tiles here), then the checkpoint **last**, so a reader never sees a
//! checkpoint whose tiles are missing.
//!
//! Resuming needs no local state: the target's own checkpoint says what it holds (everything a
//! published checkpoint needs was uploaded before it), so a restart uploads what the log has
//! beyond it. The published checkpoint is checked against the log first: one we cannot verify,
//! one larger than the log, or one whose root differs from the log's at its size means the
//! target belongs to another log or the data directory was rolled back, and publication stops
//! without overwriting anything. One publisher per target.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use audit_log::feed::CheckpointToShow;
use audit_log::{AuditLog, CheckpointFeed, SignedCheckpoint, TileId, TileKind};
use bytes::Bytes;
use futures_util::TryStreamExt;

use crate::error::RemoteError;
use crate::target::{Lifetime, Target};

/// Uploads in flight at once.
const DEFAULT_CONCURRENCY: usize = 16;
/// First wait after a failed round; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the publisher reports as it goes (for logs, metrics and tests).
#[derive(Debug)]
pub enum PublishEvent<'a> {
    /// The target's checkpoint was read and checked against the log (`None`: it has none).
    Resumed {
        /// Entries the target's checkpoint covers.
        published: Option<u64>,
    },
    /// A round starts: the target holds `from` entries, `to` will be published.
    RoundStarted {
        /// The published size.
        from: u64,
        /// The size being published.
        to: u64,
        /// Tiles and bundles to upload before the checkpoint.
        uploads: usize,
    },
    /// One tile or bundle is in the target.
    Uploaded {
        /// Its path under the prefix.
        path: &'a str,
    },
    /// The checkpoint of `size` entries is visible in the target.
    Published {
        /// Its size.
        size: u64,
    },
    /// A round failed and will be retried after `retry_in` (permanent errors end `run`).
    Failed {
        /// What went wrong.
        error: &'a RemoteError,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
}

/// A callback for [`PublishEvent`]s.
pub type Observer = Arc<dyn Fn(&PublishEvent<'_>) + Send + Sync>;

/// Publishes one log to one target.
pub struct Publisher {
    /// The log.
    log: AuditLog,
    /// Where it goes.
    target: Target,
    /// Told about progress, when set.
    observer: Option<Observer>,
    /// Uploads in flight at once.
    concurrency: usize,
    /// The checkpoint to publish (the log's own unless [`Publisher::with_feed`] says
    /// otherwise).
    show: CheckpointToShow,
}

impl Publisher {
    /// A publisher of `log` to `target`.
    pub fn new(log: AuditLog, target: Target) -> Self {
        Self {
            show: CheckpointToShow::new(&log, log.feed()),
            log,
            target,
            observer: None,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// Publishes the checkpoints of `feed` (e.g. the latest one a quorum of witnesses
    /// cosigned, with their cosignature lines) instead of the log's own; they must be
    /// checkpoints of this log. While the feed has none yet, the log's own latest checkpoint is
    /// published; once it has one, only its checkpoints are, never a smaller one than the
    /// target holds ([`CheckpointToShow`]).
    pub fn with_feed(mut self, feed: CheckpointFeed) -> Self {
        self.show = CheckpointToShow::new(&self.log, feed);
        self
    }

    /// Reports progress to `observer` (called inline: keep it quick).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Uploads at most this many objects at once (at least one).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    fn tell(&self, e: &PublishEvent<'_>) {
        if let Some(o) = &self.observer {
            o(e);
        }
    }

    /// The size of the target's checkpoint (`None`: it has none), checked against the log.
    pub async fn published(&self) -> Result<Option<u64>, RemoteError> {
        let note = match self.target.get("checkpoint").await {
            Ok(b) => b,
            Err(RemoteError::NotFound { .. }) => return Ok(None),
            // Longer than any checkpoint: not one of this log's.
            Err(RemoteError::Invalid { location, detail }) => {
                return Err(RemoteError::Conflict(format!(
                    "{location} is {detail}, not a checkpoint of this log; refusing to overwrite it"
                )));
            }
            Err(e) => return Err(e),
        };
        let where_ = self.target.describe("checkpoint");
        let note = String::from_utf8(note.to_vec())
            .map_err(|_| RemoteError::Conflict(format!("{where_} is not UTF-8 text")))?;
        let cp = SignedCheckpoint::open(&note, &self.log.verifiers())
            .map_err(|e| {
                RemoteError::Conflict(format!(
                    "{where_} is not a checkpoint of this log ({e}); refusing to overwrite it"
                ))
            })?
            .checkpoint;
        if cp.origin != self.log.origin() {
            return Err(RemoteError::Conflict(format!(
                "{where_} is for origin {:?}, not {:?}",
                cp.origin,
                self.log.origin()
            )));
        }
        let have = self.log.size();
        if cp.size > have {
            return Err(RemoteError::Conflict(format!(
                "{where_} covers {} entries but the log holds {have}: the data directory is older than what was published (rolled back?); refusing to publish an older checkpoint",
                cp.size
            )));
        }
        if self.log.root_at(cp.size)? != cp.root {
            return Err(RemoteError::Conflict(format!(
                "{where_} signs a different root at {} entries than the log: the log was rewritten or the target belongs to another copy; refusing to overwrite it",
                cp.size
            )));
        }
        Ok(Some(cp.size))
    }

    /// Uploads what the checkpoint to show adds to a target holding `from` entries (`None`:
    /// nothing yet), checkpoint last. Returns the size published.
    async fn round(&self, from: Option<u64>) -> Result<Option<u64>, RemoteError> {
        let Some(cp) = self.show.instead_of(from) else {
            // Smaller than the target's: it keeps its own.
            return Ok(from);
        };
        let to = cp.checkpoint.size;
        if from == Some(to) {
            // The target holds this tree already, but perhaps not this note: a checkpoint that
            // witnesses vouch for gains the cosignatures of those that answer later. No tile
            // changes; the note is put again (a small, idempotent write).
            self.put_checkpoint(&cp.note).await?;
            return Ok(from);
        }
        let from_size = from.unwrap_or(0);
        // With the partial tiles of the checkpoints signed since the last round.
        let ids = self.log.tiles_to_copy(from_size, to)?;
        self.tell(&PublishEvent::RoundStarted {
            from: from_size,
            to,
            uploads: ids.len(),
        });
        futures_util::stream::iter(ids.into_iter().map(Ok))
            .map_ok(|id| self.upload(id))
            .try_buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await?;
        self.put_checkpoint(&cp.note).await?;
        self.tell(&PublishEvent::Published { size: to });
        Ok(Some(to))
    }

    async fn put_checkpoint(&self, note: &str) -> Result<(), RemoteError> {
        let bytes = Bytes::from(note.to_owned().into_bytes());
        self.target.put("checkpoint", bytes, Lifetime::Short).await
    }

    async fn upload(&self, id: TileId) -> Result<(), RemoteError> {
        let log = self.log.clone();
        let bytes = match id.kind {
            TileKind::Hash { .. } => log.tile(&id)?,
            // 256 sled reads: off the async threads.
            TileKind::Entries => tokio::task::spawn_blocking(move || log.tile(&id))
                .await
                .map_err(|e| RemoteError::Conflict(format!("tile reader task: {e}")))??,
        };
        let path = id.path();
        self.target
            .put(&path, Bytes::from(bytes), Lifetime::Immutable)
            .await?;
        self.tell(&PublishEvent::Uploaded { path: &path });
        Ok(())
    }

    /// Publishes the latest checkpoint once (checking the target first); returns the size
    /// the target then holds (0 when there was nothing to publish).
    pub async fn publish_once(&self) -> Result<u64, RemoteError> {
        let published = self.published().await?;
        self.tell(&PublishEvent::Resumed { published });
        Ok(self.round(published).await?.unwrap_or(0))
    }

    /// Publishes every new checkpoint until `shutdown` completes. A failed
    /// round is retried (with backoff, after re-reading the target); a permanent error (the
    /// target contradicts the log) ends it. A round cut short by shutdown leaves the target
    /// at its previous checkpoint.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RemoteError> {
        tokio::pin!(shutdown);
        let mut changes = self.show.clone();
        // What the target holds: `None` until read (again, after a failure).
        let mut known: Option<Option<u64>> = None;
        let mut backoff = MIN_BACKOFF;
        loop {
            changes.mark_seen();
            let step = async {
                let from = match known {
                    Some(p) => p,
                    None => {
                        let p = self.published().await?;
                        self.tell(&PublishEvent::Resumed { published: p });
                        p
                    }
                };
                self.round(from).await
            };
            let result = tokio::select! {
                () = &mut shutdown => return Ok(()),
                r = step => r,
            };
            match result {
                Ok(size) => {
                    known = Some(size);
                    backoff = MIN_BACKOFF;
                }
                Err(error) => {
                    self.tell(&PublishEvent::Failed {
                        error: &error,
                        retry_in: backoff,
                    });
                    if error.is_permanent() {
                        tracing::error!(target = %self.target, %error, "audit publication stopped");
                        return Err(error);
                    }
                    tracing::warn!(target = %self.target, %error, retry_in = ?backoff, "audit publication failed; retrying");
                    known = None;
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                changed = changes.changed() => if !changed {
                    // Every handle to the log (or the feed's sender) is gone: nothing more
                    // will be signed.
                    return Ok(());
                },
            }
        }
    }
}
