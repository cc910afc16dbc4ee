//! The records kept per managed registration, and the views handed to callers (no values).

use std::collections::BTreeMap;

use onboard_core::ResolvedProfile;
use onboard_core::audit::Scope;

use crate::rotate::RotationState;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where a managed registration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Made by an Onboard onboarding (imported from the provisioning engine).
    Provisioned,
    /// Made by hand by the customer and attached with its ids and secret.
    Attached,
}

impl Source {
    /// Lower-case name for views and audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Provisioned => "provisioned",
            Source::Attached => "attached",
        }
    }
}

/// How day-two changes to the registration's secrets authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// A signed-in admin of the tenant (a stored, renewable admin session).
    AdminSession,
    /// The app itself, by client credentials with its current secret: it holds
    /// `Application.ReadWrite.OwnedBy` and its service principal owns the registration.
    SelfRotation,
}

/// One client secret Onboard manages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Entra's key id: how it is removed and how the audit log names it. Empty when an attached
    /// secret's key id could not be read (then it is found by hint when it must be removed).
    pub key_id: String,
    /// First characters Entra keeps, so humans can tell secrets apart.
    pub hint: String,
    /// The service it was made for (also its `displayName` in Entra).
    pub service_id: String,
    /// Valid from (RFC 3339).
    pub start: String,
    /// Valid until (RFC 3339); drives expiry reports and automatic rotation.
    pub end: String,
    /// The value, sealed (XChaCha20-Poly1305, bound to the registration and key id); never clear.
    pub sealed: String,
}

/// A managed app registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    /// Stable id: the onboarding id for provisioned ones, `att-<uuid>` for attached ones. It is
    /// the `onboarding_id` of every audit entry, so day one and day two read as one trail.
    pub id: String,
    /// Customer tenant id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Application object id, when known (attached apps may hide it from their own token).
    pub app_object_id: Option<String>,
    /// Service principal object id (principal of grants and role assignments).
    pub sp_id: String,
    /// Display name, for views and audit targets.
    pub display_name: String,
    /// The permissions and roles the registration is checked against.
    pub profile: ResolvedProfile,
    /// Provisioned or attached.
    pub source: Source,
    /// How secret changes authenticate.
    pub auth_mode: AuthMode,
    /// Every secret Onboard holds for it, by key id (or `hint:<hint>` while the key id is unknown).
    pub secrets: BTreeMap<String, StoredSecret>,
    /// The secret each service uses now: service id → key of `secrets`.
    pub current: BTreeMap<String, String>,
    /// When it became managed (RFC 3339).
    pub attached_at: String,
    /// Rotations in flight, by service id. Kept in this record so each step is one atomic
    /// write together with the secrets it changes.
    #[serde(default)]
    pub rotations: BTreeMap<String, RotationState>,
    /// Attachments made by invitations ("Use App Registration" in the wizard): attachment id
    /// (`att-<uuid>`, what the invitation names as its onboarding) → the service it gave a
    /// secret. How the platform's ClaimSecret finds the secret the customer entered. Absent in
    /// records written before it existed (none had any).
    #[serde(default)]
    pub attachments: BTreeMap<String, String>,
    /// The secret each attachment entered: attachment id → key of `secrets`. ClaimSecret hands
    /// over this one, not whatever the service uses by then (a secret added or rotated in since
    /// went to the caller of that change). Absent in records written before it existed: their
    /// attachments fall back to the service's current secret.
    #[serde(default)]
    pub attachment_secrets: BTreeMap<String, String>,
}

impl Registration {
    /// Who and what an audit entry about this registration names: `actor`, its tenant, its id
    /// (the onboarding id auditors filter by), `service_id` (none when empty) and its client id.
    pub fn audit_scope(&self, service_id: &str, actor: &str) -> Scope {
        Scope {
            actor: actor.to_owned(),
            tenant_id: Some(self.tenant_id.clone()),
            onboarding_id: Some(self.id.clone()),
            service_id: (!service_id.is_empty()).then(|| service_id.to_owned()),
            client_id: Some(self.client_id.clone()),
        }
    }

    /// The key of `secrets` for a stored secret.
    pub fn secret_key(s: &StoredSecret) -> String {
        if s.key_id.is_empty() {
            format!("hint:{}", s.hint)
        } else {
            s.key_id.to_ascii_lowercase()
        }
    }

    /// The secret service `service_id` uses now.
    pub fn current_secret(&self, service_id: &str) -> Option<&StoredSecret> {
        self.current
            .get(service_id)
            .and_then(|k| self.secrets.get(k))
    }

    /// Services whose current secret is `key`.
    pub fn users_of(&self, key: &str) -> Vec<String> {
        self.current
            .iter()
            .filter(|(_, k)| k.as_str() == key)
            .map(|(s, _)| s.clone())
            .collect()
    }
}

/// A secret's metadata, as listed (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// Entra's key id (empty if unknown).
    pub key_id: String,
    /// First characters of the value.
    pub hint: String,
    /// The service it belongs to.
    pub service_id: String,
    /// Valid from (RFC 3339).
    pub start: String,
    /// Valid until (RFC 3339).
    pub end: String,
    /// Whole days until it expires, negative once expired.
    pub days_until_expiry: i64,
    /// True when it is the service's current secret (false: being retired after a rotation).
    pub current: bool,
}

impl SecretInfo {
    /// The view of `s` at `now`.
    pub fn of(s: &StoredSecret, current: bool, now: OffsetDateTime) -> Self {
        Self {
            key_id: s.key_id.clone(),
            hint: s.hint.clone(),
            service_id: s.service_id.clone(),
            start: s.start.clone(),
            end: s.end.clone(),
            days_until_expiry: days_until(&s.end, now),
            current,
        }
    }
}

/// Whole days from `now` until `end` (RFC 3339), rounded down; `i64::MAX` when unparseable so a
/// bad date never looks expiring.
pub fn days_until(end: &str, now: OffsetDateTime) -> i64 {
    match onboard_core::time::parse(end) {
        Some(t) => (t - now).whole_seconds().div_euclid(86_400),
        None => i64::MAX,
    }
}

/// A managed registration, as listed (no secret values).
#[derive(Debug, Clone)]
pub struct RegistrationView {
    /// Stable id (see [`Registration::id`]).
    pub id: String,
    /// Customer tenant.
    pub tenant_id: String,
    /// Client id.
    pub client_id: String,
    /// Application object id, when known.
    pub app_object_id: Option<String>,
    /// Service principal id.
    pub sp_id: String,
    /// Display name.
    pub display_name: String,
    /// Profile name.
    pub profile: String,
    /// Provisioned or attached.
    pub source: Source,
    /// How secret changes authenticate.
    pub auth_mode: AuthMode,
    /// Services using it.
    pub services: Vec<String>,
    /// Metadata of every secret held.
    pub secrets: Vec<SecretInfo>,
    /// When it became managed.
    pub attached_at: String,
}

impl RegistrationView {
    /// The view of `r` at `now`.
    pub fn of(r: &Registration, now: OffsetDateTime) -> Self {
        let secrets = r
            .secrets
            .iter()
            .map(|(k, s)| SecretInfo::of(s, !r.users_of(k).is_empty(), now))
            .collect();
        Self {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            client_id: r.client_id.clone(),
            app_object_id: r.app_object_id.clone(),
            sp_id: r.sp_id.clone(),
            display_name: r.display_name.clone(),
            profile: r.profile.name.clone(),
            source: r.source,
            auth_mode: r.auth_mode,
            services: r.current.keys().cloned().collect(),
            secrets,
            attached_at: r.attached_at.clone(),
        }
    }
}

/// Formats a time as Graph takes it in requests (RFC 3339, whole seconds).
pub fn graph_time(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_until_rounds_down_and_goes_negative() {
        let now = OffsetDateTime::parse("2026-11-26T12:00:00Z", &Rfc3339).expect("parse");
        assert_eq!(days_until("2026-12-26T12:00:00Z", now), 30);
        assert_eq!(days_until("2026-12-26T11:59:59Z", now), 29);
        assert_eq!(days_until("2026-11-25T12:00:00Z", now), -1);
        assert_eq!(days_until("2026-11-26T11:00:00Z", now), -1);
        assert_eq!(days_until("garbage", now), i64::MAX);
    }
}
