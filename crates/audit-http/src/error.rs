//! The crate's one error type.

/// What setting up or running the tiles API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The `[audit_http]` settings are incomplete or contradictory.
    #[error("audit_http: {0}")]
    Config(String),
    /// A certificate, key or CA file could not be used.
    #[error("audit_http TLS: {0}")]
    Tls(String),
    /// Reading a file or serving the listener failed.
    #[error("audit_http: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl HttpError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
