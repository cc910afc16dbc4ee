//! The audit log's one error type.

use crate::merkle::ProofError;
use crate::note::NoteError;

/// Everything the audit log can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// sled reported corruption; the data directory is left exactly as found.
    #[error(
        "audit log storage at {path} is corrupt ({detail}); refusing to start; nothing was deleted — restore from a backup or export"
    )]
    Corrupt {
        /// The data directory.
        path: String,
        /// What sled or the start-up check found.
        detail: String,
    },
    /// The stored log does not match its own hashes or checkpoints.
    #[error(
        "audit log integrity check failed at {location}: {detail}; refusing to start; nothing was deleted"
    )]
    Integrity {
        /// Where: `entry 17`, `node (3, 2)`, `checkpoint at size 40`.
        location: String,
        /// What differs.
        detail: String,
    },
    /// Any other storage failure (IO, disk full).
    #[error("audit log storage error: {0}")]
    Storage(#[from] sled::Error),
    /// A previous write failed, so the in-memory tree can no longer be trusted; reopen the log.
    #[error(
        "audit log is unavailable after a failed write ({0}); no further changes are recorded until it is reopened"
    )]
    Poisoned(String),
    /// The writer has stopped (the log was closed).
    #[error("audit log is closed")]
    Closed,
    /// An entry was refused.
    #[error("invalid audit entry: {0}")]
    InvalidEntry(String),
    /// A proof was asked for sizes or indexes the log cannot answer.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A request names entries or sizes the log does not have.
    #[error("{0}")]
    OutOfRange(String),
    /// A key or signed note problem.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The configured key or origin, or a checkpoint given, is not this log's.
    #[error("{0}")]
    Config(String),
    /// A tlog-tiles resource name that breaks the path rules (c2sp.org/tlog-tiles).
    #[error("not a tlog-tiles path {path:?}: {reason}")]
    BadTilePath {
        /// The path as given (at most 200 characters of it).
        path: String,
        /// The rule it breaks.
        reason: String,
    },
    /// Filesystem error outside sled (export, key files).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl AuditError {
    /// An IO error with what we were doing.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// True when a read failed for a reason other than what the log holds: the source could not
    /// be reached, answered with a server error or timed out. A missing resource (`NotFound`, or
    /// `PermissionDenied` as a static bucket answers one) and malformed data (`InvalidData`) are
    /// the log's own failures, not this. A verifier reports such a read as not checked rather
    /// than as wrong.
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            Self::Io { source, .. } if !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidData
            )
        )
    }
}
