//! What callers see of an onboarding: ids, status, progress and secret metadata, never the
//! sealed values.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{OnboardingRecord, Status};

/// An onboarding as `get` and `list` report it.
#[derive(Debug, Clone, Serialize)]
pub struct Onboarding {
    /// Onboarding id.
    pub id: String,
    /// Direct Routing service id.
    pub service_id: String,
    /// Customer tenant id.
    pub tenant_id: String,
    /// App registration name.
    pub app_name: String,
    /// Profile name.
    pub profile: String,
    /// Where it stands.
    pub status: Status,
    /// Application (client) id, once made.
    pub client_id: Option<String>,
    /// Application object id, once made.
    pub app_object_id: Option<String>,
    /// Service principal id, once made.
    pub sp_id: Option<String>,
    /// Secret key id, once made.
    pub secret_key_id: Option<String>,
    /// Secret hint (first characters).
    pub secret_hint: Option<String>,
    /// Secret expiry (RFC 3339).
    pub secret_expires: Option<String>,
    /// Grants made: `resource/value` -> assignment id.
    pub grants: BTreeMap<String, String>,
    /// Role assignments made: template id -> assignment id.
    pub role_assignments: BTreeMap<String, String>,
    /// Confirmed steps in order.
    pub steps_done: Vec<String>,
    /// Last error.
    pub error: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// The current or last wait for a privileged admin.
    pub hand_off: Option<crate::store::HandOff>,
    /// The admin who signed in last (the first admin's UPN while a hand-off waits).
    pub admin_upn: String,
}

impl From<&OnboardingRecord> for Onboarding {
    fn from(r: &OnboardingRecord) -> Self {
        Self {
            hand_off: r.hand_off.clone(),
            admin_upn: r.admin_upn.clone(),
            id: r.id.clone(),
            service_id: r.service_id.clone(),
            tenant_id: r.tenant_id.clone(),
            app_name: r.app_name.clone(),
            profile: r.profile.name.clone(),
            status: r.status,
            client_id: r.client_id.clone(),
            app_object_id: r.app_object_id.clone(),
            sp_id: r.sp_id.clone(),
            secret_key_id: r.secret.as_ref().map(|s| s.key_id.clone()),
            secret_hint: r.secret.as_ref().and_then(|s| s.hint.clone()),
            secret_expires: r.secret.as_ref().and_then(|s| s.end_date_time.clone()),
            grants: r.grants.clone(),
            role_assignments: r.role_assignments.clone(),
            steps_done: r.steps_done.clone(),
            error: r.error.clone(),
            created_at: r.created_at.clone(),
            updated_at: r.updated_at.clone(),
        }
    }
}

impl Onboarding {
    /// Whether its last step, the temporary `-token` app's removal, is done: that app is gone
    /// (removed by this run, or found gone). Its admin's refresh token was issued to that app,
    /// so the sign-in can no longer be renewed: an undo once the access token has expired needs
    /// another admin's sign-in, also when an undo begun after the removal failed (the
    /// onboarding is then `Cancelling`).
    pub fn token_app_removed(&self) -> bool {
        self.steps_done
            .iter()
            .any(|s| s == crate::steps::ids::TOKEN_APP)
    }
}

/// Which onboardings `list` returns; `None` fields match anything.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this tenant.
    pub tenant_id: Option<String>,
    /// Only this service.
    pub service_id: Option<String>,
    /// Only this status.
    pub status: Option<Status>,
}

impl ListFilter {
    /// Whether `r` passes.
    pub fn matches(&self, r: &OnboardingRecord) -> bool {
        // Tenant ids compare without regard to case, as in Entra.
        self.tenant_id
            .as_ref()
            .is_none_or(|t| t.eq_ignore_ascii_case(&r.tenant_id))
            && self.service_id.as_ref().is_none_or(|s| *s == r.service_id)
            && self.status.is_none_or(|s| s == r.status)
    }
}
