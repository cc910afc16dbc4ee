//! After the device-code sign-in: is it the admin who was named, and what may they do?
//! Graph's `/me` and `/me/transitiveMemberOf` are the authoritative answers (entra-reference.md
//! §2.3, §3.2.1); the id token only supplies the tenant id.

use std::sync::Arc;

use entra_client::{EntraClient, GraphClient, OpContext, RenewingToken, TokenSet, UserTokens};
use secrecy::SecretString;
use serde::Serialize;

use crate::error::ProvisionError;
use onboard_core::ResolvedProfile;
use onboard_core::roles::{self, Right};

/// What the admin's device-code sign-in asks for, and why (docs/microsoft.md). Delegated
/// Microsoft Graph permissions (bare names mean Graph); the token's `scp` will hold these plus
/// whatever else was consented for the token app earlier.
/// - `User.Read`: `/me` and `/me/transitiveMemberOf` (who signed in, their memberships).
/// - `RoleManagement.Read.Directory`: without it the directory roles in
///   `/me/transitiveMemberOf` come back without `roleTemplateId` (the role check).
/// - `Application.ReadWrite.All`: the app registration, its service principal and secret.
/// - `AppRoleAssignment.ReadWrite.All` and `Application.Read.All`: the pair
///   `POST /servicePrincipals/{id}/appRoleAssignedTo` needs (admin consent to app roles).
/// - `RoleManagement.ReadWrite.Directory`: directory role assignments.
/// - `Directory.Read.All`: with `Application.ReadWrite.All`, what `POST /applications/{id}/
///   owners/$ref` needs (application-post-owners) to make the service principal an owner of
///   its app (profiles that rotate their own secret).
/// - `offline_access`, `openid`, `profile`: a refresh token, and an id token with the tenant.
pub const SIGN_IN_SCOPES: &[&str] = &[
    "User.Read",
    "RoleManagement.Read.Directory",
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "Application.Read.All",
    "RoleManagement.ReadWrite.Directory",
    "Directory.Read.All",
    "offline_access",
    "openid",
    "profile",
];

/// A checked, signed-in customer admin.
#[derive(Clone)]
pub struct Admin {
    /// Sign-in name (as Graph reports it).
    pub upn: String,
    /// User object id.
    pub user_id: String,
    /// Tenant the admin signed in to; where everything is provisioned.
    pub tenant_id: String,
    /// Template ids of the admin's active directory roles.
    pub role_template_ids: Vec<String>,
    /// The delegated Graph access token; only ever handed to the Graph client.
    pub(crate) access_token: SecretString,
    /// The sign-in's refresh token, if the STS issued one: sealed with a run that may stop to
    /// wait for a privileged admin, whose expiry then undoes it with a fresh access token.
    pub(crate) refresh_token: Option<SecretString>,
    /// When the access token expires (seconds since the Unix epoch), from the token response's
    /// `expires_in`: Microsoft's access tokens are opaque to clients (never read for `exp`).
    pub(crate) access_expires_at: i64,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("upn", &self.upn)
            .field("tenant_id", &self.tenant_id)
            .field("role_template_ids", &self.role_template_ids)
            .finish_non_exhaustive()
    }
}

/// Whether the admin holds one right, for the wizard's "what you can do" page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RightCheck {
    /// The right.
    pub right: Right,
    /// Whether one of the admin's roles grants it.
    pub held: bool,
    /// What it is for and which roles grant it.
    pub description: String,
}

/// The roles an admin holds, in words: "no administrator role", or the names joined.
fn held_roles(names: &[String]) -> String {
    if names.is_empty() {
        return "no administrator role".into();
    }
    names.join(", ")
}

impl Admin {
    /// Whether the admin holds `right`.
    pub fn has(&self, right: Right) -> bool {
        right.held_by(&self.role_template_ids)
    }

    /// Names of the admin's roles, for messages.
    pub fn role_names(&self) -> Vec<String> {
        self.role_template_ids
            .iter()
            .map(|id| roles::role_name(id).map_or_else(|| id.clone(), str::to_owned))
            .collect()
    }

    /// The rights `profile` needs and whether the admin holds each: creating the app always,
    /// Graph consent if it has Graph permissions, other consent for other APIs, role assignment
    /// if it has directory roles.
    pub fn rights_for(&self, profile: &ResolvedProfile) -> Vec<RightCheck> {
        let mut needed = vec![Right::ManageApplications];
        for p in &profile.permissions {
            let r = p.resource.grant_right();
            if !needed.contains(&r) {
                needed.push(r);
            }
        }
        if !profile.directory_roles.is_empty() {
            needed.push(Right::AssignDirectoryRoles);
        }
        needed
            .into_iter()
            .map(|right| RightCheck {
                right,
                held: self.has(right),
                description: right.describe(),
            })
            .collect()
    }
}

/// Checks a completed device-code sign-in: the signed-in UPN must equal `expected_upn`
/// (case-insensitive, as Entra treats UPNs) and the user must hold Application Administrator
/// or higher (Global Administrator; Cloud Application Administrator has the same app rights,
/// entra-reference.md §3.1). What the profile needs beyond that is reported by
/// [`Admin::rights_for`], not refused here. A token that may not read directory roles (the
/// token app lacks RoleManagement.Read.Directory) is an error naming that permission, not an
/// admin "without roles".
///
/// `expected_tenant`, the tenant an invitation names (a tenant id or a domain name), must be
/// the one signed in to: the token's tenant id, or a tenant that has the domain verified
/// ([`ProvisionError::WrongTenant`] otherwise). A guest (B2B collaboration user) of that tenant
/// is the account typed when its `mail`, or its `#EXT#` UPN, is that address ([`is_account`]).
pub async fn check_sign_in(
    entra: &EntraClient,
    tokens: &TokenSet,
    expected_upn: &str,
    expected_tenant: Option<&str>,
) -> Result<Admin, ProvisionError> {
    let graph = entra.graph(tokens.access_token.clone());
    let ctx = OpContext::new();
    let me = graph
        .me(&ctx)
        .await
        .map_err(|e| ProvisionError::entra("sign_in", e))?
        .value;
    if !is_account(&me, expected_upn) {
        return Err(ProvisionError::WrongUser {
            expected: expected_upn.to_owned(),
            signed_in: me.user_principal_name,
        });
    }
    let roles = graph
        .my_directory_roles(&ctx)
        .await
        .map_err(|e| ProvisionError::entra("sign_in", e))?
        .value;
    // A tenant named by domain is checked against the tenant's verified domains, which only
    // `/organization` lists; a tenant id (or none) needs no call when the id token has `tid`.
    let by_domain = expected_tenant.filter(|t| !onboard_core::text::is_guid(t));
    let claims = tokens.id_token_claims().ok().flatten();
    let org = if claims.is_none() || by_domain.is_some() {
        Some(
            graph
                .organization(&ctx)
                .await
                .map_err(|e| ProvisionError::entra("sign_in", e))?
                .value,
        )
    } else {
        None
    };
    // One of the two is there: the organization is read whenever the claims are not.
    let tenant_id = claims
        .map(|c| c.tid)
        .or_else(|| org.as_ref().map(|o| o.id.clone()))
        .unwrap_or_default();
    if let Some(expected) = expected_tenant {
        // By domain, the organization read above lists it; by id, the sign-in's is it.
        let same = match (&org, by_domain) {
            (Some(o), Some(domain)) => o
                .verified_domains
                .iter()
                .any(|d| d.name.eq_ignore_ascii_case(domain)),
            _ => tenant_id.eq_ignore_ascii_case(expected),
        };
        if !same {
            return Err(ProvisionError::WrongTenant {
                upn: me.user_principal_name,
                expected: expected.to_owned(),
                signed_in: tenant_id,
            });
        }
    }
    let admin = Admin {
        upn: me.user_principal_name,
        user_id: me.id,
        tenant_id,
        role_template_ids: roles.into_iter().map(|r| r.role_template_id).collect(),
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        access_expires_at: expires_at(tokens),
    };
    if !admin.has(Right::ManageApplications) {
        return Err(ProvisionError::MissingRights {
            missing: vec![format!(
                "{} holds {}; {}",
                admin.upn,
                held_roles(&admin.role_names()),
                Right::ManageApplications.describe()
            )],
        });
    }
    Ok(admin)
}

/// Whether the signed-in user `me` is the account `typed`: the same UPN (case-insensitive, as
/// Entra treats UPNs), or a guest (`userType` `Guest`, a B2B collaboration user) invited with
/// that address: its `mail`, or its UPN in the resource tenant, which Microsoft forms from the
/// address with `@` as `_`, then `#EXT#@` and the tenant's domain.
pub fn is_account(me: &entra_client::graph::User, typed: &str) -> bool {
    let typed = typed.trim();
    let upn = me.user_principal_name.trim();
    if upn.eq_ignore_ascii_case(typed) {
        return true;
    }
    let guest = me
        .user_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("Guest"));
    let by_mail = me
        .mail
        .as_deref()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(typed));
    let ext = format!("{}#EXT#@", typed.replace('@', "_")).to_ascii_lowercase();
    guest && (by_mail || upn.to_ascii_lowercase().starts_with(&ext))
}

impl Admin {
    /// A Graph client acting as this admin. With a refresh token and the token app it was
    /// issued to (`token_app_client_id`), the access token is renewed when it has run out
    /// (an admin may come back to Plan or Provision after more than its hour) and once more
    /// when Graph answers 401; a renewal the STS refuses (`invalid_grant`) asks for a new
    /// sign-in. Without them the token is used as it is.
    pub(crate) fn graph(
        &self,
        entra: &EntraClient,
        token_app_client_id: Option<&str>,
    ) -> GraphClient {
        user_graph(
            entra,
            token_app_client_id,
            &self.tenant_id,
            self.access_token.clone(),
            self.refresh_token.clone(),
            self.access_expires_at,
        )
    }
}

/// A Graph client acting with a user's delegated `access` token (for `tenant_id`, valid until
/// `access_expires_at`, seconds since the Unix epoch): renewed with `refresh` through the token
/// app it was issued to when both are known ([`Admin::graph`]), else used as it is.
pub(crate) fn user_graph(
    entra: &EntraClient,
    token_app_client_id: Option<&str>,
    tenant_id: &str,
    access: SecretString,
    refresh: Option<SecretString>,
    access_expires_at: i64,
) -> GraphClient {
    let (Some(refresh), Some(client_id)) = (refresh, token_app_client_id) else {
        return entra.graph(access);
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let left = u64::try_from(access_expires_at.saturating_sub(now)).unwrap_or(0);
    let tokens = UserTokens {
        access,
        refresh: Some(refresh),
        valid_for: std::time::Duration::from_secs(left),
    };
    let source =
        RenewingToken::from_user_tokens(entra.sts(), tenant_id, client_id, SIGN_IN_SCOPES, tokens);
    entra.graph_with_tokens(Arc::new(source))
}

/// When `tokens`' access token expires (seconds since the Unix epoch): now plus the token
/// response's `expires_in`, the data Microsoft tells clients to use instead of reading the
/// token.
pub(crate) fn expires_at(tokens: &TokenSet) -> i64 {
    let lifetime = i64::try_from(tokens.expires_in.as_secs()).unwrap_or(i64::MAX);
    time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .saturating_add(lifetime)
}

#[cfg(test)]
mod tests {
    use super::is_account;

    fn user(upn: &str, user_type: Option<&str>, mail: Option<&str>) -> entra_client::graph::User {
        let v = serde_json::json!({
            "id": "u", "userPrincipalName": upn, "userType": user_type, "mail": mail,
        });
        serde_json::from_value(v).expect("a user")
    }

    #[test]
    fn a_guest_is_the_address_it_was_invited_with() {
        let typed = "Ada@Provider.example";
        let ext = "ada_provider.example#EXT#@contoso.onmicrosoft.com";
        assert!(is_account(&user("ada@provider.example", None, None), typed));
        assert!(is_account(&user(ext, Some("Guest"), None), typed));
        assert!(is_account(
            &user(
                "renamed@contoso.onmicrosoft.com",
                Some("Guest"),
                Some("ada@provider.example")
            ),
            typed
        ));
        // A member is only ever its own UPN, whatever its mail or UPN's shape.
        assert!(!is_account(&user(ext, Some("Member"), None), typed));
        assert!(!is_account(
            &user(
                "bob@contoso.example",
                Some("Member"),
                Some("ada@provider.example")
            ),
            typed
        ));
        // Another guest, or a guest whose address only starts like the typed one.
        assert!(!is_account(
            &user(
                "bob_provider.example#EXT#@contoso.onmicrosoft.com",
                Some("Guest"),
                None
            ),
            typed
        ));
        assert!(!is_account(
            &user(
                "ada_provider.example.evil#EXT#@contoso.onmicrosoft.com",
                Some("Guest"),
                None
            ),
            typed
        ));
    }
}
