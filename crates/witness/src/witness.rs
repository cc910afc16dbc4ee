//! The witness: checks `add-checkpoint` requests in the order C2SP tlog-witness states them and
//! cosigns only checkpoints that extend, by a verified consistency proof, the one it last
//! cosigned for the log. The check and the durable state update happen under one per-log lock,
//! so concurrent requests for a log are serialised and the state never moves backwards.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use audit_log::note::{self, NoteError, NoteVerifier};
use audit_log::{Checkpoint, empty_root, merkle};

use crate::cosig::{CosignerKey, CosignerVerifier};
use crate::error::WitnessError;
use crate::protocol::{AddCheckpointRequest, split_note};
use crate::state::{LogState, StateDir};

/// A log the witness cosigns for.
#[derive(Debug, Clone)]
pub struct TrustedLog {
    /// The checkpoint origin line that identifies the log.
    pub origin: String,
    /// The log's note verifier keys (several during a key rotation); the key names need not
    /// equal the origin.
    pub verifiers: Vec<NoteVerifier>,
}

/// One log's keys and its state, behind the lock that serialises its requests.
#[derive(Debug)]
struct LogSlot {
    /// The keys the log's checkpoints must be signed with.
    verifiers: Vec<NoteVerifier>,
    /// The latest cosigned checkpoint (`None` before the first); held while checking and
    /// persisting a request.
    state: Mutex<Option<LogState>>,
}

/// A tlog witness: its key, the logs it trusts and their persisted state.
pub struct Witness {
    /// The cosigning key.
    key: CosignerKey,
    /// Trusted logs by origin.
    logs: HashMap<String, LogSlot>,
    /// Where states are persisted (locked by this witness).
    dir: StateDir,
    /// The clock for cosignature timestamps (POSIX seconds); replaceable in tests.
    now: fn() -> u64,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("key", &self.key)
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Witness {
    /// Opens the witness: locks `state_dir` and loads each trusted log's state. A state file
    /// that does not parse is an error, never a fresh start.
    pub fn open(
        key: CosignerKey,
        logs: Vec<TrustedLog>,
        state_dir: &Path,
    ) -> Result<Self, WitnessError> {
        let dir = StateDir::open(state_dir)?;
        let mut map = HashMap::new();
        for log in logs {
            if log.verifiers.is_empty() {
                return Err(WitnessError::Config(format!(
                    "log {:?} has no verifier key",
                    log.origin
                )));
            }
            let state = dir.load(&log.origin)?;
            let slot = LogSlot {
                verifiers: log.verifiers,
                state: Mutex::new(state),
            };
            if map.insert(log.origin.clone(), slot).is_some() {
                return Err(WitnessError::Config(format!(
                    "log {:?} is configured twice",
                    log.origin
                )));
            }
        }
        Ok(Self {
            key,
            logs: map,
            dir,
            now: system_now,
        })
    }

    /// Replaces the clock (tests pin cosignature timestamps with it).
    pub fn with_clock(mut self, now: fn() -> u64) -> Self {
        self.now = now;
        self
    }

    /// The witness's verifier key.
    pub fn verifier(&self) -> CosignerVerifier {
        self.key.verifier()
    }

    /// The latest checkpoint cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Option<LogState> {
        let slot = self.logs.get(origin)?;
        match slot.state.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Handles one `add-checkpoint` request body and returns the cosignature lines. Blocks on
    /// the per-log lock and on the fsync of the new state; call it off the async runtime.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<String, WitnessError> {
        let req = AddCheckpointRequest::parse(body)?;
        let (text, _) = split_note(&req.checkpoint_note)?;
        let cp = Checkpoint::parse_text(text)
            .map_err(|e| WitnessError::MalformedRequest(e.to_string()))?;
        let slot = self
            .logs
            .get(&cp.origin)
            .ok_or_else(|| WitnessError::UnknownLog {
                origin: cp.origin.clone(),
            })?;
        match note::open(&req.checkpoint_note, &slot.verifiers) {
            Ok(_) => {}
            Err(e @ (NoteError::NoKnownSignature { .. } | NoteError::BadSignature { .. })) => {
                return Err(WitnessError::Untrusted {
                    origin: cp.origin,
                    detail: e.to_string(),
                });
            }
            Err(e) => return Err(WitnessError::MalformedRequest(e.to_string())),
        }
        if req.old_size > cp.size {
            return Err(WitnessError::OldSizeTooLarge {
                old: req.old_size,
                size: cp.size,
            });
        }
        let mut guard = slot
            .state
            .lock()
            .map_err(|_| WitnessError::Server("a log's state lock was poisoned".into()))?;
        let (cur_size, cur_root) = guard
            .as_ref()
            .map_or((0, empty_root()), |s| (s.size(), s.root()));
        if req.old_size != cur_size {
            return Err(WitnessError::Conflict { size: cur_size });
        }
        check_extends(&req, &cp, cur_root)?;
        let line = self.key.cosign(text, (self.now)())?;
        // c2sp.org/tlog-witness: the witness MUST update its record of the latest cosigned
        // checkpoint, so the same tree with other extension lines replaces the stored note.
        let unchanged = guard
            .as_ref()
            .is_some_and(|s| split_note(&s.note).is_ok_and(|(old, _)| old == text));
        if !unchanged {
            let new = LogState {
                note: format!("{}{line}", req.checkpoint_note),
                checkpoint: cp,
            };
            // Persist before answering; on failure the in-memory state stays as it was.
            self.dir.store(&new)?;
            *guard = Some(new);
        }
        Ok(line)
    }
}

/// The proof checks, after the old size matched the state (`cur_root` is the state's root, or
/// the empty tree's).
fn check_extends(
    req: &AddCheckpointRequest,
    cp: &Checkpoint,
    cur_root: audit_log::Hash,
) -> Result<(), WitnessError> {
    if req.old_size == 0 && !req.proof.is_empty() {
        return Err(WitnessError::InvalidProof(
            "the proof must be empty when the old size is 0".into(),
        ));
    }
    if cp.size == 0 && cp.root != empty_root() {
        return Err(WitnessError::InvalidProof(
            "a checkpoint of size 0 must carry the empty tree's root".into(),
        ));
    }
    if req.old_size == cp.size {
        if !req.proof.is_empty() {
            return Err(WitnessError::InvalidProof(
                "the proof must be empty when the old size equals the checkpoint size".into(),
            ));
        }
        if cp.root != cur_root {
            return Err(WitnessError::RootMismatch { size: cp.size });
        }
        return Ok(());
    }
    if req.old_size == 0 {
        return Ok(());
    }
    merkle::verify_consistency(req.old_size, cp.size, &cur_root, &cp.root, &req.proof).map_err(
        |e| WitnessError::InvalidProof(format!("from size {} to {}: {e}", req.old_size, cp.size)),
    )
}

#[cfg(test)]
mod tests;
