//! What happens when a person approves a sign-in (device code or authorization code): who
//! signs in, consent, and the creation of the client's service principal in the tenant (the
//! temporary `<server>-<provider>-token` app); and which redirect URIs a client registered.

use std::collections::BTreeSet;

use crate::model::{PermissionGrant, ServicePrincipal, User};
use crate::seed::{
    APP_ADMIN, CLOUD_APP_ADMIN, GLOBAL_ADMIN, PRIV_ROLE_ADMIN, TOKEN_APP_SCOPES, USER_CONSENTABLE,
};
use crate::state::{DeviceStatus, Inner, Shared, new_guid, now_rfc3339};
use crate::tokens::parse_scopes;
use crate::{SimError, reply_url};

/// Roles that may grant tenant-wide consent to delegated permissions.
const CONSENT_ROLES: &[&str] = &[GLOBAL_ADMIN, PRIV_ROLE_ADMIN, APP_ADMIN, CLOUD_APP_ADMIN];

/// User codes are compared the way people type them: any case, dashes and spaces ignored.
fn normalize_code(c: &str) -> String {
    c.chars()
        .filter(|ch| ch.is_ascii_alphanumeric())
        .map(|ch| ch.to_ascii_uppercase())
        .collect()
}

/// A client app that can run the device flow.
pub struct ClientApp {
    /// Client id.
    pub app_id: String,
    /// Name (the SP's display name when consent creates it).
    pub display_name: String,
    /// Tenant owning the app registration.
    pub owner_tenant: String,
    /// Delegated permissions `.default` stands for.
    pub default_scopes: Vec<String>,
    /// Whether it may use public-client flows (else AADSTS7000218).
    pub public: bool,
}

/// The platform a redirect URI is registered under (the app's `web`, `publicClient` or `spa`
/// `redirectUris`), which decides how a code sent there is redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// A web app, a confidential client: redeeming needs its secret.
    Web,
    /// A mobile or desktop app, a public client: no secret may be presented.
    PublicClient,
    /// A single-page app: PKCE, and redemption cross-origin (with an `Origin` header).
    Spa,
}

impl Shared {
    /// Where `client_id` registered `uri` (compared as Entra does: [`crate::reply_url`]), or
    /// `None` if it did not (Entra refuses it with AADSTS50011 and never redirects there). The
    /// provider's token app has the public-client URIs of
    /// [`crate::Sim::set_token_app_redirect_uris`].
    pub fn redirect_kind(&self, inner: &Inner, client_id: &str, uri: &str) -> Option<RedirectKind> {
        if client_id.eq_ignore_ascii_case(&self.token_app_id) {
            let uris = &inner.token_app_redirect_uris;
            let known = uris.iter().any(|u| reply_url::matches(u, uri));
            return known.then_some(RedirectKind::PublicClient);
        }
        let app = inner.dir.app_by_app_id(client_id)?;
        let kinds = [
            ("web", RedirectKind::Web),
            ("publicClient", RedirectKind::PublicClient),
            ("spa", RedirectKind::Spa),
        ];
        kinds.into_iter().find_map(|(key, kind)| {
            let uris = app
                .props
                .get(key)
                .and_then(|v| v["redirectUris"].as_array())?;
            uris.iter()
                .filter_map(|u| u.as_str())
                .any(|u| reply_url::matches(u, uri))
                .then_some(kind)
        })
    }

    /// The provider's token app, or a local application, by client id.
    pub fn client_app(&self, inner: &Inner, client_id: &str) -> Option<ClientApp> {
        if client_id.eq_ignore_ascii_case(&self.token_app_id) {
            return Some(ClientApp {
                app_id: self.token_app_id.clone(),
                display_name: self.config.token_app_name(),
                owner_tenant: inner.dir.tenant.provider_tenant_id.clone(),
                default_scopes: self
                    .config
                    .token_app_scopes
                    .clone()
                    .unwrap_or_else(|| TOKEN_APP_SCOPES.iter().map(|s| s.to_string()).collect()),
                public: true,
            });
        }
        let app = inner.dir.app_by_app_id(client_id)?;
        let graph = inner.dir.sp_by_app_id(crate::seed::GRAPH_APP_ID);
        let default_scopes = app
            .props
            .get("requiredResourceAccess")
            .unwrap_or(&serde_json::Value::Null)
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["resourceAppId"] == crate::seed::GRAPH_APP_ID)
            .flat_map(|r| r["resourceAccess"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["type"] == "Scope")
            .filter_map(|a| {
                let id = a["id"].as_str()?;
                graph?
                    .oauth2_permission_scopes
                    .iter()
                    .find(|s| s["id"] == id)
                    .and_then(|s| s["value"].as_str().map(str::to_string))
            })
            .collect();
        let public = app
            .props
            .get("isFallbackPublicClient")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Some(ClientApp {
            app_id: app.app_id.clone(),
            display_name: app.display_name().to_string(),
            owner_tenant: inner.dir.tenant.id.clone(),
            default_scopes,
            public,
        })
    }

    /// Delegated permissions on `resource_sp_id` that `user_id` may use through client
    /// `client_id`: tenant-wide grants plus the user's own. `None` when the client has no
    /// service principal in the tenant (never consented).
    pub fn consented_scopes(
        &self,
        inner: &Inner,
        client_id: &str,
        resource_sp_id: &str,
        user_id: &str,
    ) -> Option<BTreeSet<String>> {
        let sp_id = inner.dir.sp_by_app_id(client_id)?.id.clone();
        Some(
            inner
                .dir
                .oauth2_permission_grants
                .iter()
                .filter(|g| g.client_id == sp_id && g.resource_id == resource_sp_id)
                .filter(|g| {
                    g.consent_type == "AllPrincipals" || g.principal_id.as_deref() == Some(user_id)
                })
                .flat_map(|g| g.scopes().map(str::to_string).collect::<Vec<_>>())
                .collect(),
        )
    }

    /// Name of the app a user code belongs to, for the sign-in page.
    pub fn client_name_for_code(&self, user_code: &str) -> Option<String> {
        let inner = self.lock();
        let wanted = normalize_code(user_code);
        let session = inner
            .device_codes
            .values()
            .find(|s| normalize_code(&s.user_code) == wanted)?;
        self.client_app(&inner, &session.client_id)
            .map(|c| c.display_name)
    }

    /// Approves (or declines) the device request with this user code as `upn`; returns whether
    /// it ended approved (the decline-all fault turns an approval into a decline; the
    /// block-device-code fault refuses it, `SimError::BlockedByConditionalAccess`).
    pub fn complete_device_login(
        &self,
        user_code: &str,
        upn: &str,
        approve: bool,
    ) -> Result<bool, SimError> {
        let mut inner = self.lock();
        let now = self.now_ms();
        let wanted = normalize_code(user_code);
        let key = inner
            .device_codes
            .iter()
            .find(|(_, s)| normalize_code(&s.user_code) == wanted)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| SimError::BadUserCode(user_code.to_string()))?;
        let session = inner.device_codes[&key].clone();
        if now >= session.expires_at_ms {
            return Err(SimError::CodeExpired);
        }
        if session.status != DeviceStatus::Pending {
            return Err(SimError::AlreadyCompleted);
        }
        let tenant = session.tenant_id.as_deref();
        let user = match self.signing_in_user(&mut inner, tenant, upn, &session.client_id) {
            Ok(user) => user,
            Err(SimError::ExternalUserNotInTenant(text)) => {
                // The sign-in failed after the account was known: the poll reports it.
                if let Some(s) = inner.device_codes.get_mut(&key) {
                    s.status = DeviceStatus::Refused(50020, text.clone());
                }
                return Err(SimError::ExternalUserNotInTenant(text));
            }
            Err(e) => return Err(e),
        };
        if approve && inner.faults.block_device_code {
            // Conditional Access is evaluated once the user is known, before consent.
            if let Some(s) = inner.device_codes.get_mut(&key) {
                let text = crate::sts::BLOCKED_BY_CONDITIONAL_ACCESS.to_string();
                s.status = DeviceStatus::Refused(53003, text);
            }
            return Err(SimError::BlockedByConditionalAccess);
        }
        let status = if !approve || inner.faults.decline_all_signins {
            DeviceStatus::Declined
        } else {
            self.consent(&mut inner, &user, &session.client_id, &session.scopes)?;
            DeviceStatus::Approved {
                user_id: user.id.clone(),
                tenant_id: inner.dir.tenant.id.clone(),
            }
        };
        let approved = status != DeviceStatus::Declined;
        if let Some(s) = inner.device_codes.get_mut(&key) {
            s.status = status;
        }
        self.persist(&inner);
        Ok(approved)
    }

    /// Makes sure `user` (or an admin for everyone) has consented to `scopes` for the client,
    /// creating the client's SP in the tenant on first consent, as Entra does.
    pub fn consent(
        &self,
        inner: &mut Inner,
        user: &User,
        client_id: &str,
        scopes: &[String],
    ) -> Result<(), SimError> {
        let client = self
            .client_app(inner, client_id)
            .ok_or_else(|| SimError::ConsentRequired(format!("unknown client {client_id}")))?;
        let parsed = parse_scopes(&inner.dir, &scopes.join(" "))
            .map_err(|s| SimError::ConsentRequired(format!("invalid scope {s}")))?;
        let Some(resource) = parsed.resource else {
            return Ok(());
        };
        let mut wanted: BTreeSet<String> = parsed.perms.iter().cloned().collect();
        if parsed.default {
            wanted.extend(client.default_scopes.iter().cloned());
        }
        let existing_sp = inner.dir.sp_by_app_id(&client.app_id).map(|s| s.id.clone());
        let granted = self
            .consented_scopes(inner, &client.app_id, &resource.sp_id, &user.id)
            .unwrap_or_default();
        let missing: Vec<String> = wanted.difference(&granted).cloned().collect();
        if existing_sp.is_some() && missing.is_empty() {
            return Ok(());
        }
        let roles = inner.dir.roles_of(&user.id);
        let is_admin = roles.iter().any(|r| CONSENT_ROLES.contains(&r.as_str()));
        if !is_admin
            && missing
                .iter()
                .any(|m| !USER_CONSENTABLE.contains(&m.as_str()))
        {
            return Err(SimError::ConsentRequired(missing.join(" ")));
        }
        let sp_id = match existing_sp {
            Some(id) => id,
            None => {
                let sp = ServicePrincipal {
                    passwords: Vec::new(),
                    id: new_guid(),
                    app_id: client.app_id.clone(),
                    display_name: client.display_name.clone(),
                    app_owner_organization_id: client.owner_tenant.clone(),
                    created: now_rfc3339(),
                    app_roles: vec![],
                    oauth2_permission_scopes: vec![],
                    tags: vec!["WindowsAzureActiveDirectoryIntegratedApp".into()],
                    sign_in_audience: inner.dir.audience_of(&client.app_id),
                    visible_at_ms: self.visible_at(inner),
                };
                let id = sp.id.clone();
                inner.dir.service_principals.push(sp);
                id
            }
        };
        if missing.is_empty() {
            return Ok(());
        }
        let (consent_type, principal) = if is_admin {
            ("AllPrincipals", None)
        } else {
            ("Principal", Some(user.id.clone()))
        };
        let grants = &mut inner.dir.oauth2_permission_grants;
        if let Some(g) = grants.iter_mut().find(|g| {
            g.client_id == sp_id
                && g.resource_id == resource.sp_id
                && g.consent_type == consent_type
                && g.principal_id == principal
        }) {
            let mut all: BTreeSet<String> = g.scopes().map(str::to_string).collect();
            all.extend(missing);
            g.scope = all.into_iter().collect::<Vec<_>>().join(" ");
        } else {
            grants.push(PermissionGrant {
                id: crate::state::random_key(32),
                client_id: sp_id,
                consent_type: consent_type.into(),
                principal_id: principal,
                resource_id: resource.sp_id.clone(),
                scope: wanted.into_iter().collect::<Vec<_>>().join(" "),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_code;

    #[test]
    fn user_codes_match_loosely() {
        assert_eq!(normalize_code("abcd-efgh1"), "ABCDEFGH1");
        assert_eq!(normalize_code(" AbC D "), "ABCD");
    }
}
