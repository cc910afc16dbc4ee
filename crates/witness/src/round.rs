//! One submission of one checkpoint to one witness, with the tlog-witness conflict handling:
//! a `409` with another size means "resubmit from there", anything else is reported (a `409`
//! naming the old size sent is a fork, see `WitnessClient::add_checkpoint`).

use std::sync::Arc;

use audit_log::{AuditLog, SignedCheckpoint};

use crate::client::{AddOutcome, WitnessClient};

/// Resubmissions after a `409` within one attempt (a witness that keeps moving is reported).
const MAX_CONFLICTS: u32 = 3;

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum Submitted {
    /// The witness cosigned the target; the line ends in `\n`.
    Cosigned {
        /// The witness's cosignature line on the target.
        line: String,
        /// `409` answers met on the way (the witness was at another size).
        conflicts: u64,
    },
    /// It did not; the witness is retried after a back-off.
    Failed {
        /// What happened, for logs and status.
        error: String,
        /// The witness's size if it told us one (a `409` in this attempt).
        witness_size: Option<u64>,
        /// `409` answers met on the way.
        conflicts: u64,
        /// True when the answer is evidence against the log (fork, rollback, bad proof).
        alarm: bool,
    },
}

/// Submits `target` to the witness, starting from `known_size` (the size we believe it last
/// cosigned; 0 when unknown, which the protocol allows to learn the witness's size).
pub(crate) async fn submit(
    log: &AuditLog,
    client: &WitnessClient,
    known_size: Option<u64>,
    target: Arc<SignedCheckpoint>,
) -> Submitted {
    let size = target.checkpoint.size;
    let url = &client.endpoint().url;
    let mut old = known_size.unwrap_or(0);
    let mut conflicts = 0u64;
    let mut learned = None;
    let failed =
        |error: String, witness_size: Option<u64>, conflicts: u64, alarm: bool| Submitted::Failed {
            error,
            witness_size,
            conflicts,
            alarm,
        };
    for _ in 0..=MAX_CONFLICTS {
        if old > size {
            return failed(
                format!(
                    "witness {url} has cosigned a checkpoint of {old} entries but this log has only {size}: the audit data directory was rolled back, or another log uses this origin"
                ),
                learned,
                conflicts,
                true,
            );
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            match log.consistency_proof(old, size) {
                Ok(p) => p,
                Err(e) => {
                    return failed(
                        format!("consistency proof {old} → {size}: {e}"),
                        learned,
                        conflicts,
                        false,
                    );
                }
            }
        };
        let outcome = match client.add_checkpoint(old, &proof, &target.note).await {
            Ok(o) => o,
            // None of these is evidence against the log: the witness is down, answered outside
            // the protocol (a cosignature that does not verify, a body we cannot read: its own
            // fault or misconfiguration), or the note or proof could not be sent.
            Err(e) => return failed(e.to_string(), learned, conflicts, false),
        };
        match outcome {
            AddOutcome::Cosigned(c) => {
                let line = c.to_line();
                return Submitted::Cosigned { line, conflicts };
            }
            AddOutcome::Conflict { size: w } => {
                tracing::info!(%url, believed = old, witness_size = w, "witness is at another size; resubmitting from its size");
                conflicts += 1;
                learned = Some(w);
                old = w;
            }
            AddOutcome::RootMismatch(body) => {
                return failed(
                    format!(
                        "witness {url} cosigned a different root at size {old}: the log forked ({body})"
                    ),
                    learned,
                    conflicts,
                    true,
                );
            }
            AddOutcome::Rejected { status, body } => {
                let (what, alarm) = match status {
                    422 => (
                        format!(
                            "rejected the consistency proof from size {old} (the log's history differs from what it cosigned)"
                        ),
                        true,
                    ),
                    403 => ("does not trust this log's signing key".to_owned(), false),
                    404 => ("does not know this log's origin".to_owned(), false),
                    400 => ("called the request malformed".to_owned(), false),
                    429 => ("asked us to slow down".to_owned(), false),
                    _ => (format!("failed with status {status}"), false),
                };
                return failed(
                    format!("witness {url} {what} ({status}: {body})"),
                    learned,
                    conflicts,
                    alarm,
                );
            }
        }
    }
    failed(
        format!("witness {url} kept changing size ({conflicts} conflicts in a row)"),
        learned,
        conflicts,
        false,
    )
}
