//! The crate's one error type. Messages never carry a token or a key.

use onboard_core::FieldViolation;

/// Everything invitations can fail with.
#[derive(Debug, thiserror::Error)]
pub enum InvitationError {
    /// Request fields are invalid; each violation names its field and the rule.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// No such invitation (by id or token).
    #[error("{0}")]
    NotFound(String),
    /// The invitation exists but is expired, used or revoked.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The audit log could not record the change, so it was not made (fail closed).
    #[error(transparent)]
    Audit(#[from] audit_log::AuditError),
    /// The invitation store (sled) failed.
    #[error("invitation store: {0}")]
    Store(String),
    /// The token key file is unusable.
    #[error("configuration error: {0}")]
    Config(String),
    /// A stored record is unreadable, or the system has no randomness.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(v: &[FieldViolation]) -> String {
    v.iter()
        .map(|f| format!("{}: {}", f.field, f.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl InvitationError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

impl From<sled::Error> for InvitationError {
    fn from(e: sled::Error) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<onboard_core::CoreError> for InvitationError {
    fn from(e: onboard_core::CoreError) -> Self {
        match e {
            onboard_core::CoreError::Audit(a) => Self::Audit(a),
            onboard_core::CoreError::Store(m) => Self::Store(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Shorthand.
pub type Result<T, E = InvitationError> = std::result::Result<T, E>;
