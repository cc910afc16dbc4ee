//! The verifier's one error type. Messages never contain secrets or tokens.

use audit_log::AuditError;

/// Why a verification or drift run could not be carried out. A check that fails is not an
/// error: it is a `FAIL` in the report.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The target names nothing the caller manages (unknown client or service id).
    #[error("{0}")]
    NotFound(String),
    /// The target is empty or malformed.
    #[error("{0}")]
    InvalidTarget(String),
    /// The audit log refused the report or a drift entry (fail closed: nothing is repaired).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The drift store (sled) failed.
    #[error("drift store: {0}")]
    Store(#[from] sled::Error),
    /// A stored drift item could not be read back.
    #[error("drift store: item {key}: {message}")]
    Corrupt {
        /// The sled key, as text.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The target source (the registry or the onboarding engine) failed.
    #[error("target source: {0}")]
    Targets(String),
    /// The target is not in a state that can be verified (e.g. a registration with no service
    /// holding a secret); a caller can fix it.
    #[error("{0}")]
    NotReady(String),
    /// Microsoft could not be read for the target (an outage, throttling): try again later.
    #[error("{0}")]
    Unavailable(String),
}

impl From<onboard_core::CoreError> for VerifyError {
    fn from(e: onboard_core::CoreError) -> Self {
        match e {
            onboard_core::CoreError::Audit(a) => VerifyError::Audit(a),
            onboard_core::CoreError::Store(m) => VerifyError::Targets(m),
            other => VerifyError::Targets(other.to_string()),
        }
    }
}

/// Shorthand.
pub type Result<T, E = VerifyError> = std::result::Result<T, E>;
