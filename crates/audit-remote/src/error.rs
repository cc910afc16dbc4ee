//! The crate's one error type.

use audit_log::AuditError;

/// What publishing to or reading from a remote place can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A location that names no place we can read or write.
    #[error("{location:?}: {reason}")]
    BadLocation {
        /// The location as given.
        location: String,
        /// Why it is refused.
        reason: String,
    },
    /// The resource does not exist (HTTP 404, no such object or file).
    #[error("{location}: not found")]
    NotFound {
        /// Where it was looked for.
        location: String,
    },
    /// HTTP 403. A static bucket (S3, or any store whose anonymous readers may not list it)
    /// answers a GET of a missing object so, which is why a partial tile refused so is looked
    /// for in its full tile, as for a 404.
    #[error("{location}: HTTP 403 Forbidden: {detail}")]
    Forbidden {
        /// The URL.
        location: String,
        /// The answer's body, cut short.
        detail: String,
    },
    /// The object store failed (after its own retries).
    #[error("{location}: {source}")]
    Store {
        /// The object's location.
        location: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// An HTTP request failed or was answered with an error status.
    #[error("{location}: {detail}")]
    Http {
        /// The URL.
        location: String,
        /// Status or transport failure.
        detail: String,
    },
    /// What the place holds contradicts the log: a checkpoint we cannot verify, or one that
    /// is ahead of or forks from the log. Publication stops; nothing is overwritten.
    #[error("{0}")]
    Conflict(String),
    /// Something fetched is malformed (a tile of the wrong length, a checkpoint that does not
    /// parse, an entry that does not hash to its tile).
    #[error("{location}: {detail}")]
    Invalid {
        /// What was fetched.
        location: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The audit log refused (a tile beyond its checkpoint, a storage error).
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl RemoteError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// True when retrying cannot help (the target contradicts the log, or is not usable).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Conflict(_) | Self::BadLocation { .. } | Self::Audit(_)
        )
    }

    /// As an IO error, for [`audit_log::TileReader`]: `NotFound` stays recognisable, and so
    /// does `Forbidden` (as `PermissionDenied`: a bucket whose anonymous readers may not list
    /// it answers a missing object 403, so a partial tile gone is cut from its full one). What
    /// the place holds being wrong is `InvalidData`; a transport, server or store failure stays
    /// `Other`, which the verifier reports as not read rather than as wrong
    /// ([`audit_log::AuditError::is_unreadable`]).
    pub(crate) fn into_io(self) -> std::io::Error {
        use std::io::ErrorKind;
        if let Self::Io { source, .. } = self {
            return source;
        }
        let kind = match &self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Forbidden { .. } => ErrorKind::PermissionDenied,
            Self::Http { .. } | Self::Store { .. } | Self::Io { .. } => ErrorKind::Other,
            Self::BadLocation { .. }
            | Self::Conflict(_)
            | Self::Invalid { .. }
            | Self::Audit(_) => ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, self.to_string())
    }

    /// True when the place could not be read or written for now (a transport or server error,
    /// a store failure, HTTP 403): nothing was learnt about what it holds. Trying again may help.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Http { .. } | Self::Store { .. } | Self::Forbidden { .. }
        )
    }
}
