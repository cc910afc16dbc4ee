//! What a verification needs: the registration, what it should hold, and where its platform
//! service answers. Built by a [`crate::Targets`] implementation.

use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;

/// What to verify, as an operator names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An app registration by application (client) id.
    ClientId(String),
    /// A Direct Routing service by id; its registration is looked up.
    ServiceId(String),
}

impl Target {
    /// `client_id:…` / `service_id:…`, for audit entries and messages.
    pub fn describe(&self) -> String {
        match self {
            Target::ClientId(c) => format!("client_id {c}"),
            Target::ServiceId(s) => format!("service_id {s}"),
        }
    }
}

/// A directory role the service principal should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedRole {
    /// Display name, for details (`Teams Administrator`).
    pub name: String,
    /// Built-in template id (used as `roleDefinitionId`).
    pub template_id: String,
}

/// How the platform service reports its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The gRPC health checking protocol (`grpc.health.v1.Health/Check`) at `url`
    /// (`http://` or `https://`), asking for `service`.
    GrpcHealth {
        /// The endpoint, e.g. `https://dr-1.platform.example:443`.
        url: String,
        /// The service name asked for (the platform service id).
        service: String,
    },
    /// `GET url` answering 200 with a JSON object whose `status` is `"OK"` (any case) or
    /// `"SERVING"`.
    HttpJson {
        /// The status URL, e.g. `https://dr-1.platform.example/status`.
        url: String,
    },
}

/// One platform endpoint to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformEndpoint {
    /// What to ask and where.
    pub probe: Probe,
    /// Extra CA certificates (PEM) to trust for an `https` endpoint. gRPC over TLS needs it
    /// (system roots are not loaded for gRPC); the HTTP probe also trusts the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Connect + answer budget; past it the check FAILs with the address.
    pub timeout: Duration,
}

/// A secret Onboard holds, as Entra lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedSecret {
    /// Entra's key id; empty when it could not be read (an attached secret), then the hint
    /// matches it.
    pub key_id: String,
    /// The first characters Entra keeps.
    pub hint: String,
    /// Set for a rotation's new secret between Entra's add and the record of its key id: the
    /// unique `displayName` it was added with, which matches it instead.
    pub marker: Option<String>,
}

/// Everything one verification reads. The secret and the reader token never appear in
/// `Debug` output (secrecy redacts them), logs, errors or reports.
#[derive(Debug, Clone)]
pub struct VerifyInput {
    /// Customer tenant id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// The application's object id, when known (the audit entries' `target.id`).
    pub app_object_id: Option<String>,
    /// The app's service principal object id (directory roles are assigned to it).
    pub sp_id: String,
    /// The Direct Routing service the registration serves, if known.
    pub service_id: Option<String>,
    /// The profile name (drift repair is enabled per profile).
    pub profile: String,
    /// The stored client secret.
    pub secret: SecretString,
    /// The stored secret's key id, for details and drift items.
    pub secret_key_id: Option<String>,
    /// When the stored secret expires (`None`: unknown, which is a WARN).
    pub secret_expires: Option<OffsetDateTime>,
    /// Microsoft Graph application permissions the app should hold, exactly.
    pub graph_permissions: Vec<String>,
    /// Skype and Teams Tenant Admin API application permissions it should hold, exactly; when
    /// empty, no token for that API is asked for.
    pub tenant_admin_permissions: Vec<String>,
    /// Directory roles its service principal should hold, exactly.
    pub directory_roles: Vec<ExpectedRole>,
    /// A secret expiring within this is a WARN.
    pub horizon: Duration,
    /// A secret expiring within this (or expired) is a FAIL.
    pub critical: Duration,
    /// The temporary enterprise app's display name, `<server>-<provider>-token`, for messages.
    pub temporary_app_name: String,
    /// Client id of the provider's token app: the temporary enterprise app is looked for by
    /// this `appId` (its service principal carries the provider app's own display name, so a
    /// lookup by name can miss it). Empty: unknown, the check WARNs.
    pub temporary_app_client_id: String,
    /// The platform service's status endpoints (none: the check WARNs that none is configured).
    pub platform: Vec<PlatformEndpoint>,
    /// Every secret Onboard holds for the registration (all services, old ones kept for an
    /// overlap too): the application's credentials are compared with them, and any other
    /// secret or any certificate is reported as made outside Onboard. `None` where they are
    /// not known (that check is then not run).
    pub managed_secrets: Option<Vec<ManagedSecret>>,
    /// A token allowed to read directory role assignments and service principals (an admin's
    /// delegated token). Without it the app's own Graph token is tried, which the default
    /// profile does not allow (the check then WARNs with the permission it needs).
    pub reader_token: Option<SecretString>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_secret_and_the_reader_token() {
        let input = VerifyInput {
            tenant_id: "t".into(),
            client_id: "c".into(),
            app_object_id: None,
            sp_id: "s".into(),
            service_id: None,
            profile: "direct-routing".into(),
            secret: SecretString::from("s3cr3t-value".to_owned()),
            secret_key_id: None,
            secret_expires: None,
            graph_permissions: vec![],
            tenant_admin_permissions: vec![],
            directory_roles: vec![],
            horizon: Duration::from_secs(1),
            critical: Duration::from_secs(1),
            temporary_app_name: "x-y-token".into(),
            temporary_app_client_id: String::new(),
            platform: vec![],
            reader_token: Some(SecretString::from("reader-token-value".to_owned())),
            managed_secrets: None,
        };
        let text = format!("{input:?}");
        assert!(!text.contains("s3cr3t-value") && !text.contains("reader-token-value"));
        assert!(text.contains("x-y-token"));
    }
}
