//! The seeded tenant and the well-known ids of Microsoft's apps, permissions and roles
//! (from entra-reference.md §3.3).

use serde_json::{Value, json};
use sha2::Digest;

use crate::model::{Directory, RoleAssignment, ServicePrincipal, Tenant, User};

/// Microsoft Graph's client id.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Skype and Teams Tenant Admin API's client id.
pub const TEAMS_APP_ID: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239";
/// Microsoft's own tenant, owner of its first-party apps.
pub const MICROSOFT_TENANT_ID: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";

/// Global Administrator role template id.
pub const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
/// Application Administrator role template id.
pub const APP_ADMIN: &str = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3";
/// Cloud Application Administrator role template id.
pub const CLOUD_APP_ADMIN: &str = "158c047a-c907-4556-b7ef-446551a6b5f7";
/// Application Developer role template id.
pub const APP_DEVELOPER: &str = "cf1c38e5-3621-4004-a7cb-879624dced7c";
/// Privileged Role Administrator role template id.
pub const PRIV_ROLE_ADMIN: &str = "e8611ab8-c189-46e8-94e1-60213ab1f814";
/// Directory Readers role template id.
pub const DIRECTORY_READERS: &str = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b";
/// Global Reader role template id.
pub const GLOBAL_READER: &str = "f2ef992c-3afb-46b9-b7cf-a126ee74c451";

/// Built-in directory roles: (template id, display name).
pub const ROLE_TEMPLATES: &[(&str, &str)] = &[
    (GLOBAL_ADMIN, "Global Administrator"),
    (APP_ADMIN, "Application Administrator"),
    (CLOUD_APP_ADMIN, "Cloud Application Administrator"),
    (APP_DEVELOPER, "Application Developer"),
    (PRIV_ROLE_ADMIN, "Privileged Role Administrator"),
    ("fe930be7-5e62-47db-91af-98c3a49a38b1", "User Administrator"),
    (
        "8329153b-31d0-4727-b945-745eb3bc5f31",
        "Domain Name Administrator",
    ),
    (
        "69091246-20e8-4a56-aa4d-066075b2a7a8",
        "Teams Administrator",
    ),
    (
        "baf37b3a-610e-45da-9e62-d9d1e5e8914b",
        "Teams Communications Administrator",
    ),
    (
        "aa38014f-0993-46e9-9b45-30501a20909d",
        "Teams Telephony Administrator",
    ),
    (
        "f70938a0-fc10-4177-9e90-2178f8765737",
        "Teams Communications Support Engineer",
    ),
    (
        "fcf91098-03e3-41a9-b5ba-6f0ec8188a12",
        "Teams Communications Support Specialist",
    ),
    (
        "75941009-915a-4869-abe7-691bff18279e",
        "Skype for Business Administrator",
    ),
    (DIRECTORY_READERS, "Directory Readers"),
    (GLOBAL_READER, "Global Reader"),
];

/// Display name of a built-in role.
pub fn role_name(template_id: &str) -> Option<&'static str> {
    ROLE_TEMPLATES
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(template_id))
        .map(|(_, n)| *n)
}

/// Microsoft Graph permissions: (value, application role id, delegated scope id).
pub const GRAPH_PERMISSIONS: &[(&str, Option<&str>, Option<&str>)] = &[
    (
        "User.Read",
        None,
        Some("e1fe6dd8-ba31-4d61-89e7-88639da4683d"),
    ),
    (
        "User.Read.All",
        Some("df021288-bdef-4463-88db-98f22de89214"),
        Some("a154be20-db9c-4678-8ab7-66f6cc099a59"),
    ),
    (
        "User.ReadWrite.All",
        Some("741f803b-c850-494e-b5df-cde7c675a1ca"),
        Some("204e0828-b5ca-4ad8-b9f3-f32a958e7cc4"),
    ),
    (
        "Group.Read.All",
        Some("5b567255-7703-4780-807c-7be8301ae99b"),
        Some("5f8c59db-677d-491f-a6b8-5f174b11ec1d"),
    ),
    (
        "Group.ReadWrite.All",
        Some("62a82d76-70ea-41e2-9197-370581804d09"),
        Some("4e46008b-f24c-477d-8fff-7bb4ec7aafe0"),
    ),
    (
        "GroupMember.Read.All",
        Some("98830695-27a2-44f7-8c18-0c3ebc9698f6"),
        Some("bc024368-1153-4739-b217-4326f2e966d0"),
    ),
    (
        "Directory.Read.All",
        Some("7ab1d382-f21e-4acd-a863-ba3e13f7da61"),
        Some("06da0dbc-49e2-44d2-8312-53f166ab848a"),
    ),
    (
        "Directory.ReadWrite.All",
        Some("19dbc75e-c2e2-444c-a770-ec69d8559fc7"),
        Some("c5366453-9fb0-48a5-a156-24f0c49a4b84"),
    ),
    (
        "Directory.AccessAsUser.All",
        None,
        Some("0e263e50-5827-48a4-b97c-d940288653c7"),
    ),
    (
        "Organization.Read.All",
        Some("498476ce-e0fe-48b0-b801-37ba7e2685c6"),
        Some("4908d5b9-3fb2-4b1e-9336-1888b7937185"),
    ),
    (
        "Organization.ReadWrite.All",
        Some("292d869f-3427-49a8-9dab-8c70152b74e9"),
        Some("46ca0847-7e6b-426e-9775-ea810a948356"),
    ),
    (
        "RoleManagement.Read.Directory",
        Some("483bed4a-2ad3-4361-a73b-c83ccdbdc53c"),
        Some("741c54c3-0c1e-44a1-818b-3f97ab4e8c83"),
    ),
    (
        "RoleManagement.ReadWrite.Directory",
        Some("9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8"),
        Some("d01b97e9-cbc0-49fe-810a-750afd5527a3"),
    ),
    (
        "RoleManagement.Read.All",
        Some("c7fbd983-d9aa-4fa7-84b8-17382c103bc4"),
        Some("48fec646-b2ba-4019-8681-8eb31435aded"),
    ),
    (
        "AdministrativeUnit.Read.All",
        Some("134fd756-38ce-4afd-ba33-e9623dbe66c2"),
        Some("3361d15d-be43-4de6-b441-3c746d05163d"),
    ),
    (
        "Application.Read.All",
        Some("9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30"),
        Some("c79f8feb-a9db-4090-85f9-90d820caa0eb"),
    ),
    (
        "Application.ReadWrite.All",
        Some("1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9"),
        Some("bdfbf15f-ee85-4955-8675-146e8e5296b5"),
    ),
    (
        "Application.ReadWrite.OwnedBy",
        Some("18a4783c-866b-4cc7-a460-3d5e5662c884"),
        None,
    ),
    (
        "AppRoleAssignment.ReadWrite.All",
        Some("06b708a9-e830-4db3-a914-8e69da51d44f"),
        Some("84bccea3-f856-4a8a-967b-dbe0a3d53a64"),
    ),
    (
        "DelegatedPermissionGrant.ReadWrite.All",
        Some("8e8e4742-1d95-4f68-9d56-6ee75648c72a"),
        Some("41ce6ca6-6826-4807-84f1-1c82854f7ee5"),
    ),
    (
        "Domain.Read.All",
        Some("dbb9058a-0e50-45d7-ae91-66909b5d4664"),
        Some("2f9ee017-59c1-4f1d-9472-bd5529a7b311"),
    ),
    (
        "Domain.ReadWrite.All",
        Some("7e05723c-0bb0-42da-be95-ae9f08a6e53c"),
        Some("0b5d694c-a244-4bde-86e6-eb5cd07730fe"),
    ),
    (
        "CallRecords.Read.All",
        Some("45bbb07e-7321-4fd7-a8f6-3ff27e6a81c8"),
        None,
    ),
    (
        "CallRecord-PstnCalls.Read.All",
        Some("a2611786-80b3-417e-adaa-707d4261a5f0"),
        None,
    ),
    (
        "AppCatalog.ReadWrite.All",
        Some("dc149144-f292-421e-b185-5953f2e98d7f"),
        Some("1ca167d5-1655-44a1-8adf-1414072e1ef9"),
    ),
    (
        "TeamSettings.ReadWrite.All",
        Some("bdd80a03-d9bc-451d-b7c4-ce7c63fe3c8f"),
        Some("39d65650-9d3e-4223-80db-a335590d027e"),
    ),
    (
        "Channel.Delete.All",
        Some("6a118a39-1227-45d4-af0c-ea7b40d210bc"),
        Some("cc83893a-e232-4723-b5af-bd0b01bcfe65"),
    ),
    (
        "ChannelSettings.ReadWrite.All",
        Some("243cded2-bd16-4fd6-a953-ff8177894c3d"),
        Some("d649fb7c-72b4-4eec-b2b4-b15acf79e378"),
    ),
    (
        "ChannelMember.ReadWrite.All",
        Some("35930dcf-aceb-4bd1-b99a-8ffed403c974"),
        Some("0c3e411a-ce45-4cd1-8f30-f99a3efa7b11"),
    ),
    ("openid", None, Some("37f7f235-527c-4136-accd-4a02d197296e")),
    (
        "profile",
        None,
        Some("14dad69e-099b-42c9-810b-d002981feec1"),
    ),
    ("email", None, Some("64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0")),
    (
        "offline_access",
        None,
        Some("7427e0e9-2fba-42fe-b0c0-848c9e6a8182"),
    ),
];

/// Delegated permissions a user may consent to for themselves; all others need an admin.
pub const USER_CONSENTABLE: &[&str] =
    &["User.Read", "openid", "profile", "email", "offline_access"];

/// OpenID Connect scopes: they shape the token response, not the access token.
pub const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// Delegated scopes the provider's token app is configured with by default (what `.default`
/// stands for): what Onboard's sign-in asks for (entra-reference §6), plus the broader ones
/// older configurations used. `SimConfig::token_app_scopes` replaces the list.
pub const TOKEN_APP_SCOPES: &[&str] = &[
    "Application.ReadWrite.All",
    "Application.Read.All",
    "AppRoleAssignment.ReadWrite.All",
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
    "DelegatedPermissionGrant.ReadWrite.All",
    "Directory.Read.All",
    "User.Read",
];

/// A GUID that is random-looking but the same on every run for the same label,
/// so a seeded tenant has stable ids across restarts and machines.
pub fn fixed_guid(label: &str) -> String {
    let d = sha2::Sha256::digest(label.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b)
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn graph_sp(domain: &str, created: &str) -> ServicePrincipal {
    let app_roles = GRAPH_PERMISSIONS
        .iter()
        .filter_map(|(value, role, _)| {
            role.map(|id| {
                json!({
                    "allowedMemberTypes": ["Application"],
                    "description": format!("Allows the app to use {value} without a signed-in user."),
                    "displayName": format!("{value} (application)"),
                    "id": id,
                    "isEnabled": true,
                    "origin": "Application",
                    "value": value,
                })
            })
        })
        .collect();
    let scopes = GRAPH_PERMISSIONS
        .iter()
        .filter_map(|(value, _, scope)| {
            scope.map(|id| {
                let user = USER_CONSENTABLE.contains(value);
                json!({
                    "adminConsentDescription": format!("Allows the app to use {value} on behalf of the signed-in user."),
                    "adminConsentDisplayName": format!("{value} (delegated)"),
                    "id": id,
                    "isEnabled": true,
                    "type": if user { "User" } else { "Admin" },
                    "userConsentDescription": Value::Null,
                    "userConsentDisplayName": Value::Null,
                    "value": value,
                })
            })
        })
        .collect();
    ServicePrincipal {
        passwords: Vec::new(),
        id: fixed_guid(&format!("sp:microsoft-graph:{domain}")),
        app_id: GRAPH_APP_ID.into(),
        display_name: "Microsoft Graph".into(),
        app_owner_organization_id: MICROSOFT_TENANT_ID.into(),
        created: created.into(),
        app_roles,
        oauth2_permission_scopes: scopes,
        tags: vec![],
        sign_in_audience: crate::model::multi_org(),
        visible_at_ms: 0,
    }
}

fn teams_sp(domain: &str, created: &str) -> ServicePrincipal {
    // The reference gives no authoritative id for this role (§1.5: look it up at runtime),
    // so the emulator uses a stable generated one; clients must read it from appRoles.
    let role = json!({
        "allowedMemberTypes": ["Application"],
        "description": "Allows the app to access the Skype and Teams Tenant Admin API without a signed-in user.",
        "displayName": "application_access",
        "id": fixed_guid("approle:teams-tenant-admin:application_access"),
        "isEnabled": true,
        "origin": "Application",
        "value": "application_access",
    });
    let scope = json!({
        "adminConsentDescription": "Allows the app to access the Skype and Teams Tenant Admin API as the signed-in user.",
        "adminConsentDisplayName": "user_impersonation",
        "id": fixed_guid("scope:teams-tenant-admin:user_impersonation"),
        "isEnabled": true,
        "type": "Admin",
        "value": "user_impersonation",
    });
    ServicePrincipal {
        passwords: Vec::new(),
        id: fixed_guid(&format!("sp:teams-tenant-admin:{domain}")),
        app_id: TEAMS_APP_ID.into(),
        display_name: "Skype and Teams Tenant Admin API".into(),
        app_owner_organization_id: MICROSOFT_TENANT_ID.into(),
        created: created.into(),
        app_roles: vec![role],
        oauth2_permission_scopes: vec![scope],
        tags: vec![],
        sign_in_audience: crate::model::multi_org(),
        visible_at_ms: 0,
    }
}

/// "contoso.onmicrosoft.com" -> "Contoso".
fn org_name(domain: &str) -> String {
    let first = domain.split('.').next().unwrap_or(domain);
    let mut chars = first.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => domain.to_string(),
    }
}

/// A seeded tenant (Contoso by default) with one user per interesting role combination.
pub fn seed_directory(domain: &str, created: &str) -> Directory {
    let tenant = Tenant {
        id: fixed_guid(&format!("tenant:{domain}")),
        domain: domain.to_string(),
        display_name: org_name(domain),
        provider_tenant_id: fixed_guid("tenant:provider"),
    };
    let people: &[(&str, &str, &str, &[&str])] = &[
        ("globaladmin", "Adele", "Vance", &[GLOBAL_ADMIN]),
        ("privroleadmin", "Alex", "Wilber", &[PRIV_ROLE_ADMIN]),
        ("appadmin", "Isaiah", "Langer", &[APP_ADMIN]),
        ("user", "Lynne", "Robbins", &[]),
    ];
    let mut users = Vec::new();
    let mut role_assignments = Vec::new();
    for (nick, given, sur, roles) in people {
        let upn = format!("{nick}@{domain}");
        let id = fixed_guid(&format!("user:{upn}"));
        for r in *roles {
            role_assignments.push(RoleAssignment {
                id: fixed_guid(&format!("roleassignment:{upn}:{r}")),
                role_definition_id: r.to_string(),
                principal_id: id.clone(),
                directory_scope_id: "/".into(),
                listed_at_ms: 0,
            });
        }
        users.push(User {
            id,
            upn,
            display_name: format!("{given} {sur}"),
            given_name: given.to_string(),
            surname: sur.to_string(),
            home: None,
        });
    }
    Directory {
        tenant,
        users,
        applications: vec![],
        service_principals: vec![graph_sp(domain, created), teams_sp(domain, created)],
        app_role_assignments: vec![],
        oauth2_permission_grants: vec![],
        role_assignments,
        deleted_items: vec![],
        deleted_applications: vec![],
        deleted_service_principals: vec![],
        unlisting_app_role_assignments: vec![],
        unlisting_role_assignments: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_stable_and_has_the_four_role_profiles() {
        let a = seed_directory("contoso.onmicrosoft.com", "2026-01-01T00:00:00Z");
        let b = seed_directory("contoso.onmicrosoft.com", "2026-01-01T00:00:00Z");
        assert_eq!(a.tenant.id, b.tenant.id);
        let ga = a.user("GlobalAdmin@contoso.onmicrosoft.com").unwrap();
        assert_eq!(a.roles_of(&ga.id), vec![GLOBAL_ADMIN.to_string()]);
        let plain = a.user("user@contoso.onmicrosoft.com").unwrap();
        assert!(a.roles_of(&plain.id).is_empty());
        let graph = a.sp_by_app_id(GRAPH_APP_ID).unwrap();
        assert_eq!(
            graph.role_id("Application.ReadWrite.All").as_deref(),
            Some("1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9")
        );
        assert_eq!(
            role_name(PRIV_ROLE_ADMIN),
            Some("Privileged Role Administrator")
        );
    }
}
