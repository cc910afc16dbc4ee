//! Reports: checks with a status and a human detail, the structured findings behind them
//! (drift items), and the report's audit entry.

use audit_log::AuditLog;
use onboard_core::audit::{Action, AuditEntry, Phase, Scope, Target, TargetKind};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::Result;

/// Check names, in the order they run.
pub mod names {
    /// The platform service is deployed and reports OK.
    pub const PLATFORM_STATUS: &str = "platform_status";
    /// The stored secret gets a client-credentials token for Microsoft Graph.
    pub const CLIENT_CREDENTIALS: &str = "client_credentials";
    /// The stored secret gets a token for the Skype and Teams Tenant Admin API.
    pub const TENANT_ADMIN_API_TOKEN: &str = "tenant_admin_api_token";
    /// The tokens' `roles` equal the profile's permissions.
    pub const TOKEN_ROLES: &str = "token_roles";
    /// The service principal's directory roles equal the profile's.
    pub const DIRECTORY_ROLES: &str = "directory_roles";
    /// The secret is not expiring within the horizon.
    pub const SECRET_EXPIRY: &str = "secret_expiry";
    /// The temporary `-token` enterprise app is gone.
    pub const TEMPORARY_APP_REMOVED: &str = "temporary_app_removed";
    /// The application holds no secret or certificate Onboard did not make (run when the
    /// secrets Onboard holds are known: the Verification service and drift detection).
    pub const APP_CREDENTIALS: &str = "app_credentials";
}

/// A check's outcome; ordered so that the worst is the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// As expected.
    Ok,
    /// Works but needs attention, or could not be checked (the detail says why).
    Warn,
    /// Broken or drifted.
    Fail,
}

impl Status {
    /// `OK` / `WARN` / `FAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// One of [`names`].
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found, for a human.
    pub detail: String,
}

impl Check {
    /// A check result.
    pub fn new(name: &str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            status,
            detail: detail.into(),
        }
    }
}

/// Which API offers a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Microsoft Graph.
    Graph,
    /// Skype and Teams Tenant Admin API.
    TenantAdmin,
}

impl Api {
    /// The API's client id (to find its service principal when repairing).
    pub fn app_id(self) -> &'static str {
        match self {
            Api::Graph => entra_client::MICROSOFT_GRAPH_APP_ID,
            Api::TenantAdmin => entra_client::TEAMS_TENANT_ADMIN_API_APP_ID,
        }
    }

    /// Short name for keys: `graph`, `tenant_admin`.
    pub fn key(self) -> &'static str {
        match self {
            Api::Graph => "graph",
            Api::TenantAdmin => "tenant_admin",
        }
    }
}

/// A difference between Entra and the profile: what drift detection records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// A permission the profile has is not in the token's roles.
    MissingPermission {
        /// Which API.
        api: Api,
        /// The app role value.
        value: String,
    },
    /// The token holds a permission the profile does not have.
    ExtraPermission {
        /// Which API.
        api: Api,
        /// The app role value.
        value: String,
    },
    /// A directory role the profile has is not assigned.
    MissingRole {
        /// Display name.
        name: String,
        /// Template id.
        template_id: String,
    },
    /// A directory role is assigned that the profile does not have.
    ExtraRole {
        /// Role definition id as assigned.
        role_definition_id: String,
    },
    /// The stored secret no longer authenticates (removed, replaced or expired in Entra).
    SecretRejected {
        /// The AADSTS error, without secrets.
        error: String,
    },
    /// The stored secret expires within the horizon (or has expired).
    SecretExpiring {
        /// Expiry (RFC 3339).
        expires: String,
    },
    /// The application holds a credential Onboard did not make: a client secret Onboard does
    /// not hold, or a certificate (Onboard makes none). Anyone holding it signs in as the app.
    ForeignCredential {
        /// `secret`, `certificate` or `federated identity credential` (on the application),
        /// `service principal secret` or `service principal certificate`.
        credential: &'static str,
        /// Entra's key id (a federated identity credential's id).
        key_id: String,
        /// Its label in Entra, if any.
        display_name: Option<String>,
    },
}

impl Finding {
    /// `permission`, `role`, `secret` or `credential`.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::MissingPermission { .. } | Finding::ExtraPermission { .. } => "permission",
            Finding::MissingRole { .. } | Finding::ExtraRole { .. } => "role",
            Finding::SecretRejected { .. } | Finding::SecretExpiring { .. } => "secret",
            Finding::ForeignCredential { .. } => "credential",
        }
    }

    /// A stable key, the same in every run for the same difference.
    pub fn key(&self) -> String {
        match self {
            Finding::MissingPermission { api, value } => {
                format!("permission/{}/{value}/missing", api.key())
            }
            Finding::ExtraPermission { api, value } => {
                format!("permission/{}/{value}/extra", api.key())
            }
            Finding::MissingRole { template_id, .. } => format!("role/{template_id}/missing"),
            Finding::ExtraRole { role_definition_id } => {
                format!("role/{role_definition_id}/extra")
            }
            Finding::SecretRejected { .. } => "secret/rejected".into(),
            Finding::SecretExpiring { .. } => "secret/expiring".into(),
            Finding::ForeignCredential { key_id, .. } => {
                format!("credential/{}/foreign", key_id.to_ascii_lowercase())
            }
        }
    }

    /// For a human.
    pub fn detail(&self) -> String {
        match self {
            Finding::MissingPermission { api, value } => {
                format!("permission {value} ({}) is no longer granted", api.key())
            }
            Finding::ExtraPermission { api, value } => {
                format!(
                    "permission {value} ({}) was granted outside Onboard",
                    api.key()
                )
            }
            Finding::MissingRole { name, template_id } => {
                format!("directory role {name} ({template_id}) is no longer assigned")
            }
            Finding::ExtraRole { role_definition_id } => format!(
                "directory role {} was assigned outside Onboard",
                crate::checks::role_name(role_definition_id)
            ),
            Finding::SecretRejected { error } => {
                format!("the stored secret no longer authenticates: {error}")
            }
            Finding::SecretExpiring { expires } => format!("the secret expires at {expires}"),
            Finding::ForeignCredential {
                credential,
                key_id,
                display_name,
            } => format!(
                "a {credential}{} (key {key_id}) was added to the app outside Onboard",
                display_name
                    .as_deref()
                    .map(|n| format!(" {n:?}"))
                    .unwrap_or_default()
            ),
        }
    }

    /// Whether automatic repair can put it back (a missing permission or role).
    pub fn repairable(&self) -> bool {
        matches!(
            self,
            Finding::MissingPermission { .. } | Finding::MissingRole { .. }
        )
    }
}

/// A verification report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Tenant id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// The application's object id, when known.
    pub app_object_id: Option<String>,
    /// The platform service id, if known.
    pub service_id: Option<String>,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// The differences behind the checks, for drift detection.
    pub findings: Vec<Finding>,
    /// When the checks ran.
    pub checked_at: OffsetDateTime,
}

impl Report {
    /// The worst status among the checks (`OK` when there are none).
    pub fn overall(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The report's audit entry (no secret: the secret is named by key id only, and only in
    /// details that mention it). `profile` is the registration's profile name.
    pub fn audit_entry(&self, actor: &str, trigger: &str, profile: &str) -> AuditEntry {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| json!({"name": c.name, "status": c.status.as_str(), "detail": c.detail}))
            .collect();
        registration_entry(
            (Action::VerificationReport, Phase::Succeeded, actor),
            &self.tenant_id,
            &self.client_id,
            self.service_id.clone(),
            self.app_object_id.clone(),
        )
        .with_detail("trigger", trigger)
        .with_detail("profile", profile)
        .with_detail("overall", self.overall().as_str())
        .with_detail("checks", checks)
        .with_detail("checked_at", onboard_core::time::format(self.checked_at))
    }

    /// Appends the report to the audit log (action `verification.report`); returns its seq.
    pub async fn record(
        &self,
        audit: &AuditLog,
        actor: &str,
        trigger: &str,
        profile: &str,
    ) -> Result<u64> {
        Ok(self
            .audit_entry(actor, trigger, profile)
            .append(audit)
            .await?)
    }
}

/// An entry of `action` by `actor` about a registration's application (`app_object_id`, of
/// client `client_id` in `tenant_id`, used by `service_id`): what every verifier entry starts
/// from.
pub(crate) fn registration_entry(
    (action, phase, actor): (Action, Phase, &str),
    tenant_id: &str,
    client_id: &str,
    service_id: Option<String>,
    app_object_id: Option<String>,
) -> AuditEntry {
    let scope = Scope {
        actor: actor.to_owned(),
        tenant_id: Some(tenant_id.to_owned()),
        service_id,
        client_id: Some(client_id.to_owned()),
        ..Scope::default()
    };
    AuditEntry::new(action, phase, &scope)
        .with_target(Target::new(TargetKind::Application, app_object_id))
}
