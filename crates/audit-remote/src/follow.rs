//! Following a log as it grows: each new checkpoint must verify and extend the last one
//! verified. A log that rewinds (a smaller signed checkpoint) or forks (two roots for one size,
//! or a new checkpoint that does not extend the last) raises an alert.

use std::sync::Arc;

use audit_log::verify::{VerifyOptions, VerifyReport};
use audit_log::{Checkpoint, NoteVerifier, SignedCheckpoint};

use crate::error::RemoteError;
use crate::fetch::verify_at;
use crate::source::Source;

/// What one poll found.
#[derive(Debug)]
pub enum FollowStep {
    /// The checkpoint is the one verified last.
    Unchanged {
        /// Its size.
        size: u64,
    },
    /// A new checkpoint verified and extends the last one.
    Verified {
        /// The report (incremental after the first poll).
        report: Box<VerifyReport>,
    },
    /// The source could not be read; try again later.
    Unreachable(RemoteError),
    /// Nothing read for a new checkpoint was wrong, but not all of it could be read (see
    /// [`VerifyReport::unreadable`]); it is checked again at the next poll, and raises no
    /// alert however often this happens.
    NotRead {
        /// The report, with the reads that failed.
        report: Box<VerifyReport>,
    },
    /// A new checkpoint did not verify; it is checked again at the next poll before an alert is
    /// raised (tiles read from a network can be unavailable for a moment).
    Suspect {
        /// The failed report.
        report: Box<VerifyReport>,
    },
    /// The log rewound or forked, or a new checkpoint failed twice: stop and raise the alarm.
    Alert {
        /// One line saying what happened.
        message: String,
        /// The report that failed, when verification ran.
        report: Option<Box<VerifyReport>>,
    },
}

/// Polls a source and verifies each new checkpoint incrementally from the last one verified.
pub struct Follower {
    /// Where the log is read.
    source: Arc<Source>,
    /// Keys the checkpoints must be signed with.
    keys: Vec<NoteVerifier>,
    /// The last checkpoint verified (note and body); `None` before the first poll without a
    /// saved checkpoint.
    last: Option<(String, Checkpoint)>,
    /// Verifier worker threads.
    threads: usize,
    /// The previous poll's verification failed (a second failure raises the alert).
    suspect: bool,
}

impl Follower {
    /// Follows `source`, starting from `since` (a checkpoint saved earlier, which must verify
    /// with `keys`) or, without one, with a full verification at the first poll.
    pub fn new(
        source: Arc<Source>,
        keys: Vec<NoteVerifier>,
        since: Option<String>,
        threads: usize,
    ) -> Result<Self, RemoteError> {
        let last = match since {
            Some(note) => {
                let cp =
                    SignedCheckpoint::open(&note, &keys).map_err(|e| RemoteError::Invalid {
                        location: "saved checkpoint".into(),
                        detail: e.to_string(),
                    })?;
                Some((note, cp.checkpoint))
            }
            None => None,
        };
        Ok(Self {
            source,
            keys,
            last,
            threads,
            suspect: false,
        })
    }

    /// The last checkpoint verified (to save for the next run).
    pub fn last_note(&self) -> Option<&str> {
        self.last.as_ref().map(|(n, _)| n.as_str())
    }

    /// Fetches the checkpoint and, if it is new, verifies it.
    pub async fn poll(&mut self) -> FollowStep {
        let note = match self.source.checkpoint().await {
            Ok(n) => n,
            Err(e) => return FollowStep::Unreachable(e),
        };
        let cp = match SignedCheckpoint::open(&note, &self.keys) {
            Ok(cp) => cp.checkpoint,
            Err(e) => {
                return FollowStep::Alert {
                    message: format!(
                        "the served checkpoint does not verify with the given keys: {e}"
                    ),
                    report: None,
                };
            }
        };
        if let Some((_, last)) = &self.last {
            if cp.size < last.size {
                return FollowStep::Alert {
                    message: format!(
                        "the log rewound: it now serves a signed checkpoint of {} entries after one of {} entries was verified",
                        cp.size, last.size
                    ),
                    report: None,
                };
            }
            if cp.size == last.size {
                if cp.root == last.root {
                    return FollowStep::Unchanged { size: cp.size };
                }
                return FollowStep::Alert {
                    message: format!(
                        "the log forked: two signed checkpoints of {} entries with different roots ({} and {})",
                        cp.size,
                        hex_root(&last.root),
                        hex_root(&cp.root)
                    ),
                    report: None,
                };
            }
        }
        let since = self.last.as_ref().map(|(n, _)| n.clone());
        let options = VerifyOptions {
            threads: self.threads,
            incremental: true,
        };
        // Verify the very note just checked, even if the log has grown since.
        let result = verify_at(
            self.source.clone(),
            note.clone(),
            self.keys.clone(),
            since,
            options,
        )
        .await;
        let report = match result {
            Ok(r) => r,
            Err(e) => return FollowStep::Unreachable(e),
        };
        if report.ok() {
            self.last = Some((note, cp));
            self.suspect = false;
            return FollowStep::Verified {
                report: Box::new(report),
            };
        }
        if !report.invalid() {
            return FollowStep::NotRead {
                report: Box::new(report),
            };
        }
        if !self.suspect {
            self.suspect = true;
            return FollowStep::Suspect {
                report: Box::new(report),
            };
        }
        let message = match (&self.last, report.since) {
            (Some((_, last)), Some((_, false))) => format!(
                "the log forked: its checkpoint of {} entries does not extend the verified checkpoint of {} entries",
                report.size, last.size
            ),
            _ => format!(
                "the log's checkpoint of {} entries failed verification twice in a row",
                report.size
            ),
        };
        FollowStep::Alert {
            message,
            report: Some(Box::new(report)),
        }
    }
}

fn hex_root(root: &[u8; 32]) -> String {
    root.iter().map(|b| format!("{b:02x}")).collect()
}
