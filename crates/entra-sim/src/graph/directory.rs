//! Users, `/me`, `/organization`, directory roles and `/roleManagement/directory`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::authz::{self, ME, READ_ORG, READ_ROLES, READ_USERS, WRITE_ROLES};
use super::odata::{collection, entity};
use super::{Caller, Ctx, Key, Reply};
use crate::defaults::ROLE_ASSIGNMENT_PROPERTIES;
use crate::http::no_content;
use crate::model::{Directory, RoleAssignment, User};
use crate::seed::{GLOBAL_ADMIN, ROLE_TEMPLATES, fixed_guid, role_name};
use crate::state::random_key;

fn directory_role_json(template: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.directoryRole",
        "id": fixed_guid(&format!("directoryRole:{template}")),
        "deletedDateTime": null,
        "description": format!("Members of this role have the permissions of {}.", role_name(template).unwrap_or(template)),
        "displayName": role_name(template).unwrap_or(template),
        "roleTemplateId": template,
    })
}

fn role_definition_json(template: &str, name: &str) -> Value {
    json!({
        "id": template,
        "description": format!("Built-in role {name}."),
        "displayName": name,
        "isBuiltIn": true,
        "isEnabled": true,
        "resourceScopes": ["/"],
        "templateId": template,
        "version": "1",
        "rolePermissions": [],
    })
}

/// The tenant's "All Company" Microsoft 365 group, which every user of the emulated tenant is a
/// member of: memberships are not only directory roles, so `memberOf` lists a group too, as
/// Graph lists every membership (groups, directory roles, administrative units).
fn all_company_group_json(dir: &Directory) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.group",
        "id": fixed_guid(&format!("group:all-company:{}", dir.tenant.id)),
        "deletedDateTime": null,
        "classification": null,
        "createdDateTime": "2026-01-01T00:00:00Z",
        "description": "Everyone in the organisation.",
        "displayName": "All Company",
        "groupTypes": ["Unified"],
        "isAssignableToRole": null,
        "mail": format!("allcompany@{}", dir.tenant.domain),
        "mailEnabled": true,
        "mailNickname": "allcompany",
        "securityEnabled": false,
        "visibility": "Public",
    })
}

/// Type and id only, every other property null: a `directoryObject` collection item the caller
/// may not read (Graph's "limited information for inaccessible member objects").
fn stripped(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        for (k, val) in m.iter_mut() {
            if k != "@odata.type" && k != "id" {
                *val = Value::Null;
            }
        }
    }
    v
}

/// The principal's memberships, each full or stripped depending on what the caller may read:
/// the tenant's group for a user, then its directory roles.
fn member_of(c: &Ctx<'_>, dir: &Directory, principal: &str) -> Vec<Value> {
    let roles = authz::caller_holds_any(c, authz::READ_DIRECTORY_ROLE_OBJECTS);
    let groups = authz::caller_holds_any(c, authz::READ_GROUP_OBJECTS);
    let group = dir.user(principal).map(|_| all_company_group_json(dir));
    let group = group.map(|g| if groups { g } else { stripped(g) });
    group
        .into_iter()
        .chain(dir.roles_of(principal).iter().map(|t| {
            let role = directory_role_json(t);
            if roles { role } else { stripped(role) }
        }))
        .collect()
}

/// A user as Graph answers this request: the default properties, plus those Graph returns
/// only on `$select` that the request's `$select` or `$filter` names (`userType`, …).
fn user_json(c: &Ctx<'_>, u: &User) -> Value {
    let select = c.query.select.iter().flatten().map(String::as_str);
    let named: Vec<&str> = select
        .chain(c.query.filter.iter().map(|f| f.prop()))
        .collect();
    u.to_json_with(&named)
}

fn me_id(c: &Ctx<'_>) -> Result<String, Response> {
    match &c.caller {
        Caller::User { id, .. } => Ok(id.clone()),
        Caller::App { .. } => Err(c.err(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        )),
    }
}

/// `GET /me`.
pub fn me(c: &Ctx<'_>) -> Reply {
    let inner = c.lock();
    let id = me_id(c).and_then(|id| authz::require(c, &inner.dir, &ME, &[]).map(|()| id))?;
    Ok(match inner.dir.user(&id) {
        Some(u) => entity(c, "users", StatusCode::OK, user_json(c, u)),
        None => c.not_found(&id),
    })
}

/// `GET /me/memberOf` and `/me/transitiveMemberOf`: the user's memberships.
pub fn me_member_of(c: &Ctx<'_>) -> Reply {
    let inner = c.lock();
    let id = me_id(c).and_then(|id| authz::require(c, &inner.dir, &ME, &[]).map(|()| id))?;
    Ok(collection(
        c,
        "directoryObjects",
        member_of(c, &inner.dir, &id),
    ))
}

/// `GET /users`.
pub fn list_users(c: &Ctx<'_>) -> Reply {
    let inner = c.lock();
    let filters = ["userPrincipalName", "displayName", "id", "mail", "userType"];
    c.may_list(&inner.dir, &READ_USERS, "user", &filters)?;
    let users = inner.dir.users.iter().map(|u| user_json(c, u)).collect();
    Ok(collection(c, "users", users))
}

fn user_key<'a>(dir: &'a Directory, key: &Key) -> Option<&'a crate::model::User> {
    match key {
        Key::Id(k) => dir.user(k),
        Key::Alt(p, v) if p.eq_ignore_ascii_case("userPrincipalName") => dir.user(v),
        Key::Alt(..) => None,
    }
}

/// `GET /users/{id | userPrincipalName}`.
pub fn get_user(c: &Ctx<'_>, key: &Key) -> Reply {
    let inner = c.lock();
    let own = matches!((&c.caller, key), (Caller::User { id, .. }, Key::Id(k)) if inner.dir.user(k).is_some_and(|u| &u.id == id));
    authz::require(c, &inner.dir, if own { &ME } else { &READ_USERS }, &[])?;
    Ok(match user_key(&inner.dir, key) {
        Some(u) => entity(c, "users", StatusCode::OK, user_json(c, u)),
        None => c.not_found(match key {
            Key::Id(k) | Key::Alt(_, k) => k,
        }),
    })
}

/// `GET /users/{id}/memberOf`.
pub fn user_member_of(c: &Ctx<'_>, key: &Key) -> Reply {
    let inner = c.lock();
    authz::require(c, &inner.dir, &READ_USERS, &[])?;
    Ok(match user_key(&inner.dir, key) {
        Some(u) => collection(c, "directoryObjects", member_of(c, &inner.dir, &u.id)),
        None => c.not_found(match key {
            Key::Id(k) | Key::Alt(_, k) => k,
        }),
    })
}

/// `GET /organization`.
pub fn organization(c: &Ctx<'_>) -> Reply {
    let inner = c.lock();
    authz::require(c, &inner.dir, &READ_ORG, &[])?;
    let t = &inner.dir.tenant;
    // Every v1.0 organization property (Identity.DirectoryManagement.yml), null or empty when
    // the seeded tenant does not set it.
    let org = json!({
        "id": t.id,
        "deletedDateTime": null,
        "assignedPlans": [],
        "businessPhones": [],
        "city": null,
        "country": null,
        "countryLetterCode": "US",
        "createdDateTime": "2020-01-01T00:00:00Z",
        "defaultUsageLocation": null,
        "displayName": t.display_name,
        "marketingNotificationEmails": [],
        "mobileDeviceManagementAuthority": null,
        "onPremisesLastSyncDateTime": null,
        "onPremisesSyncEnabled": null,
        "partnerTenantType": null,
        "postalCode": null,
        "preferredLanguage": "en",
        "privacyProfile": null,
        "provisionedPlans": [],
        "securityComplianceNotificationMails": [],
        "securityComplianceNotificationPhones": [],
        "state": null,
        "street": null,
        "technicalNotificationMails": [format!("globaladmin@{}", t.domain)],
        "tenantType": "AAD",
        "verifiedDomains": [{"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": true, "isInitial": true, "name": t.domain, "type": "Managed"}],
    });
    Ok(collection(c, "organization", vec![org]))
}

/// `GET /directoryRoles`: activated roles (those with members; Global Administrator always).
pub fn list_directory_roles(c: &Ctx<'_>) -> Reply {
    let inner = c.lock();
    authz::require(c, &inner.dir, &READ_ROLES, &[])?;
    let items = ROLE_TEMPLATES
        .iter()
        .filter(|(t, _)| {
            *t == GLOBAL_ADMIN
                || inner
                    .dir
                    .role_assignments
                    .iter()
                    .any(|r| r.role_definition_id == *t)
        })
        .map(|(t, _)| directory_role_json(t))
        .collect();
    Ok(collection(c, "directoryRoles", items))
}

/// `GET /directoryRoles/{id}/members` (also `directoryRoles(roleTemplateId='…')/members`).
pub fn directory_role_members(c: &Ctx<'_>, key: &Key) -> Reply {
    let inner = c.lock();
    authz::require(c, &inner.dir, &READ_ROLES, &[])?;
    let template = ROLE_TEMPLATES.iter().map(|(t, _)| *t).find(|t| match key {
        Key::Id(id) => fixed_guid(&format!("directoryRole:{t}")) == *id,
        Key::Alt(p, v) => p.eq_ignore_ascii_case("roleTemplateId") && t.eq_ignore_ascii_case(v),
    });
    let Some(template) = template else {
        return Err(c.not_found(match key {
            Key::Id(k) | Key::Alt(_, k) => k,
        }));
    };
    let dir = &inner.dir;
    let items = dir
        .role_assignments
        .iter()
        .filter(|r| r.role_definition_id == template)
        .filter_map(|r| {
            if let Some(u) = dir.user(&r.principal_id) {
                let mut v = u.to_json();
                v["@odata.type"] = json!("#microsoft.graph.user");
                Some(v)
            } else {
                dir.sp(&r.principal_id).map(|s| {
                    let mut v = s.to_json();
                    v["@odata.type"] = json!("#microsoft.graph.servicePrincipal");
                    v
                })
            }
        })
        .collect();
    Ok(collection(c, "directoryObjects", items))
}

/// `GET /roleManagement/directory/roleDefinitions`.
pub fn list_role_definitions(c: &Ctx<'_>) -> Reply {
    let inner = c.lock();
    let filters = ["templateId", "displayName", "isBuiltIn", "id"];
    c.may_list(&inner.dir, &READ_ROLES, "unifiedRoleDefinition", &filters)?;
    let items = ROLE_TEMPLATES
        .iter()
        .map(|(t, n)| role_definition_json(t, n))
        .collect();
    Ok(collection(
        c,
        "roleManagement/directory/roleDefinitions",
        items,
    ))
}

/// `GET /roleManagement/directory/roleDefinitions/{id}`.
pub fn get_role_definition(c: &Ctx<'_>, key: &Key) -> Reply {
    let inner = c.lock();
    authz::require(c, &inner.dir, &READ_ROLES, &[])?;
    let id = c.object_id(key)?;
    let found = ROLE_TEMPLATES
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(id))
        .map(|(t, n)| role_definition_json(t, n));
    c.found("roleManagement/directory/roleDefinitions", id, found)
}

/// `GET /roleManagement/directory/roleAssignments` (`$filter` on principalId, roleDefinitionId, …).
pub fn list_role_assignments(c: &Ctx<'_>) -> Reply {
    let inner = c.lock();
    let filters = [
        "principalId",
        "roleDefinitionId",
        "directoryScopeId",
        "id",
        "appScopeId",
    ];
    c.may_list(
        &inner.dir,
        &authz::READ_ROLE_ASSIGNMENTS,
        "unifiedRoleAssignment",
        &filters,
    )?;
    // rbacapplication-list-roleassignments: $filter, $expand and $select only; Graph refuses
    // $top here (OData's standard refusal), so a client must not send it.
    if c.query.top.is_some() {
        return Err(c.err(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The query specified in the URI is not valid. Query option 'Top' is not allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings.",
        ));
    }
    let unlisting = c.s.still_listed(&inner.dir.unlisting_role_assignments);
    let items = inner
        .dir
        .role_assignments
        .iter()
        .filter(|r| c.s.visible(r.listed_at_ms))
        .chain(unlisting)
        .map(RoleAssignment::to_json)
        .collect();
    Ok(collection(
        c,
        "roleManagement/directory/roleAssignments",
        items,
    ))
}

/// `POST /roleManagement/directory/roleAssignments`.
pub fn create_role_assignment(c: &Ctx<'_>) -> Reply {
    let mut inner = c.lock();
    authz::require(c, &inner.dir, &WRITE_ROLES, &[])?;
    let body = c.body_object()?.clone();
    c.only_known("unifiedRoleAssignment", ROLE_ASSIGNMENT_PROPERTIES)?;
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(role), Some(principal)) = (field("roleDefinitionId"), field("principalId")) else {
        return Err(c.bad_request("One or more properties contains invalid values."));
    };
    // Graph requires a scope: directoryScopeId (or appScopeId, which the emulator does not
    // model); no default is assumed.
    let Some(scope) = field("directoryScopeId") else {
        return Err(c.bad_request("One or more properties contains invalid values."));
    };
    if scope != "/" {
        return Err(
            c.bad_request("The emulator supports only the tenant-wide directoryScopeId '/'.")
        );
    }
    let Some((template, _)) = ROLE_TEMPLATES
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(&role))
    else {
        return Err(c.not_found(&role));
    };
    let dir = &inner.dir;
    let exists = dir.user(&principal).is_some()
        || dir
            .sp(&principal)
            .is_some_and(|s| c.s.visible(s.visible_at_ms));
    if !exists {
        return Err(c.not_found(&principal));
    }
    if dir
        .role_assignments
        .iter()
        .any(|r| r.principal_id == principal && r.role_definition_id == *template)
    {
        return Err(c.bad_request("A conflicting object with one or more of the specified property values is present in the directory."));
    }
    let a = RoleAssignment {
        id: random_key(32),
        role_definition_id: template.to_string(),
        principal_id: principal,
        directory_scope_id: scope,
        listed_at_ms: c.s.listed_at(&inner),
    };
    let json = a.to_json();
    inner.dir.role_assignments.push(a);
    Ok(c.created(&inner, "roleManagement/directory/roleAssignments", json))
}

/// `GET /roleManagement/directory/roleAssignments/{id}`.
pub fn get_role_assignment(c: &Ctx<'_>, key: &Key) -> Reply {
    let inner = c.lock();
    authz::require(c, &inner.dir, &READ_ROLES, &[])?;
    let id = c.object_id(key)?;
    let found = inner.dir.role_assignments.iter().find(|r| r.id == id);
    c.found(
        "roleManagement/directory/roleAssignments",
        id,
        found.map(RoleAssignment::to_json),
    )
}

/// `DELETE /roleManagement/directory/roleAssignments/{id}`.
pub fn delete_role_assignment(c: &Ctx<'_>, key: &Key) -> Reply {
    let mut inner = c.lock();
    authz::require(c, &inner.dir, &WRITE_ROLES, &[])?;
    let id = c.object_id(key)?;
    let removed = inner
        .dir
        .role_assignments
        .iter()
        .find(|r| r.id == id)
        .cloned();
    c.remove(&mut inner.dir.role_assignments, id, |r| r.id == id)?;
    // The lists may go on showing it for a while (`Faults::assignment_list_lag_ms`).
    let until = c.s.listed_at(&inner);
    if let Some(r) = removed {
        c.s.unlist(&mut inner.dir.unlisting_role_assignments, r, until);
    }
    c.s.persist(&inner);
    Ok(no_content())
}
