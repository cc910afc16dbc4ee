//! The crate's one error type. Messages never carry a secret or a token: Entra errors hold only
//! codes, messages and request ids; our own messages name registrations, key ids and rules.

use entra_client::EntraError;

/// Everything day-two credential management can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A request field is invalid (gRPC: INVALID_ARGUMENT with a field violation).
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field, as named in the .proto.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No such registration, service or secret (gRPC: NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the state does not allow it (gRPC: FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// What the request would create exists already (gRPC: ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String),
    /// The tenant's app management policy refused a new secret; nothing was changed.
    #[error(
        "the tenant's app management policy refused the new secret ({code}): {message}; no \
         secret was added or removed"
    )]
    PolicyRefused {
        /// Graph's error code (`CredentialTypeNotAllowedAsPerAppPolicy`, ...).
        code: String,
        /// Graph's message (names the policy).
        message: String,
    },
    /// A change needs a signed-in admin of the tenant and none is stored (or it expired).
    #[error(
        "no admin session for tenant {tenant_id}: {reason}; create an invitation and sign in \
         again (or enable self-rotation for the registration)"
    )]
    NoAdminSession {
        /// The customer tenant.
        tenant_id: String,
        /// Why there is none (never stored, expired, refused).
        reason: String,
    },
    /// An attached registration lacks what its profile needs.
    #[error("the registration lacks what profile {profile} needs: {}", missing.join("; "))]
    MissingGrants {
        /// The profile checked against.
        profile: String,
        /// One line per missing permission or directory role.
        missing: Vec<String>,
    },
    /// Removing directory roles or permissions the profile requires, without the override.
    #[error(
        "{} required by profile {profile}; set the override flag to remove it anyway",
        what.join(", ")
    )]
    RequiredByProfile {
        /// The profile.
        profile: String,
        /// The roles or permissions that would be removed.
        what: Vec<String>,
    },
    /// Writing the audit log failed: no change was made (fail closed; gRPC: UNAVAILABLE).
    #[error("audit log write failed, no change made: {0}")]
    Audit(#[from] audit_log::AuditError),
    /// Microsoft identity platform or Graph refused or failed.
    #[error("{operation}: {source}")]
    Entra {
        /// What we were doing.
        operation: String,
        /// The client error (with Graph's request id).
        #[source]
        source: EntraError,
    },
    /// Graph refused the tenant admin's token with a Conditional Access claims challenge
    /// (`insufficient_claims`): the organisation's policy wants a new sign-in that satisfies it.
    /// Not a lack of rights; retrying does not help (gRPC: FAILED_PRECONDITION).
    #[error(
        "{operation}: the organisation's Conditional Access policy requires the admin to sign \
         in again, satisfying the policy (e.g. multi-factor authentication or a compliant \
         device): create an invitation so the admin signs in again; retrying or granting roles \
         will not help ({source})"
    )]
    ConditionalAccess {
        /// What we were doing.
        operation: String,
        /// The Graph error carrying the challenge.
        #[source]
        source: EntraError,
    },
    /// The credential store (sled) failed.
    #[error("credential store: {0}")]
    Store(String),
    /// Sealing or opening a stored secret failed (wrong key or altered record).
    #[error("sealed secret: {0}")]
    Crypto(String),
    /// The work stopped at a durable point: the server is shutting down, or a test hook
    /// simulated a crash. It resumes at the next start.
    #[error("stopped at {0}")]
    Halted(String),
    /// A rotation stopped before its hand-over: no caller confirmed the new secret was queued
    /// to it (it went away, or the server could not pass the events on in time). The old
    /// secret stays current; the next RotateSecret (or auto-rotation) resumes the rotation.
    #[error("the rotation waits before its hand-over: {0}")]
    AwaitsCaller(String),
}

impl CredentialsError {
    /// Wraps an Entra error with what we were doing.
    /// A claims challenge becomes [`CredentialsError::ConditionalAccess`].
    pub fn entra(operation: impl Into<String>, source: EntraError) -> Self {
        let operation = operation.into();
        if source.is_claims_challenge() {
            return Self::ConditionalAccess { operation, source };
        }
        Self::Entra { operation, source }
    }

    /// True when Microsoft could not answer ([`EntraError::is_outage`]): an outage, which
    /// callers report as one (UNAVAILABLE), never as a property of the request.
    pub fn is_entra_outage(&self) -> bool {
        matches!(self, Self::Entra { source, .. } if source.is_outage())
    }

    /// The Graph error code, when this is a Graph refusal.
    pub fn graph_code(&self) -> Option<&str> {
        match self {
            Self::Entra { source, .. } | Self::ConditionalAccess { source, .. } => {
                source.root().graph().map(|g| g.code.as_str())
            }
            _ => None,
        }
    }

    /// The HTTP status of the Graph error behind this one, if any.
    pub fn graph_status(&self) -> Option<u16> {
        match self {
            Self::Entra { source, .. } | Self::ConditionalAccess { source, .. } => {
                source.root().graph().map(|g| g.status)
            }
            _ => None,
        }
    }
}

impl From<onboard_core::CoreError> for CredentialsError {
    fn from(e: onboard_core::CoreError) -> Self {
        use onboard_core::CoreError as C;
        match e {
            C::Audit(a) => Self::Audit(a),
            C::Crypto(c) => Self::Crypto(c),
            C::Entra { operation, source } => Self::entra(operation, source),
            e @ (C::Profile(_) | C::UnknownPermission { .. } | C::MissingResource { .. }) => {
                Self::FailedPrecondition(e.to_string())
            }
            C::Store(m) => Self::Store(m),
            e @ C::Entry { .. } => Self::Store(e.to_string()),
        }
    }
}
