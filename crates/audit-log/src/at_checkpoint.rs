//! Proofs against a given checkpoint of this log: the latest, or an older one its witnesses
//! cosigned, so the proof carries their cosignatures (c2sp.org/tlog-proof holds the checkpoint
//! verbatim).

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::error::AuditError;
use crate::log::AuditLog;
use crate::proof_file::TlogProof;

impl AuditLog {
    /// Checks that `cp` is a checkpoint of this log: its origin, a size the log has reached,
    /// and the log's root at that size. Its signatures are the caller's to check.
    pub fn check_own(&self, cp: &Checkpoint) -> Result<(), AuditError> {
        if cp.origin != self.origin() {
            return Err(AuditError::Config(format!(
                "the checkpoint is for origin {:?}, not this log's {:?}",
                cp.origin,
                self.origin()
            )));
        }
        let root = self.root_at(cp.size)?;
        if root != cp.root {
            return Err(AuditError::Config(format!(
                "the checkpoint of {} entries has another root than this log at that size: it \
                 is not a checkpoint of this log's history",
                cp.size
            )));
        }
        Ok(())
    }

    /// A C2SP tlog-proof for entry `seq` against the latest checkpoint.
    pub fn tlog_proof(&self, seq: u64) -> Result<TlogProof, AuditError> {
        self.proof_against(seq, &self.checkpoint())
    }

    /// A C2SP tlog-proof for entry `seq` against `cp`, a checkpoint of this log
    /// ([`Self::check_own`]).
    pub fn tlog_proof_at(&self, seq: u64, cp: &SignedCheckpoint) -> Result<TlogProof, AuditError> {
        self.check_own(&cp.checkpoint)?;
        self.proof_against(seq, cp)
    }

    /// The proof of entry `seq` against `cp`, known to be this log's.
    fn proof_against(&self, seq: u64, cp: &SignedCheckpoint) -> Result<TlogProof, AuditError> {
        let size = cp.checkpoint.size;
        if seq >= size {
            return Err(AuditError::OutOfRange(format!(
                "entry {seq} does not exist: it is not in the checkpoint ({size} entries; the log \
                 has {})",
                self.size()
            )));
        }
        let proof = self.inclusion_proof(seq, size)?;
        Ok(TlogProof {
            extra: None,
            index: seq,
            proof,
            checkpoint_note: cp.note.clone(),
        })
    }
}
