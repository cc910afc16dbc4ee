//! The start-up rollback check: the log's current checkpoint must not be smaller than, or
//! differ from, a checkpoint a witness cosigned.
//!
//! Two sources of evidence. The cosignature store (local, fast, but a restored backup may have
//! restored it too) and each witness itself, asked over tlog-witness without any extension: a
//! request with `old 0` makes a witness that holds state answer `409` with its size (the
//! protocol's documented way to learn it) and change nothing. Then:
//! - its size is larger than the log's: rolled back;
//! - same size: the checkpoint is resubmitted with `old <size>` and an empty proof; `409`
//!   without a size, or naming that same size, means another root at that size (a fork);
//! - smaller: the checkpoint is submitted with a consistency proof from the witness's size;
//!   `422` means the log does not extend what the witness cosigned.
//!
//! A witness only ever records the log's current checkpoint, and only when it is consistent
//! with what it already holds — exactly what the submitter would send next anyway.

use std::path::Path;

use audit_log::AuditLog;
use tokio::task::JoinSet;

use crate::client::{AddOutcome, WitnessClient, WitnessEndpoint};
use crate::error::WitnessError;
use crate::store::CosignatureStore;

/// What one witness told the start-up check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessProbe {
    /// The witness had cosigned `witness_size` entries, which the log extends (it now holds
    /// the log's current checkpoint).
    Consistent {
        /// The size the witness held before the check.
        witness_size: u64,
    },
    /// The witness had never cosigned this log; it now holds the current checkpoint.
    New,
    /// The witness does not know or trust this log, or refused otherwise: no evidence.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// The witness could not be asked (down, timed out, or answered outside the protocol).
    Unavailable(String),
}

/// What the start-up check found when it found no rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackReport {
    /// The log's size at the check.
    pub log_size: u64,
    /// Stored cosignatures that were checked against the log.
    pub stored_checked: usize,
    /// Per configured witness (submission URL), its answer.
    pub probes: Vec<(String, WitnessProbe)>,
}

impl RollbackReport {
    /// How many witnesses confirmed the log (consistent with what they cosigned, or new to
    /// it); a caller that wants a quorum at start-up compares this with it.
    pub fn confirmed(&self) -> usize {
        self.probes
            .iter()
            .filter(|(_, p)| matches!(p, WitnessProbe::Consistent { .. } | WitnessProbe::New))
            .count()
    }
}

/// Refuses (with [`WitnessError::RolledBack`]) a log that is behind, or differs from, a
/// checkpoint a configured witness cosigned, according to the store at `store` (if given) and
/// to the witnesses themselves. Call it after `AuditLog::open` and before accepting appends.
/// Unreachable witnesses are reported, not fatal: the caller decides how many answers it needs.
pub async fn check_not_rolled_back(
    log: &AuditLog,
    witnesses: &[WitnessEndpoint],
    store: Option<&Path>,
) -> Result<RollbackReport, WitnessError> {
    let cp = log.checkpoint();
    let size = cp.checkpoint.size;
    let mut stored_checked = 0;
    if let Some(path) = store {
        let verifiers: Vec<_> = witnesses.iter().map(|w| w.verifier.clone()).collect();
        let stored =
            CosignatureStore::new(path).load(log.origin(), &log.verifiers(), &verifiers)?;
        let latest = stored.latest.iter().map(|l| {
            (
                format!("stored note in {}", path.display()),
                l.checkpoint.clone(),
            )
        });
        let records = stored
            .witnesses
            .iter()
            .map(|(k, r)| (format!("{k} (stored cosignature)"), r.checkpoint.clone()));
        for (who, c) in records.chain(latest) {
            stored_checked += 1;
            if c.size > size {
                return Err(WitnessError::RolledBack {
                    witness: who,
                    detail: format!(
                        "a checkpoint of {} entries was cosigned but the log has only {size}",
                        c.size
                    ),
                });
            }
            if log.root_at(c.size)? != c.root {
                return Err(WitnessError::RolledBack {
                    witness: who,
                    detail: format!(
                        "the log's root at size {} differs from the cosigned root",
                        c.size
                    ),
                });
            }
        }
    }
    let mut set = JoinSet::new();
    for (i, w) in witnesses.iter().enumerate() {
        let client = WitnessClient::new(w.clone())?;
        let log = log.clone();
        set.spawn(async move { (i, probe(&log, &client).await) });
    }
    let mut results: Vec<Option<Result<WitnessProbe, WitnessError>>> =
        (0..witnesses.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.map_err(|e| WitnessError::Server(format!("probe task failed: {e}")))?;
        results[i] = Some(r);
    }
    let mut probes = Vec::new();
    for (w, r) in witnesses.iter().zip(results) {
        let p = r.unwrap_or_else(|| Ok(WitnessProbe::Unavailable("not asked".into())))?;
        probes.push((w.url.clone(), p));
    }
    Ok(RollbackReport {
        log_size: size,
        stored_checked,
        probes,
    })
}

async fn probe(log: &AuditLog, client: &WitnessClient) -> Result<WitnessProbe, WitnessError> {
    let cp = log.checkpoint();
    let size = cp.checkpoint.size;
    let who = format!(
        "{} at {}",
        client.endpoint().verifier,
        client.endpoint().url
    );
    let mut old = 0u64;
    for _ in 0..4 {
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            log.consistency_proof(old, size)?
        };
        let outcome = match client.add_checkpoint(old, &proof, &cp.note).await {
            Ok(o) => o,
            Err(e @ (WitnessError::Unreachable { .. } | WitnessError::BadResponse { .. })) => {
                return Ok(WitnessProbe::Unavailable(e.to_string()));
            }
            Err(e) => return Err(e),
        };
        match outcome {
            AddOutcome::Cosigned(_) if old == 0 => return Ok(WitnessProbe::New),
            AddOutcome::Cosigned(_) => return Ok(WitnessProbe::Consistent { witness_size: old }),
            AddOutcome::Conflict { size: n } if n > size => {
                return Err(WitnessError::RolledBack {
                    witness: who,
                    detail: format!(
                        "the witness cosigned a checkpoint of {n} entries but the log has only {size}"
                    ),
                });
            }
            AddOutcome::Conflict { size: n } => old = n,
            AddOutcome::RootMismatch(body) => {
                return Err(WitnessError::RolledBack {
                    witness: who,
                    detail: format!("the witness cosigned another root at size {old} ({body})"),
                });
            }
            AddOutcome::Rejected { status: 422, body } if old > 0 => {
                return Err(WitnessError::RolledBack {
                    witness: who,
                    detail: format!(
                        "the log's {size} entries do not extend the {old} entries the witness cosigned ({body})"
                    ),
                });
            }
            AddOutcome::Rejected { status, body } => {
                return Ok(WitnessProbe::Refused { status, body });
            }
        }
    }
    Ok(WitnessProbe::Unavailable(format!(
        "{who} kept changing size during the check"
    )))
}
