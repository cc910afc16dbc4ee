//! Graph JSON shapes: only the fields onboarding reads or writes, plus `extra` where callers may
//! want to look at the rest without another round trip. A list or flag Graph sends as `null`
//! reads as if absent, never as an undecodable answer.

use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::null_as_default;

/// A user (`/me`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Object id; the principal id for role lookups.
    pub id: String,
    /// Sign-in name, compared with the UPN the admin typed in the wizard.
    pub user_principal_name: String,
    /// Display name for progress text.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `Member` or `Guest` (a B2B collaboration user, whose UPN in this tenant is not the
    /// address they sign in with); absent when not selected.
    #[serde(default)]
    pub user_type: Option<String>,
    /// The user's email address; for a guest, the home address it was invited with.
    #[serde(default)]
    pub mail: Option<String>,
    /// Any other properties Graph returned.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An entry of `memberOf` / `transitiveMemberOf` (groups, directory roles, admin units).
#[derive(Debug, Clone, Deserialize)]
pub struct DirectoryObject {
    /// `#microsoft.graph.directoryRole`, `#microsoft.graph.group`, ...; tells the kinds apart.
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    /// Object id.
    pub id: String,
    /// Display name.
    #[serde(rename = "displayName", default)]
    pub display_name: Option<String>,
    /// For directory roles: the built-in role template id, stable across tenants.
    #[serde(rename = "roleTemplateId", default)]
    pub role_template_id: Option<String>,
    /// Any other properties.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An activated directory role the user holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryRole {
    /// The tenant-local role object id.
    pub id: String,
    /// Role name, for messages.
    pub display_name: Option<String>,
    /// Template id, what preflight checks compare (see `roles::template`).
    pub role_template_id: String,
}

/// The tenant (`/organization`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// Tenant id.
    pub id: String,
    /// Tenant display name, for invitations and the audit log.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Verified domains; the initial `*.onmicrosoft.com` one is a stable tenant handle.
    #[serde(default, deserialize_with = "null_as_default")]
    pub verified_domains: Vec<VerifiedDomain>,
    /// Any other properties.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A verified domain of the tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedDomain {
    /// Domain name.
    pub name: String,
    /// Whether it is the tenant's default domain.
    #[serde(default, deserialize_with = "null_as_default")]
    pub is_default: bool,
    /// Whether it is the initial `onmicrosoft.com` domain.
    #[serde(default, deserialize_with = "null_as_default")]
    pub is_initial: bool,
}

/// An app registration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Object id (for addPassword, PATCH, DELETE).
    pub id: String,
    /// Client id (what services authenticate as, and what the SP points at).
    pub app_id: String,
    /// Name shown in Entra.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Our idempotency key, if set.
    #[serde(default)]
    pub unique_name: Option<String>,
    /// Audience (`AzureADMyOrg` for our single-tenant registrations).
    #[serde(default)]
    pub sign_in_audience: Option<String>,
    /// Secrets' metadata (never the values); for listing and expiry checks.
    #[serde(default, deserialize_with = "null_as_default")]
    pub password_credentials: Vec<PasswordCredentialInfo>,
    /// Certificates' metadata: credentials Onboard never makes, so each is one made
    /// elsewhere (verification reports them).
    #[serde(default, deserialize_with = "null_as_default")]
    pub key_credentials: Vec<KeyCredentialInfo>,
    /// Requested permissions, compared with the profile in verification.
    #[serde(default, deserialize_with = "null_as_default")]
    pub required_resource_access: Vec<RequiredResourceAccess>,
    /// Any other properties.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What we write when creating or updating an app registration.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// Required on create.
    pub display_name: String,
    /// Set explicitly: the default differs between Graph revisions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in_audience: Option<String>,
    /// Permissions the app asks for (consent is separate).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_resource_access: Vec<RequiredResourceAccess>,
    /// Other properties to write verbatim (e.g. `notes`, `tags`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One resource's permissions in `requiredResourceAccess`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequiredResourceAccess {
    /// The resource's app id (e.g. Microsoft Graph's).
    pub resource_app_id: String,
    /// The permissions on it.
    pub resource_access: Vec<ResourceAccess>,
}

/// One permission: an app role (`Role`) or a delegated scope (`Scope`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAccess {
    /// App role or scope id.
    pub id: String,
    /// `Role` (application permission) or `Scope` (delegated).
    #[serde(rename = "type")]
    pub kind: String,
}

/// Metadata of a client secret, as listed on the application.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredentialInfo {
    /// Key id, used to remove it and recorded in the audit log.
    pub key_id: String,
    /// Label (we put the service id here).
    #[serde(default)]
    pub display_name: Option<String>,
    /// First characters of the secret, for humans to tell secrets apart.
    #[serde(default)]
    pub hint: Option<String>,
    /// Valid from (ISO 8601).
    #[serde(default)]
    pub start_date_time: Option<String>,
    /// Valid until (ISO 8601); drives the expiry warning.
    #[serde(default)]
    pub end_date_time: Option<String>,
}

/// The credentials on a service principal itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalCredentials {
    /// Object id.
    pub id: String,
    /// Secrets' metadata.
    #[serde(default, deserialize_with = "null_as_default")]
    pub password_credentials: Vec<PasswordCredentialInfo>,
    /// Certificates' metadata.
    #[serde(default, deserialize_with = "null_as_default")]
    pub key_credentials: Vec<KeyCredentialInfo>,
}

/// A federated identity credential on an application (Graph `federatedIdentityCredential`):
/// a token its `issuer` gives `subject`, for `audiences`, signs in as the app with no secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedIdentityCredential {
    /// Its id.
    pub id: String,
    /// Its name, unique on the app.
    pub name: String,
    /// The identity provider whose tokens it accepts (a URL).
    pub issuer: String,
    /// Whom those tokens must name.
    pub subject: String,
    /// The audience those tokens must have (one value).
    #[serde(default, deserialize_with = "null_as_default")]
    pub audiences: Vec<String>,
}

/// A certificate credential's metadata (Graph `keyCredential`; the public key itself is not
/// kept here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredentialInfo {
    /// Key id.
    pub key_id: String,
    /// Label, often the certificate's subject.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `AsymmetricX509Cert` (or `X509CertAndPassword`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `Verify` (sign-in) or `Sign`.
    #[serde(default)]
    pub usage: Option<String>,
    /// Valid from (ISO 8601).
    #[serde(default)]
    pub start_date_time: Option<String>,
    /// Valid until (ISO 8601).
    #[serde(default)]
    pub end_date_time: Option<String>,
}

/// A freshly made client secret: the only time Graph returns its value.
pub struct NewPassword {
    /// Metadata as listed later.
    pub info: PasswordCredentialInfo,
    /// The secret value; hand it over once, never log or store it in clear.
    pub secret_text: SecretString,
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPassword")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The addPassword answer; the secret is moved into a `SecretString` at once.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawNewPassword {
    /// Metadata.
    #[serde(flatten)]
    pub info: PasswordCredentialInfo,
    /// The value, wrapped in a `SecretString` by the caller straight away.
    pub secret_text: String,
}

/// A service principal (enterprise application).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    /// Object id: principal of role assignments, resource of app-role grants.
    pub id: String,
    /// Client id of the backing application.
    pub app_id: String,
    /// Name shown in Entra (the temporary `-token` app is found by it).
    #[serde(default)]
    pub display_name: Option<String>,
    /// App roles it offers (for resource SPs: the application permissions to grant).
    #[serde(default, deserialize_with = "null_as_default")]
    pub app_roles: Vec<AppRole>,
    /// Delegated scopes it offers (for delegated consent).
    #[serde(default, deserialize_with = "null_as_default")]
    pub oauth2_permission_scopes: Vec<PermissionScope>,
    /// Any other properties.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ServicePrincipal {
    /// The app role whose `value` is `name` (e.g. `User.Read.All`), if offered.
    pub fn app_role(&self, name: &str) -> Option<&AppRole> {
        self.app_roles
            .iter()
            .find(|r| r.value.as_deref() == Some(name))
    }
}

/// An app role offered by a resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRole {
    /// Role id, the `appRoleId` of a grant.
    pub id: String,
    /// Claim value / permission name (e.g. `User.Read.All`).
    #[serde(default)]
    pub value: Option<String>,
    /// Human name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `Application` and/or `User`; only `Application` roles can be granted to an SP.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_member_types: Vec<String>,
    /// Disabled roles cannot be granted.
    #[serde(default = "yes", deserialize_with = "null_as_yes")]
    pub is_enabled: bool,
}

fn yes() -> bool {
    true
}

/// An enabled flag sent as `null` reads as absent: enabled, Graph's default.
fn null_as_yes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// A delegated permission scope offered by a resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionScope {
    /// Scope id.
    pub id: String,
    /// Scope name (e.g. `User.Read`).
    #[serde(default)]
    pub value: Option<String>,
    /// Whether it is enabled.
    #[serde(default = "yes", deserialize_with = "null_as_yes")]
    pub is_enabled: bool,
}

/// An app role granted to a principal (admin consent for an application permission).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleAssignment {
    /// Assignment id, used to revoke.
    pub id: String,
    /// Granted role.
    pub app_role_id: String,
    /// Who holds it (our SP).
    pub principal_id: String,
    /// `ServicePrincipal`, `User` or `Group`.
    #[serde(default)]
    pub principal_type: Option<String>,
    /// Resource SP offering the role.
    pub resource_id: String,
    /// Resource name, for messages.
    #[serde(default)]
    pub resource_display_name: Option<String>,
    /// When it was granted.
    #[serde(default)]
    pub created_date_time: Option<String>,
}

/// Delegated consent of a client for a resource's scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2PermissionGrant {
    /// Grant id (empty when creating).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Client SP id.
    pub client_id: String,
    /// `AllPrincipals` (admin consent) or `Principal` (one user).
    pub consent_type: String,
    /// The user for `Principal` consent; absent for `AllPrincipals`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Resource SP id.
    pub resource_id: String,
    /// Space-separated scope names.
    pub scope: String,
}

/// A directory (Entra) role assigned to a principal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnifiedRoleAssignment {
    /// Assignment id, used to remove it.
    pub id: String,
    /// Role definition (for built-ins, equal to the template id).
    pub role_definition_id: String,
    /// Who holds it.
    pub principal_id: String,
    /// `/` for tenant-wide.
    #[serde(default)]
    pub directory_scope_id: Option<String>,
}

/// A directory role definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnifiedRoleDefinition {
    /// Definition id.
    pub id: String,
    /// Role name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Template id (equals `id` for built-ins).
    #[serde(default)]
    pub template_id: Option<String>,
    /// Built-in or custom.
    #[serde(default, deserialize_with = "null_as_default")]
    pub is_built_in: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn null_lists_and_flags_read_as_absent() {
        let sp: ServicePrincipal = serde_json::from_value(json!({
            "id": "s", "appId": "a", "appRoles": null, "oauth2PermissionScopes": null,
        }))
        .unwrap();
        assert!(sp.app_roles.is_empty() && sp.oauth2_permission_scopes.is_empty());
        let app: Application = serde_json::from_value(json!({
            "id": "o", "appId": "a", "passwordCredentials": null, "requiredResourceAccess": null,
        }))
        .unwrap();
        assert!(app.password_credentials.is_empty() && app.required_resource_access.is_empty());
        let org: Organization =
            serde_json::from_value(json!({"id": "t", "verifiedDomains": null})).unwrap();
        assert!(org.verified_domains.is_empty());
        let d: VerifiedDomain = serde_json::from_value(
            json!({"name": "contoso.onmicrosoft.com", "isDefault": null, "isInitial": null}),
        )
        .unwrap();
        assert!(!d.is_default && !d.is_initial);
        // An enabled flag given as null is as if absent: enabled (Graph's default).
        let role: AppRole = serde_json::from_value(
            json!({"id": "r", "allowedMemberTypes": null, "isEnabled": null}),
        )
        .unwrap();
        assert!(role.allowed_member_types.is_empty() && role.is_enabled);
        let scope: PermissionScope =
            serde_json::from_value(json!({"id": "p", "isEnabled": null})).unwrap();
        assert!(scope.is_enabled);
        let def: UnifiedRoleDefinition =
            serde_json::from_value(json!({"id": "d", "isBuiltIn": null})).unwrap();
        assert!(!def.is_built_in);
        // Present values still win.
        let role: AppRole = serde_json::from_value(
            json!({"id": "r", "allowedMemberTypes": ["Application"], "isEnabled": false}),
        )
        .unwrap();
        assert_eq!(role.allowed_member_types, ["Application"]);
        assert!(!role.is_enabled);
    }
}
