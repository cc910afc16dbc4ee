//! `/applications`: create, upsert by uniqueName, read, list, delete, secrets, recycle bin.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;

use super::authz::{self, Need, READ_APPS, WRITE_APPS};
use super::lookup::AltKey;
use super::odata::{collection, entity};
use super::recycle::{recycle, remove_sp};
use super::{Ctx, Key, Reply};
use crate::defaults::{APP_READ_ONLY, application_defaults};
use crate::http::{graph_json, no_content};
use crate::model::{Application, Directory, Password};
use crate::state::{Inner, new_guid, now_rfc3339, random_bytes, rfc3339, sha256_hex};

/// Properties `$filter` may use on applications.
const APP_FILTERS: &[&str] = &[
    "appId",
    "displayName",
    "id",
    "uniqueName",
    "identifierUris",
    "signInAudience",
    "publisherDomain",
    "tags",
    "createdDateTime",
];

/// Index of the application a key names. `ignore_lag` is for writes that go to the primary
/// replica (the uniqueName upsert), which always see the latest state.
pub(super) fn find(
    c: &Ctx<'_>,
    dir: &Directory,
    key: &Key,
    ignore_lag: bool,
) -> Result<usize, Response> {
    let alt_keys: &[AltKey<Application>] = &[
        ("appId", |a, v| a.app_id.eq_ignore_ascii_case(v)),
        ("uniqueName", |a, v| {
            a.unique_name().is_some_and(|u| u.eq_ignore_ascii_case(v))
        }),
    ];
    c.find_key(&dir.applications, key, "application", alt_keys, |a| {
        ignore_lag || c.sees(a.visible_at_ms)
    })
}

/// Index of the application a key names, once the caller is found to hold `need` on it: its
/// owners pass the role check, as in Entra.
pub(super) fn find_allowed(
    c: &Ctx<'_>,
    dir: &Directory,
    key: &Key,
    need: &Need,
) -> Result<usize, Response> {
    let idx = find(c, dir, key, false)?;
    authz::require(c, dir, need, &dir.applications[idx].owners)?;
    Ok(idx)
}

/// Validates a create/update body and returns the properties to store.
fn writable_props(c: &Ctx<'_>, body: &Map<String, Value>) -> Result<Map<String, Value>, Response> {
    let known = application_defaults();
    let mut out = Map::new();
    for (k, v) in body {
        // OData annotations (`@odata.type`) are not properties.
        if k.starts_with('@') {
            continue;
        }
        if APP_READ_ONLY.contains(&k.as_str()) {
            return Err(c.bad_request(&format!("Property '{k}' is read-only and cannot be set.")));
        }
        if k == "passwordCredentials" {
            if v.as_array().is_some_and(|a| !a.is_empty()) {
                return Err(c.bad_request("Property 'passwordCredentials' cannot be set on create or update; use addPassword."));
            }
            continue;
        }
        if !known.contains_key(k) {
            return Err(c.unknown_property("application", k));
        }
        out.insert(k.clone(), v.clone());
    }
    if let Some(name) = out.get("displayName")
        && !name
            .as_str()
            .is_some_and(|n| !n.trim().is_empty() && n.chars().count() <= 256)
    {
        return Err(c.bad_request(
            "Invalid value specified for property 'displayName' of resource 'Application'.",
        ));
    }
    if let Some(aud) = out.get("signInAudience")
        && !matches!(
            aud.as_str(),
            Some(
                "AzureADMyOrg"
                    | "AzureADMultipleOrgs"
                    | "AzureADandPersonalMicrosoftAccount"
                    | "PersonalMicrosoftAccount"
            )
        )
    {
        return Err(c.bad_request(
            "Invalid value specified for property 'signInAudience' of resource 'Application'.",
        ));
    }
    Ok(out)
}

/// Whether `name` is held by another application. A deleted application keeps its uniqueName
/// for as long as it sits in the recycle bin (30 days), as in Entra (msgraph-bicep-types#137).
pub(super) fn unique_name_taken(dir: &Directory, name: &str, except: Option<usize>) -> bool {
    let holds = |a: &Application| {
        a.unique_name()
            .is_some_and(|u| u.eq_ignore_ascii_case(name))
    };
    dir.applications
        .iter()
        .enumerate()
        .any(|(i, a)| Some(i) != except && holds(a))
        || dir.deleted_applications.iter().any(holds)
}

/// Entra's answer to a second object with the same alternate key: 400 `Request_BadRequest`
/// (the same code it uses for identifierUris), not a 409.
pub(super) fn conflict(c: &Ctx<'_>, prop: &str) -> Response {
    c.bad_request(&format!(
        "Another object with the same value for property {prop} already exists."
    ))
}

fn insert_new(c: &Ctx<'_>, inner: &mut Inner, props: Map<String, Value>) -> Value {
    let app = Application {
        id: new_guid(),
        app_id: new_guid(),
        created: now_rfc3339(),
        props,
        passwords: vec![],
        federated: vec![],
        owners: vec![authz::caller_id(c)],
        visible_at_ms: c.s.visible_at(inner),
    };
    let json = app.to_json(&inner.dir.tenant.domain);
    inner.dir.applications.push(app);
    json
}

/// `GET /applications`.
pub fn list(c: &Ctx<'_>) -> Reply {
    let inner = c.lock();
    let dir = &inner.dir;
    c.may_list(dir, &READ_APPS, "application", APP_FILTERS)?;
    let items = dir
        .applications
        .iter()
        .filter(|a| c.sees(a.visible_at_ms))
        .map(|a| a.to_json(&dir.tenant.domain))
        .collect();
    Ok(collection(c, "applications", items))
}

/// `POST /applications`.
pub fn create(c: &Ctx<'_>) -> Reply {
    let mut inner = c.lock();
    authz::require_create_app(c, &inner.dir)?;
    let props = c.body_object().and_then(|b| writable_props(c, b))?;
    if !props.get("displayName").is_some_and(Value::is_string) {
        return Err(c.bad_request(
            "Invalid value specified for property 'displayName' of resource 'Application'.",
        ));
    }
    if let Some(u) = props.get("uniqueName").and_then(Value::as_str)
        && unique_name_taken(&inner.dir, u, None)
    {
        return Err(conflict(c, "uniqueName"));
    }
    let json = insert_new(c, &mut inner, props);
    Ok(c.created(&inner, "applications", json))
}

/// `GET /applications/{id}` (also `(appId='…')`, `(uniqueName='…')`).
pub fn get(c: &Ctx<'_>, key: &Key) -> Reply {
    let inner = c.lock();
    let dir = &inner.dir;
    // An app holding only Application.ReadWrite.OwnedBy may read the apps it owns by key
    // (never the collection).
    let owners = find(c, dir, key, false)
        .map(|i| dir.applications[i].owners.clone())
        .unwrap_or_default();
    authz::require(c, dir, &READ_APPS, &owners)?;
    let i = find(c, dir, key, false)?;
    let json = dir.applications[i].to_json(&dir.tenant.domain);
    Ok(entity(c, "applications", StatusCode::OK, json))
}

/// `GET /applications/{id}/owners`: users and service principals, as directory objects.
pub fn list_owners(c: &Ctx<'_>, key: &Key) -> Reply {
    let inner = c.lock();
    let dir = &inner.dir;
    let idx = find_allowed(c, dir, key, &READ_APPS)?;
    let owners = &dir.applications[idx].owners;
    let items = owners.iter().filter_map(|id| owner_json(dir, id)).collect();
    Ok(collection(c, "directoryObjects", items))
}

fn owner_json(dir: &Directory, id: &str) -> Option<Value> {
    if let Some(u) = dir.users.iter().find(|u| u.id == id) {
        let mut v = u.to_json();
        v["@odata.type"] = json!("#microsoft.graph.user");
        return Some(v);
    }
    dir.service_principals.iter().find(|s| s.id == id).map(|s| {
        let mut v = s.to_json();
        v["@odata.type"] = json!("#microsoft.graph.servicePrincipal");
        v
    })
}

/// `POST /applications/{id}/owners/$ref` with `{"@odata.id": ".../directoryObjects/{id}"}`:
/// 204; 400 when the object is already an owner or does not exist.
pub fn add_owner(c: &Ctx<'_>, key: &Key) -> Reply {
    let mut inner = c.lock();
    let idx = find_allowed(c, &inner.dir, key, &WRITE_APPS)?;
    if !authz::caller_holds_any(c, authz::ADD_OWNER_ALSO) {
        return Err(c.denied());
    }
    let reference = c.body_str(
        "@odata.id",
        "Invalid value specified for property '@odata.id'.",
    )?;
    // The last segment of `…/directoryObjects/{id}`.
    let object_id = reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    if owner_json(&inner.dir, &object_id).is_none() {
        return Err(c.err(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{object_id}' does not exist or one of its queried reference-property objects are not present."),
        ));
    }
    if inner.dir.applications[idx].owners.contains(&object_id) {
        return Err(c.bad_request("One or more added object references already exist for the following modified properties: 'owners'."));
    }
    inner.dir.applications[idx].owners.push(object_id);
    c.s.persist(&inner);
    Ok(no_content())
}

/// `PATCH /applications/{id}`, and the upsert `PATCH /applications(uniqueName='…')` with
/// `Prefer: create-if-missing` (201 when created, 204 when updated).
pub fn patch(c: &Ctx<'_>, key: &Key) -> Reply {
    let mut inner = c.lock();
    let upsert_key = match key {
        Key::Alt(p, v) if p.eq_ignore_ascii_case("uniqueName") => Some(v.clone()),
        _ => None,
    };
    let create_if_missing = c
        .headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("create-if-missing"))
        });
    let mut props = c.body_object().and_then(|b| writable_props(c, b))?;
    let found = find(c, &inner.dir, key, upsert_key.is_some());
    let idx = match (found, &upsert_key) {
        (Ok(i), _) => i,
        (Err(_), Some(name)) if create_if_missing => {
            authz::require_create_app(c, &inner.dir)?;
            if unique_name_taken(&inner.dir, name, None) {
                return Err(conflict(c, "uniqueName"));
            }
            if !props.get("displayName").is_some_and(Value::is_string) {
                return Err(c.bad_request(
                    "Invalid value specified for property 'displayName' of resource 'Application'.",
                ));
            }
            props.insert("uniqueName".into(), json!(name));
            let json = insert_new(c, &mut inner, props);
            return Err(c.created(&inner, "applications", json));
        }
        (Err(r), _) => return Err(r),
    };
    let owners = inner.dir.applications[idx].owners.clone();
    authz::require(c, &inner.dir, &WRITE_APPS, &owners)?;
    if let Some(new) = props.get("uniqueName") {
        let current = inner.dir.applications[idx]
            .unique_name()
            .map(str::to_string);
        match (current, new.as_str()) {
            (Some(cur), Some(n)) if cur.eq_ignore_ascii_case(n) => {}
            (None, Some(n)) if !unique_name_taken(&inner.dir, n, Some(idx)) => {}
            (None, Some(_)) => return Err(conflict(c, "uniqueName")),
            _ => {
                return Err(c.bad_request(
                    "Property 'uniqueName' is immutable once set and cannot be updated.",
                ));
            }
        }
    }
    let app = &mut inner.dir.applications[idx];
    for (k, v) in props {
        app.props.insert(k, v);
    }
    c.s.persist(&inner);
    Ok(no_content())
}

/// `DELETE /applications/{id}`: the app and its local service principal go to the recycle bin.
pub fn delete(c: &Ctx<'_>, key: &Key) -> Reply {
    let mut inner = c.lock();
    let idx = find_allowed(c, &inner.dir, key, &WRITE_APPS)?;
    let dir = &mut inner.dir;
    let app = dir.applications.remove(idx);
    let sps: Vec<String> = dir
        .service_principals
        .iter()
        .filter(|s| s.app_id == app.app_id)
        .map(|s| s.id.clone())
        .collect();
    for sp in sps {
        remove_sp(dir, &sp);
    }
    let json = app.to_json(&dir.tenant.domain);
    recycle(dir, json, "#microsoft.graph.application");
    dir.deleted_applications.push(app);
    c.s.persist(&inner);
    Ok(no_content())
}

/// A secret in Entra's shape: 40 characters, 3 random, the `8Q~` version marker, 34 random.
fn new_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~-";
    let pick = |n: usize| -> String {
        random_bytes(n)
            .iter()
            .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
            .collect()
    };
    format!("{}8Q~{}", pick(3), pick(34))
}

fn parse_time(v: &Value) -> Option<time::OffsetDateTime> {
    v.as_str()
        .and_then(|s| time::OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// `POST /applications/{id}/addPassword`.
pub fn add_password(c: &Ctx<'_>, key: &Key) -> Reply {
    let mut inner = c.lock();
    let idx = find_allowed(c, &inner.dir, key, &WRITE_APPS)?;
    let (pw, body) = new_password(c, &inner)?;
    inner.dir.applications[idx].passwords.push(pw);
    c.s.persist(&inner);
    Ok(graph_json(StatusCode::OK, &body))
}

/// The password an `addPassword` body asks for (on an application or a service principal,
/// under the tenant's app management policy) and the answer carrying its value once.
pub(super) fn new_password(
    c: &Ctx<'_>,
    inner: &crate::state::Inner,
) -> Result<(Password, Value), Response> {
    let empty = json!({});
    let cred = c
        .body
        .as_ref()
        .map(|b| &b["passwordCredential"])
        .filter(|v| v.is_object())
        .unwrap_or(&empty);
    let now = time::OffsetDateTime::now_utc();
    let start = match &cred["startDateTime"] {
        Value::Null => now,
        v => match parse_time(v) {
            Some(t) => t,
            None => return Err(c.bad_request("Invalid value specified for property 'startDateTime' of resource 'PasswordCredential'.")),
        },
    };
    let end = match &cred["endDateTime"] {
        Value::Null => start + time::Duration::days(730),
        v => match parse_time(v) {
            Some(t) if t > start => t,
            _ => return Err(c.bad_request("Invalid value specified for property 'endDateTime' of resource 'PasswordCredential'.")),
        },
    };
    let policy_id = crate::seed::fixed_guid("policy:tenant-app-management");
    if inner.faults.forbid_passwords {
        return Err(c.err(
            StatusCode::BAD_REQUEST,
            "CredentialTypeNotAllowedAsPerAppPolicy",
            &format!("Credential type not allowed as per assigned policy '{policy_id}'."),
        ));
    }
    if let Some(max) = inner.faults.password_lifetime_max_days
        && end - start > time::Duration::days(max as i64)
    {
        return Err(c.err(StatusCode::BAD_REQUEST, "CredentialInvalidLifetimeAsPerAppPolicy", &format!("Credential lifetime exceeds the max value allowed as per assigned policy '{policy_id}'.")));
    }
    let secret = new_secret();
    let pw = Password {
        key_id: new_guid(),
        display_name: cred["displayName"].as_str().map(str::to_string),
        hint: secret.chars().take(3).collect(),
        sha256: sha256_hex(&secret),
        start: rfc3339(start),
        end: rfc3339(end),
        end_unix: end.unix_timestamp(),
        visible_at_ms: c.s.visible_at(inner),
    };
    let mut body = pw.to_json(Some(&secret));
    body["@odata.context"] = json!(format!(
        "{}/v1.0/$metadata#microsoft.graph.passwordCredential",
        c.s.base_url
    ));
    Ok((pw, body))
}

/// `POST /applications/{id}/removePassword` `{ "keyId": … }` (204).
pub fn remove_password(c: &Ctx<'_>, key: &Key) -> Reply {
    let mut inner = c.lock();
    let idx = find_allowed(c, &inner.dir, key, &WRITE_APPS)?;
    remove_from(c, &mut inner.dir.applications[idx].passwords)?;
    c.s.persist(&inner);
    Ok(no_content())
}

/// Removes the password a `removePassword` body names from `pws`.
pub(super) fn remove_from(c: &Ctx<'_>, pws: &mut Vec<Password>) -> Result<(), Response> {
    let key_id = c.body_str("keyId", "Invalid value specified for property 'keyId'.")?;
    let before = pws.len();
    pws.retain(|p| !p.key_id.eq_ignore_ascii_case(&key_id));
    if pws.len() == before {
        return Err(c.bad_request(&format!(
            "No password credential found with keyId '{key_id}'."
        )));
    }
    Ok(())
}
