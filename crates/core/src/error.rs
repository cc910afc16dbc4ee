//! The crate's one error type, and [`FieldViolation`], how every crate names a bad request
//! field. Messages never carry a secret or a token.

/// One invalid request field, reported as a `google.rpc.BadRequest` field violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The request field's name as in the .proto (e.g. `to_seq`), so clients can point at it.
    pub field: String,
    /// What is wrong with it (the rule broken), for a human.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Everything the shared vocabulary can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The profile file or a profile lookup is wrong.
    #[error("profile: {0}")]
    Profile(String),
    /// Sealing or opening a stored secret failed (wrong key or altered record).
    #[error("sealed secret: {0}")]
    Crypto(String),
    /// Writing the audit log failed: the change was not made (fail closed).
    #[error("audit log write failed, no change made: {0}")]
    Audit(#[from] audit_log::AuditError),
    /// An audit entry breaks its action's contract (a detail the action does not declare).
    /// A programming error, caught by the tests that write every kind of entry.
    #[error("audit entry {action}: {problem}")]
    Entry {
        /// The entry's action.
        action: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A permission of the profile is not offered by the resource in this tenant.
    #[error("{resource} offers no application permission {permission:?}")]
    UnknownPermission {
        /// Resource display name or app id.
        resource: String,
        /// Permission value, e.g. `User.Read.All`.
        permission: String,
    },
    /// The tenant has no service principal for a resource the profile's permissions need
    /// (Microsoft adds its own apps' service principals to a tenant only when something uses
    /// them).
    #[error(
        "this tenant has no service principal for {resource} (appId {app_id}), whose \
         permissions the profile grants; an administrator can add Microsoft's app to the tenant \
         (PowerShell: New-MgServicePrincipal -AppId {app_id}; Graph: POST /servicePrincipals \
         {{\"appId\": \"{app_id}\"}}), then try again"
    )]
    MissingResource {
        /// The resource's display name.
        resource: String,
        /// Its application (client) id.
        app_id: String,
    },
    /// Microsoft identity platform or Graph refused or failed.
    #[error("{operation}: {source}")]
    Entra {
        /// What we were doing.
        operation: String,
        /// The client error (with Graph's request id).
        #[source]
        source: entra_client::EntraError,
    },
    /// A sled store failed, or its durable flush did.
    #[error("store: {0}")]
    Store(String),
}

impl From<sled::Error> for CoreError {
    fn from(e: sled::Error) -> Self {
        CoreError::Store(e.to_string())
    }
}

impl From<serde_json::Error> for CoreError {
    fn from(e: serde_json::Error) -> Self {
        CoreError::Store(format!("record encoding: {e}"))
    }
}

impl CoreError {
    /// Wraps an Entra error with what we were doing.
    pub fn entra(operation: impl Into<String>, source: entra_client::EntraError) -> Self {
        CoreError::Entra {
            operation: operation.into(),
            source,
        }
    }
}
