//! `/applications/{id}/federatedIdentityCredentials`: workload identity federation, which lets
//! a token from another issuer (GitHub Actions, a Kubernetes cluster, another tenant) sign in
//! as the app with no secret at all (Graph `federatedIdentityCredential`: list, create, get,
//! delete). Entra's rules: `name` required, 3 to 120 characters, unique on the app and never
//! changed; `issuer` and `subject` required; `audiences` exactly one value; at most 20 on one
//! app. Read and written with the app's own rights (an owner may).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::apps::find_allowed;
use super::authz::{READ_APPS, WRITE_APPS};
use super::odata::{collection, entity};
use super::{Ctx, Key, Reply};
use crate::http::no_content;
use crate::state::new_guid;

/// Entra's limit of federated identity credentials on one application.
const MAX_PER_APP: usize = 20;

/// The entity set of an application's credentials, for `@odata.context`.
fn entity_set(app_id: &str) -> String {
    format!("applications('{app_id}')/federatedIdentityCredentials")
}

/// `GET /applications/{id}/federatedIdentityCredentials`.
pub fn list(c: &Ctx<'_>, app: &Key) -> Reply {
    let inner = c.lock();
    let i = find_allowed(c, &inner.dir, app, &READ_APPS)?;
    let a = &inner.dir.applications[i];
    Ok(collection(c, &entity_set(&a.id), a.federated.clone()))
}

/// `GET /applications/{id}/federatedIdentityCredentials/{id or name}`.
pub fn get(c: &Ctx<'_>, app: &Key, fic: &Key) -> Reply {
    let inner = c.lock();
    let i = find_allowed(c, &inner.dir, app, &READ_APPS)?;
    let a = &inner.dir.applications[i];
    let j = position(c, &a.federated, fic)?;
    let set = entity_set(&a.id);
    Ok(entity(c, &set, StatusCode::OK, a.federated[j].clone()))
}

/// `DELETE /applications/{id}/federatedIdentityCredentials/{id or name}` (204).
pub fn delete(c: &Ctx<'_>, app: &Key, fic: &Key) -> Reply {
    let mut inner = c.lock();
    let i = find_allowed(c, &inner.dir, app, &WRITE_APPS)?;
    let j = position(c, &inner.dir.applications[i].federated, fic)?;
    inner.dir.applications[i].federated.remove(j);
    c.s.persist(&inner);
    Ok(no_content())
}

/// `POST /applications/{id}/federatedIdentityCredentials` (201 with the credential).
pub fn create(c: &Ctx<'_>, app: &Key) -> Reply {
    let mut inner = c.lock();
    let i = find_allowed(c, &inner.dir, app, &WRITE_APPS)?;
    let body = c.body_object()?;
    let text = |prop: &str| {
        body.get(prop)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| c.bad_request(&format!("Property '{prop}' is required.")))
    };
    let (name, issuer, subject) = (text("name")?, text("issuer")?, text("subject")?);
    if !(3..=120).contains(&name.chars().count()) {
        return Err(c.bad_request("Property 'name' must be between 3 and 120 characters."));
    }
    let audiences = match body.get("audiences").and_then(Value::as_array) {
        Some(a) if a.len() == 1 && a[0].as_str().is_some_and(|s| !s.is_empty()) => a.clone(),
        _ => return Err(c.bad_request("Property 'audiences' must contain exactly one value.")),
    };
    let held = &inner.dir.applications[i].federated;
    if held.iter().any(|f| f["name"] == name) {
        return Err(c.bad_request(&format!(
            "FederatedIdentityCredential with name {name} already exists."
        )));
    }
    if held.len() >= MAX_PER_APP {
        return Err(c.bad_request(&format!(
            "The application already has {MAX_PER_APP} federated identity credentials, the most allowed."
        )));
    }
    let fic = json!({
        "id": new_guid(),
        "name": name,
        "issuer": issuer,
        "subject": subject,
        "description": body.get("description").cloned().unwrap_or(Value::Null),
        "audiences": audiences,
    });
    let set = entity_set(&inner.dir.applications[i].id);
    inner.dir.applications[i].federated.push(fic.clone());
    c.s.persist(&inner);
    Ok(entity(c, &set, StatusCode::CREATED, fic))
}

/// Where the credential `key` names (its id, or its name) is, or 404.
fn position(c: &Ctx<'_>, held: &[Value], key: &Key) -> Result<usize, axum::response::Response> {
    let wanted = match key {
        Key::Id(v) => v,
        Key::Alt(_, v) => v,
    };
    held.iter()
        .position(|f| f["id"] == wanted.as_str() || f["name"] == wanted.as_str())
        .ok_or_else(|| c.not_found(wanted))
}
