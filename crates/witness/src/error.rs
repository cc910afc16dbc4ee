//! The witness crate's one error type.

use audit_log::AuditError;
use audit_log::note::NoteError;

/// Everything this crate can fail with. The witness server maps the `add-checkpoint`
/// rejections onto the HTTP status codes of C2SP tlog-witness with [`WitnessError::http_status`].
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// A key string or key file is not in a format we read.
    #[error("malformed key: {0}")]
    Key(String),
    /// An `add-checkpoint` body does not follow the wire format (400).
    #[error("malformed add-checkpoint request: {0}")]
    MalformedRequest(String),
    /// The checkpoint's origin is not a log this witness knows (404).
    #[error("unknown log origin {origin:?}")]
    UnknownLog {
        /// The origin line of the submitted checkpoint.
        origin: String,
    },
    /// No signature by a key this witness trusts for the origin verified (403).
    #[error("checkpoint for {origin:?} is not signed by a trusted key: {detail}")]
    Untrusted {
        /// The origin line of the submitted checkpoint.
        origin: String,
        /// What the note verifier found.
        detail: String,
    },
    /// The old size is larger than the checkpoint's size (400).
    #[error("old size {old} is larger than the checkpoint size {size}")]
    OldSizeTooLarge {
        /// The `old` line.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The old size is not the size this witness last cosigned (409, `text/x.tlog.size`).
    #[error("old size does not match; the latest cosigned size is {size}")]
    Conflict {
        /// The size of the latest checkpoint the witness cosigned for the origin (0 if none).
        size: u64,
    },
    /// Same size as the latest cosigned checkpoint but a different root hash (409, plain text):
    /// the log has forked.
    #[error(
        "the checkpoint has the size of the latest cosigned checkpoint ({size}) but a different root hash"
    )]
    RootMismatch {
        /// The common size.
        size: u64,
    },
    /// The consistency proof does not verify, or is not allowed for these sizes (422).
    #[error("invalid consistency proof: {0}")]
    InvalidProof(String),
    /// Persisted witness or submitter state is unreadable; nothing is rolled back or deleted.
    #[error("state file {path}: {detail}; refusing to continue (nothing was changed)")]
    State {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is missing or invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// A witness could not be reached or did not answer in time.
    #[error("witness {url} unreachable: {detail}")]
    Unreachable {
        /// The witness's submission URL.
        url: String,
        /// Connection error or timeout.
        detail: String,
    },
    /// A witness answered something the protocol does not allow.
    #[error("witness {url} answered outside the protocol: {detail}")]
    BadResponse {
        /// The witness's submission URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The audit log failed (a proof or root could not be computed).
    #[error(transparent)]
    Log(#[from] AuditError),
    /// A signed note is malformed or its signature fails.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The local log is behind, or differs from, a checkpoint a witness cosigned: the data
    /// directory was rolled back or the log forked.
    #[error("audit log rolled back or forked (witness {witness}): {detail}")]
    RolledBack {
        /// Which witness (or stored cosignature) holds the evidence.
        witness: String,
        /// The sizes and roots that disagree.
        detail: String,
    },
    /// A trusted witness's cosignature does not verify.
    #[error("invalid cosignature by trusted witness {name}+{key_id:08x}")]
    BadCosignature {
        /// Witness name.
        name: String,
        /// Witness key id.
        key_id: u32,
    },
    /// Fewer trusted witnesses cosigned than the quorum requires.
    #[error(
        "checkpoint cosigned by {have} of the {need} trusted witnesses required (cosigned: {cosigned}; missing: {missing})"
    )]
    Quorum {
        /// Distinct trusted witnesses whose cosignature verified.
        have: usize,
        /// The quorum.
        need: usize,
        /// Their names, comma separated (or `none`).
        cosigned: String,
        /// Trusted witnesses with no valid cosignature, comma separated (or `none`).
        missing: String,
    },
    /// The HTTP server failed.
    #[error("witness server: {0}")]
    Server(String),
}

impl WitnessError {
    /// An IO error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The HTTP status a witness answers `add-checkpoint` with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::MalformedRequest(_) | Self::OldSizeTooLarge { .. } => 400,
            Self::Untrusted { .. } => 403,
            Self::UnknownLog { .. } => 404,
            Self::Conflict { .. } | Self::RootMismatch { .. } => 409,
            Self::InvalidProof(_) => 422,
            _ => 500,
        }
    }
}
