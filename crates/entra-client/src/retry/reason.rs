//! Why a request is retried: the reason (with the status and codes, for logs and the audit
//! log) and its kind (for programs and progress text in plain words).

use std::fmt;
use std::time::Duration;

use crate::error::TransportErrorKind;

/// Why a request is being retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryReason {
    /// 429: the tenant or app is throttled; `retry_after` is what the server asked for.
    Throttled {
        /// The server's `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
    /// 500, 502, 503 or 504, or the STS said `temporarily_unavailable`.
    ServerError {
        /// The HTTP status.
        status: u16,
        /// The server's `Retry-After`, if sent (503 often has one).
        retry_after: Option<Duration>,
    },
    /// A just-created object is not visible yet on the replica that answered.
    ReplicationLag {
        /// The HTTP status (404, 400 or 403).
        status: u16,
        /// Graph's error code, for progress text and the audit log.
        code: String,
    },
    /// A just-created app, SP or secret is not yet known to the STS (AADSTS700016 / 7000215 /
    /// 7000229).
    CredentialPropagation {
        /// The AADSTS number.
        aadsts: u32,
    },
    /// No HTTP answer (connect failure, or a timeout on an idempotent call).
    Transport {
        /// What kind of transport failure.
        kind: TransportErrorKind,
    },
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryReason::Throttled { .. } => write!(f, "throttled (429)"),
            RetryReason::ServerError { status, .. } => write!(f, "server error ({status})"),
            RetryReason::ReplicationLag { status, code } => {
                write!(f, "waiting for directory replication ({status} {code})")
            }
            RetryReason::CredentialPropagation { aadsts } => {
                write!(
                    f,
                    "waiting for the new credential to propagate (AADSTS{aadsts})"
                )
            }
            RetryReason::Transport { kind } => write!(f, "transport failure ({kind:?})"),
        }
    }
}

/// What kind of wait a [`RetryReason`] is: for programs and for progress text in plain words
/// (the reason's `Display` carries the status and codes). Stored in provision events, so
/// variants are only ever added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryKind {
    /// Not recorded (an event stored before kinds were).
    #[default]
    Unspecified,
    /// Microsoft asked for fewer requests (429).
    Throttled,
    /// Microsoft answered with a temporary server error (5xx, `temporarily_unavailable`).
    MicrosoftUnavailable,
    /// Something just created is not visible yet on the replica that answered.
    Replication,
    /// A just-created app, service principal or secret is not yet known to the token service.
    CredentialPropagation,
    /// No answer from Microsoft (connection failure, time-out).
    Network,
}

impl RetryReason {
    /// What kind of wait this is.
    pub fn kind(&self) -> RetryKind {
        match self {
            RetryReason::Throttled { .. } => RetryKind::Throttled,
            RetryReason::ServerError { .. } => RetryKind::MicrosoftUnavailable,
            RetryReason::ReplicationLag { .. } => RetryKind::Replication,
            RetryReason::CredentialPropagation { .. } => RetryKind::CredentialPropagation,
            RetryReason::Transport { .. } => RetryKind::Network,
        }
    }

    pub(super) fn is_replication(&self) -> bool {
        matches!(
            self,
            RetryReason::ReplicationLag { .. } | RetryReason::CredentialPropagation { .. }
        )
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            RetryReason::Throttled { retry_after }
            | RetryReason::ServerError { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
