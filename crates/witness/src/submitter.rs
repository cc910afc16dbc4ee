//! The submitter: a background task that offers each new checkpoint of an [`AuditLog`] to the
//! configured witnesses and collects their cosignatures, without ever blocking an append.
//!
//! Rounds: take the log's latest checkpoint; submit it concurrently to every witness that has
//! not cosigned it and is not backing off, each with a consistency proof from the size that
//! witness last cosigned; then publish the checkpoint with every cosignature it collected. The
//! cosignatures are persisted at most once a second and when the submitter stops. Rounds start when the log signs a newer checkpoint (at most one per
//! `min_interval`) or when a witness's back-off expires.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_log::{AuditLog, Checkpoint, SignedCheckpoint};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::client::{WitnessClient, WitnessEndpoint};
use crate::error::WitnessError;
use crate::round::{Submitted, submit};
use crate::store::{CosignatureStore, StoredState, WitnessRecord};

/// The store is written at most this often (and when the submitter stops): it is start-up
/// evidence and a hint of each witness's size, not the witnesses' own record, so a crash may
/// lose at most this much of it (the next start then learns sizes from `409` answers).
const PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// How the submitter runs.
#[derive(Debug, Clone)]
pub struct SubmitterConfig {
    /// The witnesses to collect cosignatures from.
    pub witnesses: Vec<WitnessEndpoint>,
    /// The cosignature store file (keep it outside the audit data directory).
    pub store: PathBuf,
    /// The shortest time between two rounds started by new checkpoints; bounds the load on
    /// witnesses under a steady stream of appends.
    pub min_interval: Duration,
    /// The first back-off after a witness fails; doubled on each failure in a row.
    pub backoff_min: Duration,
    /// The longest back-off.
    pub backoff_max: Duration,
}

impl SubmitterConfig {
    /// Defaults: a round at most every second, back-off from 1 s to 5 min.
    pub fn new(witnesses: Vec<WitnessEndpoint>, store: impl Into<PathBuf>) -> Self {
        Self {
            witnesses,
            store: store.into(),
            min_interval: Duration::from_secs(1),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// A checkpoint of the log with the cosignatures collected for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The log's signed note followed by the witnesses' cosignature lines: what the read API
    /// serves as `checkpoint`.
    pub note: String,
    /// The verifier keys of the witnesses that cosigned it, in configuration order.
    pub cosigners: Vec<String>,
}

/// One witness as the submitter sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessStatus {
    /// The witness's submission prefix.
    pub url: String,
    /// Its verifier key.
    pub vkey: String,
    /// The size of the latest checkpoint it cosigned for us, if known.
    pub cosigned_size: Option<u64>,
    /// Cosignatures received.
    pub cosignatures: u64,
    /// `409` answers with another size (each followed by a resubmission).
    pub conflicts: u64,
    /// Attempts that ended without a cosignature.
    pub failures: u64,
    /// The last failure, cleared by the next cosignature.
    pub last_error: Option<String>,
}

/// A handle on the running submitter; clones share it.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// The latest cosigned checkpoint (`None` until one is collected or loaded).
    cosigned: watch::Receiver<Option<Arc<CosignedCheckpoint>>>,
    /// Per-witness status, in configuration order.
    status: Arc<Mutex<Vec<WitnessStatus>>>,
}

/// The submitter's view of one witness.
struct Peer {
    /// The HTTP client.
    client: WitnessClient,
    /// The witness's verifier key string (the store's key).
    vkey: String,
    /// The size we believe it last cosigned.
    known_size: Option<u64>,
    /// Its latest cosignature for us.
    record: Option<WitnessRecord>,
    /// The next back-off.
    backoff: Duration,
    /// No attempt before this instant.
    retry_at: Option<Instant>,
}

impl Submitter {
    /// Starts the submitter for `log` on the current Tokio runtime, loading the store (an
    /// unverifiable store is an error). It runs until `shutdown` completes; the returned
    /// `JoinHandle` ends then. Run [`crate::check_not_rolled_back`] first.
    pub fn spawn(
        log: AuditLog,
        config: SubmitterConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(Self, JoinHandle<()>), WitnessError> {
        let store = CosignatureStore::new(&config.store);
        let verifiers: Vec<_> = config
            .witnesses
            .iter()
            .map(|w| w.verifier.clone())
            .collect();
        let stored = store.load(log.origin(), &log.verifiers(), &verifiers)?;
        let mut peers = Vec::new();
        let mut status = Vec::new();
        for w in &config.witnesses {
            let vkey = w.verifier.to_string();
            let record = stored.witnesses.get(&vkey).cloned();
            status.push(WitnessStatus {
                url: w.url.clone(),
                vkey: vkey.clone(),
                cosigned_size: record.as_ref().map(|r| r.checkpoint.size),
                ..WitnessStatus::default()
            });
            peers.push(Peer {
                client: WitnessClient::new(w.clone())?,
                known_size: record.as_ref().map(|r| r.checkpoint.size),
                record,
                vkey,
                backoff: config.backoff_min,
                retry_at: None,
            });
        }
        let size = log.size();
        let initial = stored
            .latest
            .as_ref()
            .filter(|l| l.checkpoint.size <= size)
            .map(|l| {
                Arc::new(CosignedCheckpoint {
                    checkpoint: l.checkpoint.clone(),
                    note: l.note.clone(),
                    cosigners: peers
                        .iter()
                        .filter(|p| {
                            p.record
                                .as_ref()
                                .is_some_and(|r| r.checkpoint == l.checkpoint)
                        })
                        .map(|p| p.vkey.clone())
                        .collect(),
                })
            });
        let (tx, rx) = watch::channel(initial);
        let status = Arc::new(Mutex::new(status));
        let task = Task {
            log,
            config,
            store,
            stored,
            peers,
            tx,
            status: status.clone(),
            dirty: false,
            persisted: Instant::now()
                .checked_sub(PERSIST_INTERVAL)
                .unwrap_or_else(Instant::now),
        };
        let handle = tokio::spawn(task.run(shutdown));
        Ok((
            Self {
                cosigned: rx,
                status,
            },
            handle,
        ))
    }

    /// The latest checkpoint with all cosignatures collected for it so far, as a signed note.
    pub fn cosigned(&self) -> Option<Arc<CosignedCheckpoint>> {
        self.cosigned.borrow().clone()
    }

    /// Follows [`Submitter::cosigned`].
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<CosignedCheckpoint>>> {
        self.cosigned.clone()
    }

    /// Per-witness status, in configuration order.
    pub fn status(&self) -> Vec<WitnessStatus> {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// The background task's state.
struct Task {
    /// The log whose checkpoints are submitted.
    log: AuditLog,
    /// The configuration.
    config: SubmitterConfig,
    /// Where cosignatures are persisted.
    store: CosignatureStore,
    /// What was last persisted (records and the latest cosigned note).
    stored: StoredState,
    /// The witnesses.
    peers: Vec<Peer>,
    /// Publishes cosigned checkpoints.
    tx: watch::Sender<Option<Arc<CosignedCheckpoint>>>,
    /// Shared with the handles.
    status: Arc<Mutex<Vec<WitnessStatus>>>,
    /// Something changed since the store was last written.
    dirty: bool,
    /// When the store was last written (or the task started).
    persisted: Instant,
}

impl Task {
    async fn run(mut self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tokio::pin!(shutdown);
        let mut checkpoints = self.log.subscribe();
        let mut last_round: Option<Instant> = None;
        loop {
            if let Some(t) = last_round {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep_until(t + self.config.min_interval) => {}
                }
            }
            self.persist_if_due().await;
            let target = self.log.checkpoint();
            let now = Instant::now();
            let due: Vec<usize> = (0..self.peers.len())
                .filter(|&i| {
                    self.needs(i, &target.checkpoint)
                        && self.peers[i].retry_at.is_none_or(|t| t <= now)
                })
                .collect();
            // The empty tree too (`old 0`, no proof): a new log's readers get a cosigned
            // checkpoint of size 0 after one round, not a 503 until its first entry.
            if !due.is_empty() {
                last_round = Some(now);
                tokio::select! {
                    _ = &mut shutdown => break,
                    () = self.round(&due, target.clone()) => {}
                }
                continue;
            }
            let retry = (0..self.peers.len())
                .filter(|&i| self.needs(i, &target.checkpoint))
                .filter_map(|i| self.peers[i].retry_at)
                .min();
            let persist = self.dirty.then(|| self.persisted + PERSIST_INTERVAL);
            let wake = retry.into_iter().chain(persist).min();
            tokio::select! {
                _ = &mut shutdown => break,
                _ = sleep_until_opt(wake) => {}
                changed = wait_past(&mut checkpoints, target.checkpoint.size) => {
                    if !changed {
                        break;
                    }
                }
            }
        }
        if self.dirty {
            self.persist().await;
        }
        tracing::debug!("witness submitter stopped");
    }

    /// Writes the store if something changed and the last write is `PERSIST_INTERVAL` old.
    async fn persist_if_due(&mut self) {
        if self.dirty && self.persisted.elapsed() >= PERSIST_INTERVAL {
            self.persist().await;
        }
    }

    /// Whether peer `i` has yet to cosign `cp`.
    fn needs(&self, i: usize, cp: &Checkpoint) -> bool {
        self.peers[i]
            .record
            .as_ref()
            .is_none_or(|r| r.checkpoint != *cp)
    }

    /// Submits `target` to the `due` peers concurrently, then publishes what they cosigned (the
    /// store is written later, see `PERSIST_INTERVAL`).
    async fn round(&mut self, due: &[usize], target: Arc<SignedCheckpoint>) {
        let mut set = JoinSet::new();
        for &i in due {
            let (log, client, known) = (
                self.log.clone(),
                self.peers[i].client.clone(),
                self.peers[i].known_size,
            );
            let target = target.clone();
            set.spawn(async move { (i, submit(&log, &client, known, target).await) });
        }
        let mut changed = false;
        while let Some(joined) = set.join_next().await {
            let Ok((i, result)) = joined else { continue };
            changed |= self.apply(i, result, &target);
        }
        let lines: Vec<(&str, &str)> = self
            .peers
            .iter()
            .filter_map(|p| {
                let r = p.record.as_ref()?;
                (r.checkpoint == target.checkpoint)
                    .then_some((p.vkey.as_str(), r.cosignature.as_str()))
            })
            .collect();
        if !lines.is_empty() {
            let mut note = target.note.clone();
            for (_, l) in &lines {
                note.push_str(l);
            }
            let view = CosignedCheckpoint {
                checkpoint: target.checkpoint.clone(),
                cosigners: lines.iter().map(|(k, _)| (*k).to_owned()).collect(),
                note,
            };
            if self.tx.borrow().as_deref() != Some(&view) {
                self.stored.latest = Some(SignedCheckpoint {
                    checkpoint: view.checkpoint.clone(),
                    note: view.note.clone(),
                });
                self.tx.send_replace(Some(Arc::new(view)));
                changed = true;
            }
        }
        self.dirty |= changed;
    }

    /// Records one attempt's result; true if a new cosignature arrived.
    fn apply(&mut self, i: usize, result: Submitted, target: &SignedCheckpoint) -> bool {
        let min = self.config.backoff_min;
        let max = self.config.backoff_max;
        let peer = &mut self.peers[i];
        let mut status = match self.status.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let st = &mut status[i];
        match result {
            Submitted::Cosigned { line, conflicts } => {
                let text = target.note.rfind("\n\n").map_or_else(
                    || target.checkpoint.to_text(),
                    |n| target.note[..=n].to_owned(),
                );
                let record = WitnessRecord {
                    checkpoint: target.checkpoint.clone(),
                    text,
                    cosignature: line,
                };
                self.stored
                    .witnesses
                    .insert(peer.vkey.clone(), record.clone());
                peer.record = Some(record);
                peer.known_size = Some(target.checkpoint.size);
                peer.backoff = min;
                peer.retry_at = None;
                st.cosigned_size = peer.known_size;
                st.cosignatures += 1;
                st.conflicts += conflicts;
                st.last_error = None;
                true
            }
            Submitted::Failed {
                error,
                witness_size,
                conflicts,
                alarm,
            } => {
                if alarm {
                    tracing::error!(url = %peer.client.endpoint().url, "{error}");
                } else {
                    tracing::warn!(url = %peer.client.endpoint().url, retry_in = ?peer.backoff, "{error}");
                }
                if witness_size.is_some() {
                    peer.known_size = witness_size;
                }
                peer.retry_at = Some(Instant::now() + peer.backoff);
                peer.backoff = (peer.backoff * 2).min(max);
                st.failures += 1;
                st.conflicts += conflicts;
                st.last_error = Some(error);
                false
            }
        }
    }

    /// Writes the store off the async workers (failures are logged and retried later).
    async fn persist(&mut self) {
        self.persisted = Instant::now();
        let store = self.store.clone();
        let origin = self.log.origin().to_owned();
        let state = self.stored.clone();
        let r = tokio::task::spawn_blocking(move || store.save(&origin, &state)).await;
        match r {
            Ok(Ok(())) => self.dirty = false,
            Ok(Err(e)) => tracing::error!(error = %e, "could not persist witness cosignatures"),
            Err(e) => tracing::error!(error = %e, "cosignature store task failed"),
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Waits until the log publishes a checkpoint larger than `size`; false if the log is gone.
async fn wait_past(rx: &mut watch::Receiver<Arc<SignedCheckpoint>>, size: u64) -> bool {
    rx.wait_for(|cp| cp.checkpoint.size > size).await.is_ok()
}
