//! The directory objects the emulator keeps, and how each renders as Graph JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::defaults::{
    app_role, application_defaults, fill_missing, normalize_list, permission_scope,
    security_identifier, unverified_publisher,
};

/// The customer tenant the emulator plays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    /// Tenant id (`tid` claim, `/organization` id).
    pub id: String,
    /// Initial verified domain, e.g. `contoso.onmicrosoft.com`; usable as `{tenant}` in STS paths.
    pub domain: String,
    /// Organization display name shown by `/organization`.
    pub display_name: String,
    /// Tenant that owns the provider's multi-tenant token app (its SP's `appOwnerOrganizationId`).
    pub provider_tenant_id: String,
}

/// A user: a member, or a B2B collaboration user (guest) standing for an account of another
/// tenant. Users sign in password-less: the sign-in pages only ask which user approves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Object id (`oid` claim).
    pub id: String,
    /// `userPrincipalName`: a member's sign-in name (`upn` claim); a guest's
    /// `{home UPN with _ for @}#EXT#@{this tenant's initial domain}`.
    pub upn: String,
    /// Name shown in tokens and Graph.
    pub display_name: String,
    /// First name (`given_name` claim, `givenName`).
    pub given_name: String,
    /// Last name (`family_name` claim, `surname`).
    pub surname: String,
    /// For a guest (`userType` Guest): the account in its home tenant that signs in as it;
    /// `None` for a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<HomeAccount>,
}

/// The home account a B2B collaboration user stands for ("B2B collaboration user
/// properties": the guest authenticates with its home organization, Microsoft Entra ID).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HomeAccount {
    /// The home tenant's id (the guest's tokens' `idp` is its v1 issuer).
    pub tenant_id: String,
    /// The home user's object id.
    pub user_id: String,
    /// The home user's UPN: what the guest signs in with, and the guest's `mail`.
    pub upn: String,
}

/// The `user` properties Graph returns only on `$select` that the emulator models
/// (user-properties: `userType`, `creationType`, `externalUserState`).
pub const USER_SELECT_ONLY: &[&str] = &["userType", "creationType", "externalUserState"];

impl User {
    /// The name this user signs in with: a member's UPN, a guest's home UPN.
    pub fn sign_in_name(&self) -> &str {
        self.home.as_ref().map_or(&self.upn, |h| &h.upn)
    }

    /// `(oid, tid)` of the account in its home tenant, `tid` being this user's tenant: what
    /// MSAL's `client_info` names (a guest's home account, not the guest object).
    pub fn home_ids<'a>(&'a self, tid: &'a str) -> (&'a str, &'a str) {
        match &self.home {
            Some(h) => (&h.user_id, &h.tenant_id),
            None => (&self.id, tid),
        }
    }

    /// `userType`: `Member` or `Guest`.
    pub fn user_type(&self) -> &'static str {
        if self.home.is_some() {
            "Guest"
        } else {
            "Member"
        }
    }

    /// Graph `user` resource with its default properties, plus those of
    /// [`USER_SELECT_ONLY`] named in `extra` (a `$select` or `$filter` that names them).
    pub fn to_json_with(&self, extra: &[&str]) -> Value {
        let mut v = self.to_json();
        let guest = self.home.is_some();
        for name in USER_SELECT_ONLY {
            if !extra.iter().any(|e| e.eq_ignore_ascii_case(name)) {
                continue;
            }
            v[*name] = match *name {
                "userType" => json!(self.user_type()),
                // A guest the test API adds has redeemed its invitation.
                "creationType" if guest => json!("Invitation"),
                "externalUserState" if guest => json!("Accepted"),
                _ => Value::Null,
            };
        }
        v
    }

    /// Graph `user` resource (the v1.0 default properties).
    pub fn to_json(&self) -> Value {
        json!({
            "businessPhones": [],
            "displayName": self.display_name,
            "givenName": self.given_name,
            "jobTitle": null,
            "mail": self.home.as_ref().map_or(&self.upn, |h| &h.upn),
            "mobilePhone": null,
            "officeLocation": null,
            "preferredLanguage": "en-US",
            "securityIdentifier": security_identifier(&self.id),
            "surname": self.surname,
            "userPrincipalName": self.upn,
            "id": self.id,
        })
    }
}

/// A client secret. The secret itself is never kept: only a hash to check it and the hint to show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Password {
    /// `keyId`, the handle for removePassword.
    pub key_id: String,
    /// Optional label given at addPassword.
    pub display_name: Option<String>,
    /// First three characters of the secret, as Graph shows them.
    pub hint: String,
    /// Hex SHA-256 of the secret, to check client-credentials requests.
    pub sha256: String,
    /// Validity start (RFC 3339).
    pub start: String,
    /// Validity end (RFC 3339); past it the STS answers AADSTS7000222.
    pub end: String,
    /// Validity end as Unix seconds, to compare without parsing.
    pub end_unix: i64,
    /// Emulator clock (ms) from which the secret is accepted by the STS (replication lag).
    #[serde(skip)]
    pub visible_at_ms: u64,
}

impl Password {
    /// Graph `passwordCredential` as listed on the application (secretText is null after creation).
    pub fn to_json(&self, secret_text: Option<&str>) -> Value {
        json!({
            "customKeyIdentifier": null,
            "displayName": self.display_name,
            "endDateTime": self.end,
            "hint": self.hint,
            "keyId": self.key_id,
            "secretText": secret_text,
            "startDateTime": self.start,
        })
    }
}

/// An application (app registration) homed in the tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Application {
    /// Object id (the `{id}` in `/applications/{id}`).
    pub id: String,
    /// Client id.
    pub app_id: String,
    /// Creation time (RFC 3339).
    pub created: String,
    /// The other writable properties (displayName, uniqueName, signInAudience, requiredResourceAccess, …)
    /// exactly as the client set them, so that GET echoes what was PATCHed.
    pub props: Map<String, Value>,
    /// Client secrets.
    pub passwords: Vec<Password>,
    /// Federated identity credentials, as Graph shows them (`graph/federated.rs`).
    #[serde(default)]
    pub federated: Vec<Value>,
    /// Users or service principals that own it (owners may manage it without an admin role).
    pub owners: Vec<String>,
    /// Emulator clock (ms) from which dependent calls can see it (replication lag).
    #[serde(skip)]
    pub visible_at_ms: u64,
}

impl Application {
    /// Graph `application` resource: every default property (null or empty when unset),
    /// nested objects completed, app roles and scopes as Graph shows them.
    pub fn to_json(&self, publisher_domain: &str) -> Value {
        let defaults = application_defaults();
        let mut m = defaults.clone();
        for (k, v) in &self.props {
            let mut v = v.clone();
            if let Some(d) = defaults.get(k) {
                fill_missing(&mut v, d);
            }
            m.insert(k.clone(), v);
        }
        normalize_list(&mut m, "appRoles", app_role);
        if let Some(Value::Object(api)) = m.get_mut("api") {
            normalize_list(api, "oauth2PermissionScopes", permission_scope);
        }
        m.insert("id".into(), json!(self.id));
        m.insert("deletedDateTime".into(), Value::Null);
        m.insert("appId".into(), json!(self.app_id));
        m.insert("createdDateTime".into(), json!(self.created));
        m.insert("publisherDomain".into(), json!(publisher_domain));
        m.insert(
            "passwordCredentials".into(),
            Value::Array(self.passwords.iter().map(|p| p.to_json(None)).collect()),
        );
        Value::Object(m)
    }

    /// Display name, if set.
    pub fn display_name(&self) -> &str {
        self.props
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The alternate key used by the upsert, if set.
    pub fn unique_name(&self) -> Option<&str> {
        self.props.get("uniqueName").and_then(Value::as_str)
    }
}

/// A service principal (enterprise application) in the tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServicePrincipal {
    /// Object id.
    pub id: String,
    /// Client id of the application it instantiates.
    pub app_id: String,
    /// Name shown in the portal's Enterprise applications.
    pub display_name: String,
    /// Tenant that owns the application (ours, Microsoft's, or the provider's).
    pub app_owner_organization_id: String,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Application permissions the app exposes (`appRoles`); how clients find role ids.
    pub app_roles: Vec<Value>,
    /// Delegated permissions the app exposes (`oauth2PermissionScopes`).
    pub oauth2_permission_scopes: Vec<Value>,
    /// Tags (e.g. `WindowsAzureActiveDirectoryIntegratedApp`).
    pub tags: Vec<String>,
    /// Accounts the backing application accepts; a service principal reports its app's
    /// `signInAudience` (`AzureADMyOrg` for a single-tenant app).
    #[serde(default = "multi_org")]
    pub sign_in_audience: String,
    /// Secrets added to the service principal itself (`servicePrincipals/{id}/addPassword`):
    /// they sign in as the app in this tenant like the application's own.
    #[serde(default)]
    pub passwords: Vec<Password>,
    /// Emulator clock (ms) from which dependent calls can see it (replication lag).
    #[serde(skip)]
    pub visible_at_ms: u64,
}

/// The audience of Microsoft's and other providers' multi-tenant apps (and of service
/// principals saved before the emulator kept the audience).
pub fn multi_org() -> String {
    "AzureADMultipleOrgs".into()
}

impl ServicePrincipal {
    /// Graph `servicePrincipal` resource: the v1.0 default properties (no `createdDateTime`,
    /// which v1.0 does not have; `signInAudience` from the app).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "deletedDateTime": null,
            "accountEnabled": true,
            "alternativeNames": [],
            "appDisplayName": self.display_name,
            "appDescription": null,
            "appId": self.app_id,
            "applicationTemplateId": null,
            "appOwnerOrganizationId": self.app_owner_organization_id,
            "appRoleAssignmentRequired": false,
            "description": null,
            "disabledByMicrosoftStatus": null,
            "displayName": self.display_name,
            "homepage": null,
            "loginUrl": null,
            "logoutUrl": null,
            "notes": null,
            "notificationEmailAddresses": [],
            "preferredSingleSignOnMode": null,
            "preferredTokenSigningKeyThumbprint": null,
            "replyUrls": [],
            "resourceSpecificApplicationPermissions": [],
            "samlSingleSignOnSettings": null,
            "servicePrincipalNames": [self.app_id],
            "servicePrincipalType": "Application",
            "signInAudience": self.sign_in_audience,
            "tags": self.tags,
            "tokenEncryptionKeyId": null,
            "addIns": [],
            "appRoles": self.app_roles,
            "info": {"logoUrl": null, "marketingUrl": null, "privacyStatementUrl": null, "supportUrl": null, "termsOfServiceUrl": null},
            "keyCredentials": [],
            "oauth2PermissionScopes": self.oauth2_permission_scopes,
            "passwordCredentials": self.passwords.iter().map(|p| p.to_json(None)).collect::<Vec<_>>(),
            "verifiedPublisher": unverified_publisher(),
        });
        if let Value::Object(m) = &mut v {
            normalize_list(m, "appRoles", app_role);
            normalize_list(m, "oauth2PermissionScopes", permission_scope);
        }
        v
    }

    /// The id of the app role whose `value` is `value`.
    #[cfg(test)]
    pub fn role_id(&self, value: &str) -> Option<String> {
        self.app_roles
            .iter()
            .find(|r| r["value"] == value)
            .and_then(|r| r["id"].as_str().map(str::to_string))
    }

    /// The `value` of the app role with id `id`.
    pub fn role_value(&self, id: &str) -> Option<String> {
        self.app_roles
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["value"].as_str().map(str::to_string))
    }
}

/// An app role granted to a service principal (admin consent to an application permission).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRoleAssignment {
    /// Assignment id (Entra uses a 43-character url-safe key, not a GUID).
    pub id: String,
    /// The granted app role.
    pub app_role_id: String,
    /// The SP that receives the permission.
    pub principal_id: String,
    /// Its name, denormalised as Graph does.
    pub principal_display_name: String,
    /// The resource SP (e.g. Microsoft Graph) that defines the role.
    pub resource_id: String,
    /// Its name, denormalised as Graph does.
    pub resource_display_name: String,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Emulator clock (ms) from which the STS puts the role in tokens (replication lag).
    #[serde(skip)]
    pub visible_at_ms: u64,
    /// Emulator clock (ms) from which the assignment lists show it
    /// (`Faults::assignment_list_lag_ms`).
    #[serde(skip)]
    pub listed_at_ms: u64,
}

impl AppRoleAssignment {
    /// Graph `appRoleAssignment` resource.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "deletedDateTime": null,
            "appRoleId": self.app_role_id,
            "createdDateTime": self.created,
            "principalDisplayName": self.principal_display_name,
            "principalId": self.principal_id,
            "principalType": "ServicePrincipal",
            "resourceDisplayName": self.resource_display_name,
            "resourceId": self.resource_id,
        })
    }
}

/// A delegated permission grant (`oauth2PermissionGrant`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PermissionGrant {
    /// Grant id.
    pub id: String,
    /// SP of the client app that may act for users.
    pub client_id: String,
    /// `AllPrincipals` (admin consent) or `Principal` (one user).
    pub consent_type: String,
    /// The user, for `Principal` grants.
    pub principal_id: Option<String>,
    /// Resource SP (e.g. Microsoft Graph).
    pub resource_id: String,
    /// Space-separated delegated permission values.
    pub scope: String,
}

impl PermissionGrant {
    /// Graph `oAuth2PermissionGrant` resource.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "clientId": self.client_id,
            "consentType": self.consent_type,
            "principalId": self.principal_id,
            "resourceId": self.resource_id,
            "scope": self.scope,
        })
    }

    /// The granted permission values.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_whitespace()
    }
}

/// A directory role held by a user or service principal (`unifiedRoleAssignment`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleAssignment {
    /// Assignment id.
    pub id: String,
    /// Role definition id; for built-in roles this equals the role template id.
    pub role_definition_id: String,
    /// User or SP holding the role.
    pub principal_id: String,
    /// `/` for tenant-wide.
    pub directory_scope_id: String,
    /// Emulator clock (ms) from which `roleManagement/directory/roleAssignments` lists it
    /// (`Faults::assignment_list_lag_ms`).
    #[serde(skip)]
    pub listed_at_ms: u64,
}

impl RoleAssignment {
    /// Graph `unifiedRoleAssignment` resource (no app scope, no condition: tenant-wide).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "appScopeId": null,
            "condition": null,
            "roleDefinitionId": self.role_definition_id,
            "principalId": self.principal_id,
            "directoryScopeId": self.directory_scope_id,
        })
    }
}

/// Everything that lives in the tenant; the JSON of this struct is the persisted state and
/// (with ids and names) what `Sim::snapshot` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Directory {
    /// The tenant itself.
    pub tenant: Tenant,
    /// Member users.
    pub users: Vec<User>,
    /// App registrations homed here.
    pub applications: Vec<Application>,
    /// Enterprise applications (local apps, Microsoft resource apps, consented multi-tenant apps).
    pub service_principals: Vec<ServicePrincipal>,
    /// Application permissions granted (appRoleAssignedTo).
    pub app_role_assignments: Vec<AppRoleAssignment>,
    /// Delegated permission grants.
    pub oauth2_permission_grants: Vec<PermissionGrant>,
    /// Directory role assignments of users and SPs.
    pub role_assignments: Vec<RoleAssignment>,
    /// Deleted applications and SPs (the 30-day recycle bin), as Graph JSON with deletedDateTime.
    pub deleted_items: Vec<Value>,
    /// The deleted applications themselves (with secret hashes), so a restore brings them back whole.
    #[serde(default)]
    pub deleted_applications: Vec<Application>,
    /// The deleted service principals themselves, for restore.
    #[serde(default)]
    pub deleted_service_principals: Vec<ServicePrincipal>,
    /// App role assignments removed while `Faults::assignment_list_lag_ms` holds: the lists
    /// still show each until the clock (ms) beside it, as Graph's may ("This request might
    /// have replication delays for app role assignments that were recently granted or
    /// removed", list-approleassignments); a DELETE of one is 404. Not persisted.
    #[serde(skip)]
    pub unlisting_app_role_assignments: Vec<(AppRoleAssignment, u64)>,
    /// Directory role assignments removed while the lists lag, likewise.
    #[serde(skip)]
    pub unlisting_role_assignments: Vec<(RoleAssignment, u64)>,
}

impl Directory {
    /// The user with object id or UPN `key` (UPN match is case-insensitive, as in Entra).
    pub fn user(&self, key: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.id == key || u.upn.eq_ignore_ascii_case(key))
    }

    /// The member user with UPN `upn` (a guest's `#EXT#` UPN signs no one in).
    pub fn member(&self, upn: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.home.is_none() && u.upn.eq_ignore_ascii_case(upn))
    }

    /// The guest that stands for the home account with UPN `home_upn`.
    pub fn guest_of(&self, home_upn: &str) -> Option<&User> {
        self.users.iter().find(|u| {
            u.home
                .as_ref()
                .is_some_and(|h| h.upn.eq_ignore_ascii_case(home_upn))
        })
    }

    /// The user a person signing in here as `upn` becomes: the member with that UPN, or the
    /// guest standing for the home account with it.
    pub fn account(&self, upn: &str) -> Option<&User> {
        self.member(upn).or_else(|| self.guest_of(upn))
    }

    /// Gives `principal_id` the directory roles `roles` (role template ids) it lacks,
    /// tenant-wide; `id` makes each assignment's id.
    pub fn assign_roles(&mut self, principal_id: &str, roles: &[&str], id: impl Fn() -> String) {
        for r in roles {
            if !self
                .roles_of(principal_id)
                .iter()
                .any(|x| x.eq_ignore_ascii_case(r))
            {
                self.role_assignments.push(RoleAssignment {
                    id: id(),
                    role_definition_id: r.to_ascii_lowercase(),
                    principal_id: principal_id.to_string(),
                    directory_scope_id: "/".into(),
                    listed_at_ms: 0,
                });
            }
        }
    }

    /// Role template ids held by `principal_id`.
    pub fn roles_of(&self, principal_id: &str) -> Vec<String> {
        self.role_assignments
            .iter()
            .filter(|r| r.principal_id == principal_id)
            .map(|r| r.role_definition_id.clone())
            .collect()
    }

    /// The SP of client id `app_id`.
    pub fn sp_by_app_id(&self, app_id: &str) -> Option<&ServicePrincipal> {
        self.service_principals
            .iter()
            .find(|s| s.app_id.eq_ignore_ascii_case(app_id))
    }

    /// The SP with object id `id`.
    pub fn sp(&self, id: &str) -> Option<&ServicePrincipal> {
        self.service_principals.iter().find(|s| s.id == id)
    }

    /// The `signInAudience` of the application with client id `app_id` homed here; an app
    /// from another tenant (the provider's token app, Microsoft's) is multi-tenant.
    pub fn audience_of(&self, app_id: &str) -> String {
        match self.app_by_app_id(app_id) {
            Some(a) => a
                .props
                .get("signInAudience")
                .and_then(Value::as_str)
                .unwrap_or("AzureADMyOrg")
                .to_string(),
            None => multi_org(),
        }
    }

    /// The application with client id `app_id`.
    pub fn app_by_app_id(&self, app_id: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|a| a.app_id.eq_ignore_ascii_case(app_id))
    }

    /// App role values granted to SP `sp_id` on resource SP `resource_id` (the `roles` claim),
    /// counting only grants that have replicated by clock `now_ms`.
    pub fn granted_roles(&self, sp_id: &str, resource_id: &str, now_ms: u64) -> Vec<String> {
        let Some(resource) = self.sp(resource_id) else {
            return Vec::new();
        };
        let mut roles: Vec<String> = self
            .app_role_assignments
            .iter()
            .filter(|a| a.principal_id == sp_id && a.resource_id == resource_id)
            .filter(|a| a.visible_at_ms <= now_ms)
            .filter_map(|a| resource.role_value(&a.app_role_id))
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }
}
