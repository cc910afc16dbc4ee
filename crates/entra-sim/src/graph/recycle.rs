//! The recycle bin (`/directory/deletedItems`): deleted applications and service principals
//! stay there for restore or permanent deletion, as in Entra.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::authz::{self, READ_APPS, WRITE_APPS};
use super::odata::{collection, entity};
use super::{Ctx, Key, Reply};
use crate::http::no_content;
use crate::model::Directory;
use crate::state::now_rfc3339;

/// Moves an object's JSON to the recycle bin.
pub fn recycle(dir: &mut Directory, mut json: Value, odata_type: &str) {
    json["deletedDateTime"] = json!(now_rfc3339());
    json["@odata.type"] = json!(odata_type);
    dir.deleted_items.push(json);
}
/// Removes a service principal and everything that references it.
pub fn remove_sp(dir: &mut Directory, sp_id: &str) {
    if let Some(pos) = dir.service_principals.iter().position(|s| s.id == sp_id) {
        let sp = dir.service_principals.remove(pos);
        recycle(dir, sp.to_json(), "#microsoft.graph.servicePrincipal");
        dir.deleted_service_principals.push(sp);
    }
    dir.app_role_assignments
        .retain(|a| a.principal_id != sp_id && a.resource_id != sp_id);
    dir.oauth2_permission_grants
        .retain(|g| g.client_id != sp_id && g.resource_id != sp_id);
    dir.role_assignments.retain(|r| r.principal_id != sp_id);
}
/// `GET /directory/deletedItems/microsoft.graph.application` (or `.servicePrincipal`).
pub fn list_deleted(c: &Ctx<'_>, cast: &str) -> Reply {
    let inner = c.lock();
    authz::require(c, &inner.dir, &READ_APPS, &[])?;
    let ty = format!("#{cast}");
    let items = inner
        .dir
        .deleted_items
        .iter()
        .filter(|d| d["@odata.type"] == ty.as_str())
        .cloned()
        .collect();
    Ok(collection(
        c,
        &format!("directory/deletedItems/{cast}"),
        items,
    ))
}
/// `GET /directory/deletedItems/{id}`.
pub fn get_deleted(c: &Ctx<'_>, key: &Key) -> Reply {
    let inner = c.lock();
    authz::require(c, &inner.dir, &READ_APPS, &[])?;
    let id = c.object_id(key)?;
    let found = inner.dir.deleted_items.iter().find(|d| d["id"] == id);
    c.found("directory/deletedItems", id, found.cloned())
}
/// `DELETE /directory/deletedItems/{id}`: permanent deletion.
pub fn purge_deleted(c: &Ctx<'_>, key: &Key) -> Reply {
    let mut inner = c.lock();
    authz::require(c, &inner.dir, &WRITE_APPS, &[])?;
    let id = c.object_id(key)?;
    inner.dir.deleted_applications.retain(|a| a.id != id);
    inner.dir.deleted_service_principals.retain(|s| s.id != id);
    c.remove(&mut inner.dir.deleted_items, id, |d| d["id"] == id)?;
    c.s.persist(&inner);
    Ok(no_content())
}

/// `POST /directory/deletedItems/{id}/restore`: brings back a deleted application (with its
/// secrets) or service principal (without the grants that were removed with it).
pub fn restore(c: &Ctx<'_>, key: &Key) -> Reply {
    // "Do not supply a request body for this method." (directory-deleteditems-restore)
    if c.body.is_some() {
        return Err(c.err(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The restore action takes no request body.",
        ));
    }
    let mut inner = c.lock();
    authz::require(c, &inner.dir, &WRITE_APPS, &[])?;
    let id = c.object_id(key)?;
    let visible_at = c.s.visible_at(&inner);
    let dir = &mut inner.dir;
    let body = if let Some(pos) = dir.deleted_applications.iter().position(|a| a.id == id) {
        let unique = dir.deleted_applications[pos]
            .unique_name()
            .map(str::to_string);
        if let Some(u) = unique
            && dir
                .applications
                .iter()
                .any(|a| a.unique_name().is_some_and(|x| x.eq_ignore_ascii_case(&u)))
        {
            return Err(super::apps::conflict(c, "uniqueName"));
        }
        let mut app = dir.deleted_applications.remove(pos);
        app.visible_at_ms = visible_at;
        let json = app.to_json(&dir.tenant.domain);
        dir.applications.push(app);
        json
    } else if let Some(pos) = dir
        .deleted_service_principals
        .iter()
        .position(|s| s.id == id)
    {
        let app_id = dir.deleted_service_principals[pos].app_id.clone();
        if dir.sp_by_app_id(&app_id).is_some() {
            return Err(c.err(StatusCode::CONFLICT, "Request_MultipleObjectsWithSameKeyValue", &format!("The service principal cannot be created, updated, or restored because the service principal name {app_id} is already in use.")));
        }
        let mut sp = dir.deleted_service_principals.remove(pos);
        sp.visible_at_ms = visible_at;
        let json = sp.to_json();
        dir.service_principals.push(sp);
        json
    } else {
        return Err(c.not_found(id));
    };
    dir.deleted_items.retain(|d| d["id"] != id);
    c.s.persist(&inner);
    Ok(entity(c, "directoryObjects", StatusCode::OK, body))
}
