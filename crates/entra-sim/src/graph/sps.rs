//! `/servicePrincipals` (incl. app role assignments) and `/oauth2PermissionGrants`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::authz::{
    self, ASSIGN_GRAPH_ROLES, ASSIGN_OTHER_ROLES, Need, READ_APPS, READ_GRANTS, WRITE_APPS,
    WRITE_GRANTS,
};
use super::lookup::AltKey;
use super::odata::{collection, entity};
use super::{Caller, Ctx, Key, Reply};
use crate::defaults::{APP_ROLE_ASSIGNMENT_PROPERTIES, SP_PROPERTIES};
use crate::http::{ErrorDetail, graph_json, no_content, odata_error_details};
use crate::model::{AppRoleAssignment, Directory, PermissionGrant, ServicePrincipal};
use crate::seed::GRAPH_APP_ID;
use crate::state::{new_guid, now_rfc3339, random_key};

/// Properties `$filter` may use on service principals.
const SP_FILTERS: &[&str] = &[
    "appId",
    "displayName",
    "id",
    "servicePrincipalNames",
    "tags",
    "appOwnerOrganizationId",
    "servicePrincipalType",
    "accountEnabled",
];

fn find(c: &Ctx<'_>, dir: &Directory, key: &Key) -> Result<usize, Response> {
    let alt_keys: &[AltKey<ServicePrincipal>] =
        &[("appId", |s, v| s.app_id.eq_ignore_ascii_case(v))];
    c.find_key(
        &dir.service_principals,
        key,
        "servicePrincipal",
        alt_keys,
        |s| c.sees(s.visible_at_ms),
    )
}

/// Owners of the local application behind an SP (they may manage it without a role).
fn sp_owners(dir: &Directory, sp: &ServicePrincipal) -> Vec<String> {
    dir.app_by_app_id(&sp.app_id)
        .map(|a| a.owners.clone())
        .unwrap_or_default()
}

/// Index of the service principal a key names, once the caller is found to hold the right to
/// change it (the owners of its local application pass the role check).
fn find_writable(c: &Ctx<'_>, dir: &Directory, key: &Key) -> Result<usize, Response> {
    let idx = find(c, dir, key)?;
    let owners = sp_owners(dir, &dir.service_principals[idx]);
    authz::require(c, dir, &WRITE_APPS, &owners)?;
    Ok(idx)
}

/// `GET /servicePrincipals`.
pub fn list(c: &Ctx<'_>) -> Reply {
    let inner = c.lock();
    let dir = &inner.dir;
    c.may_list(dir, &READ_APPS, "servicePrincipal", SP_FILTERS)?;
    let items = dir
        .service_principals
        .iter()
        .filter(|s| c.sees(s.visible_at_ms))
        .map(ServicePrincipal::to_json)
        .collect();
    Ok(collection(c, "servicePrincipals", items))
}

/// `GET /servicePrincipals/{id}` or `(appId='…')`.
pub fn get(c: &Ctx<'_>, key: &Key) -> Reply {
    let inner = c.lock();
    authz::require(c, &inner.dir, &READ_APPS, &[])?;
    let i = find(c, &inner.dir, key)?;
    let json = inner.dir.service_principals[i].to_json();
    Ok(entity(c, "servicePrincipals", StatusCode::OK, json))
}

/// `POST /servicePrincipals/{id}/addPassword`: a secret on the service principal itself.
pub fn add_password(c: &Ctx<'_>, key: &Key) -> Reply {
    let mut inner = c.lock();
    let i = find_writable(c, &inner.dir, key)?;
    let (pw, body) = super::apps::new_password(c, &inner)?;
    inner.dir.service_principals[i].passwords.push(pw);
    c.s.persist(&inner);
    Ok(graph_json(StatusCode::OK, &body))
}

/// `POST /servicePrincipals/{id}/removePassword` `{ "keyId": … }` (204).
pub fn remove_password(c: &Ctx<'_>, key: &Key) -> Reply {
    let mut inner = c.lock();
    let i = find_writable(c, &inner.dir, key)?;
    super::apps::remove_from(c, &mut inner.dir.service_principals[i].passwords)?;
    c.s.persist(&inner);
    Ok(no_content())
}

/// `POST /servicePrincipals` `{ "appId": … }`.
pub fn create(c: &Ctx<'_>) -> Reply {
    let mut inner = c.lock();
    c.only_known("servicePrincipal", SP_PROPERTIES)?;
    let app_id = c.body_str(
        "appId",
        "Invalid value specified for property 'appId' of resource 'ServicePrincipal'.",
    )?;
    let app = inner.dir.app_by_app_id(&app_id).cloned();
    let owners = app.as_ref().map(|a| a.owners.clone()).unwrap_or_default();
    authz::require(c, &inner.dir, &WRITE_APPS, &owners)?;
    if inner.dir.sp_by_app_id(&app_id).is_some() {
        return Err(c.err(StatusCode::CONFLICT, "Request_MultipleObjectsWithSameKeyValue", &format!("The service principal cannot be created, updated, or restored because the service principal name {app_id} is already in use.")));
    }
    let tenant_id = inner.dir.tenant.id.clone();
    let sp = match app {
        Some(a) if c.s.visible(a.visible_at_ms) => ServicePrincipal {
            passwords: Vec::new(),
            id: new_guid(),
            app_id: a.app_id.clone(),
            display_name: a.display_name().to_string(),
            app_owner_organization_id: tenant_id,
            created: now_rfc3339(),
            app_roles: a
                .props
                .get("appRoles")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            oauth2_permission_scopes: a
                .props
                .get("api")
                .map(|v| &v["oauth2PermissionScopes"])
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            tags: a
                .props
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            sign_in_audience: a
                .props
                .get("signInAudience")
                .and_then(Value::as_str)
                .unwrap_or("AzureADMyOrg")
                .to_string(),
            visible_at_ms: c.s.visible_at(&inner),
        },
        _ if app_id.eq_ignore_ascii_case(&c.s.token_app_id) => ServicePrincipal {
            passwords: Vec::new(),
            id: new_guid(),
            app_id: c.s.token_app_id.clone(),
            display_name: c.s.config.token_app_name(),
            app_owner_organization_id: inner.dir.tenant.provider_tenant_id.clone(),
            created: now_rfc3339(),
            app_roles: vec![],
            oauth2_permission_scopes: vec![],
            tags: vec!["WindowsAzureActiveDirectoryIntegratedApp".into()],
            sign_in_audience: crate::model::multi_org(),
            visible_at_ms: c.s.visible_at(&inner),
        },
        _ => {
            // Unknown, or not replicated yet: Entra reports both the same way.
            if matches!(c.caller, Caller::App { .. }) {
                return Err(c.err(StatusCode::FORBIDDEN, "Authorization_RequestDenied", "When using this permission, the backing application of the service principal being created must in the local tenant"));
            }
            let message = format!(
                "The appId '{app_id}' of the service principal does not reference a valid application object."
            );
            return Err(odata_error_details(
                c.ids,
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                &message,
                &[ErrorDetail {
                    code: "NoBackingApplicationObject",
                    message: &message,
                    target: Some("appId"),
                }],
            ));
        }
    };
    let json = sp.to_json();
    inner.dir.service_principals.push(sp);
    Ok(c.created(&inner, "servicePrincipals", json))
}

/// `DELETE /servicePrincipals/{id}` or `(appId='…')`.
pub fn delete(c: &Ctx<'_>, key: &Key) -> Reply {
    let mut inner = c.lock();
    let idx = find_writable(c, &inner.dir, key)?;
    let sp_id = inner.dir.service_principals[idx].id.clone();
    super::recycle::remove_sp(&mut inner.dir, &sp_id);
    c.s.persist(&inner);
    Ok(no_content())
}

/// `GET /servicePrincipals/{id}/appRoleAssignedTo`: who holds this resource's app roles.
pub fn list_assigned_to(c: &Ctx<'_>, key: &Key) -> Reply {
    list_role_assignments(c, key, "appRoleAssignedTo", |a, id| a.resource_id == id)
}

/// `GET /servicePrincipals/{id}/appRoleAssignments`: the app roles this SP holds.
pub fn list_assignments(c: &Ctx<'_>, key: &Key) -> Reply {
    list_role_assignments(c, key, "appRoleAssignments", |a, id| a.principal_id == id)
}

/// The id of the service principal `key` names, once the caller is allowed `need`.
fn readable_sp_id(
    c: &Ctx<'_>,
    dir: &Directory,
    key: &Key,
    need: &Need,
) -> Result<String, Response> {
    authz::require(c, dir, need, &[])?;
    let idx = find(c, dir, key)?;
    Ok(dir.service_principals[idx].id.clone())
}

/// The app role assignments `of` the service principal `key` names, as its `relation`.
fn list_role_assignments(
    c: &Ctx<'_>,
    key: &Key,
    relation: &str,
    of: impl Fn(&AppRoleAssignment, &str) -> bool,
) -> Reply {
    let inner = c.lock();
    let id = readable_sp_id(c, &inner.dir, key, &READ_APPS)?;
    let unlisting = c.s.still_listed(&inner.dir.unlisting_app_role_assignments);
    let items = inner
        .dir
        .app_role_assignments
        .iter()
        .filter(|a| c.s.visible(a.listed_at_ms))
        .chain(unlisting)
        .filter(|a| of(a, &id))
        .map(AppRoleAssignment::to_json)
        .collect();
    let context = format!("servicePrincipals('{id}')/{relation}");
    Ok(collection(c, &context, items))
}

fn bad_reference(c: &Ctx<'_>) -> Response {
    c.bad_request("Not a valid reference update.")
}

/// `POST /servicePrincipals/{resource}/appRoleAssignedTo` (`via_resource`) or
/// `POST /servicePrincipals/{principal}/appRoleAssignments`: admin consent to an app role.
pub fn assign(c: &Ctx<'_>, key: &Key, via_resource: bool) -> Reply {
    let mut inner = c.lock();
    let body = c.body_object()?.clone();
    c.only_known("appRoleAssignment", APP_ROLE_ASSIGNMENT_PROPERTIES)?;
    let path_idx = find(c, &inner.dir, key)?;
    let path_sp = inner.dir.service_principals[path_idx].clone();
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    // Graph's appRoleAssignment create takes all three of principalId, resourceId and
    // appRoleId in the body, whichever side of the assignment the URL names.
    let (resource_id, principal_id) = if via_resource {
        (
            field("resourceId").map(|_| path_sp.id.clone()),
            field("principalId"),
        )
    } else {
        (field("resourceId"), Some(path_sp.id.clone()))
    };
    let (Some(resource_id), Some(principal_id), Some(app_role_id)) =
        (resource_id, principal_id, field("appRoleId"))
    else {
        return Err(c.bad_request("One or more properties contains invalid values."));
    };
    if via_resource && field("resourceId").is_some_and(|r| !r.eq_ignore_ascii_case(&resource_id)) {
        return Err(c.bad_request(
            "The resourceId in the body does not match the service principal in the request URL.",
        ));
    }
    let Some(resource) = inner
        .dir
        .sp(&resource_id)
        .filter(|r| c.s.visible(r.visible_at_ms))
        .cloned()
    else {
        return Err(c.not_found(&resource_id));
    };
    let need = if resource.app_id.eq_ignore_ascii_case(GRAPH_APP_ID) {
        &ASSIGN_GRAPH_ROLES
    } else {
        &ASSIGN_OTHER_ROLES
    };
    authz::require(c, &inner.dir, need, &[])?;
    if !authz::caller_holds_any(c, authz::ASSIGN_ROLES_ALSO) {
        return Err(c.denied());
    }
    let Some(principal) = inner
        .dir
        .sp(&principal_id)
        .filter(|p| c.s.visible(p.visible_at_ms))
        .cloned()
    else {
        return Err(bad_reference(c));
    };
    if resource.role_value(&app_role_id).is_none() {
        return Err(c.bad_request(&format!(
            "Permission being assigned was not found on application '{}'.",
            resource.app_id
        )));
    }
    if inner.dir.app_role_assignments.iter().any(|a| {
        a.principal_id == principal.id
            && a.resource_id == resource.id
            && a.app_role_id.eq_ignore_ascii_case(&app_role_id)
    }) {
        return Err(c.bad_request("Permission being assigned already exists on the object."));
    }
    let a = AppRoleAssignment {
        id: random_key(32),
        app_role_id: app_role_id.to_ascii_lowercase(),
        principal_id: principal.id.clone(),
        principal_display_name: principal.display_name.clone(),
        resource_id: resource.id.clone(),
        resource_display_name: resource.display_name.clone(),
        created: now_rfc3339(),
        visible_at_ms: c.s.visible_at(&inner),
        listed_at_ms: c.s.listed_at(&inner),
    };
    let json = a.to_json();
    inner.dir.app_role_assignments.push(a);
    let nav = if via_resource {
        "appRoleAssignedTo"
    } else {
        "appRoleAssignments"
    };
    let entity_set = format!("servicePrincipals('{}')/{nav}", path_sp.id);
    Ok(c.created(&inner, &entity_set, json))
}

/// `DELETE /servicePrincipals/{id}/appRoleAssignedTo/{assignment}` (or `/appRoleAssignments/{assignment}`).
pub fn unassign(c: &Ctx<'_>, key: &Key, assignment: &str, via_resource: bool) -> Reply {
    let mut inner = c.lock();
    let idx = find(c, &inner.dir, key)?;
    let sp_id = inner.dir.service_principals[idx].id.clone();
    let Some(pos) = inner.dir.app_role_assignments.iter().position(|a| {
        a.id == assignment
            && if via_resource {
                a.resource_id == sp_id
            } else {
                a.principal_id == sp_id
            }
    }) else {
        return Err(c.not_found(assignment));
    };
    let resource_app = inner
        .dir
        .sp(&inner.dir.app_role_assignments[pos].resource_id)
        .map(|r| r.app_id.clone())
        .unwrap_or_default();
    let need = if resource_app.eq_ignore_ascii_case(GRAPH_APP_ID) {
        &ASSIGN_GRAPH_ROLES
    } else {
        &ASSIGN_OTHER_ROLES
    };
    authz::require(c, &inner.dir, need, &[])?;
    let removed = inner.dir.app_role_assignments.remove(pos);
    let until = c.s.listed_at(&inner);
    c.s.unlist(
        &mut inner.dir.unlisting_app_role_assignments,
        removed,
        until,
    );
    c.s.persist(&inner);
    Ok(no_content())
}

/// `GET /servicePrincipals/{id}/oauth2PermissionGrants`.
pub fn list_grants_of(c: &Ctx<'_>, key: &Key) -> Reply {
    let inner = c.lock();
    let id = readable_sp_id(c, &inner.dir, key, &READ_GRANTS)?;
    let items = inner
        .dir
        .oauth2_permission_grants
        .iter()
        .filter(|g| g.client_id == id)
        .map(PermissionGrant::to_json)
        .collect();
    Ok(collection(c, "oauth2PermissionGrants", items))
}

/// `GET /oauth2PermissionGrants`.
pub fn list_grants(c: &Ctx<'_>) -> Reply {
    let inner = c.lock();
    let filters = ["clientId", "resourceId", "consentType", "principalId", "id"];
    c.may_list(&inner.dir, &READ_GRANTS, "oAuth2PermissionGrant", &filters)?;
    let items = inner
        .dir
        .oauth2_permission_grants
        .iter()
        .map(PermissionGrant::to_json)
        .collect();
    Ok(collection(c, "oauth2PermissionGrants", items))
}

/// `POST /oauth2PermissionGrants`: delegated consent.
pub fn create_grant(c: &Ctx<'_>) -> Reply {
    let mut inner = c.lock();
    authz::require(c, &inner.dir, &WRITE_GRANTS, &[])?;
    let body = c.body_object()?.clone();
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let consent_type = field("consentType").unwrap_or_default();
    let principal_id = field("principalId");
    let valid_type = match consent_type.as_str() {
        "AllPrincipals" => principal_id.is_none(),
        "Principal" => principal_id
            .as_ref()
            .is_some_and(|p| inner.dir.user(p).is_some()),
        _ => false,
    };
    let (Some(client_id), Some(resource_id), Some(scope), true) = (
        field("clientId"),
        field("resourceId"),
        field("scope"),
        valid_type,
    ) else {
        return Err(c.bad_request("One or more properties contains invalid values."));
    };
    for id in [&client_id, &resource_id] {
        if inner
            .dir
            .sp(id)
            .filter(|s| c.s.visible(s.visible_at_ms))
            .is_none()
        {
            return Err(c.not_found(id));
        }
    }
    let dup = inner.dir.oauth2_permission_grants.iter().any(|g| {
        g.client_id == client_id
            && g.resource_id == resource_id
            && g.consent_type == consent_type
            && g.principal_id == principal_id
    });
    if dup {
        return Err(c.err(
            StatusCode::CONFLICT,
            "Request_MultipleObjectsWithSameKeyValue",
            "Permission entry already exists.",
        ));
    }
    let g = PermissionGrant {
        id: random_key(32),
        client_id,
        consent_type,
        principal_id,
        resource_id,
        scope,
    };
    let json = g.to_json();
    inner.dir.oauth2_permission_grants.push(g);
    Ok(c.created(&inner, "oauth2PermissionGrants", json))
}

/// `GET /oauth2PermissionGrants/{id}`.
pub fn get_grant(c: &Ctx<'_>, id: &str) -> Reply {
    let inner = c.lock();
    authz::require(c, &inner.dir, &READ_GRANTS, &[])?;
    let found = inner
        .dir
        .oauth2_permission_grants
        .iter()
        .find(|g| g.id == id);
    c.found(
        "oauth2PermissionGrants",
        id,
        found.map(PermissionGrant::to_json),
    )
}

/// `PATCH /oauth2PermissionGrants/{id}` `{ "scope": … }`.
pub fn patch_grant(c: &Ctx<'_>, id: &str) -> Reply {
    let mut inner = c.lock();
    authz::require(c, &inner.dir, &WRITE_GRANTS, &[])?;
    let scope = c.body_str("scope", "Invalid value specified for property 'scope'.")?;
    match inner
        .dir
        .oauth2_permission_grants
        .iter_mut()
        .find(|g| g.id == id)
    {
        Some(g) => g.scope = scope,
        None => return Err(c.not_found(id)),
    }
    c.s.persist(&inner);
    Ok(no_content())
}

/// `DELETE /oauth2PermissionGrants/{id}`.
pub fn delete_grant(c: &Ctx<'_>, id: &str) -> Reply {
    let mut inner = c.lock();
    authz::require(c, &inner.dir, &WRITE_GRANTS, &[])?;
    c.remove(&mut inner.dir.oauth2_permission_grants, id, |g| g.id == id)?;
    c.s.persist(&inner);
    Ok(no_content())
}
