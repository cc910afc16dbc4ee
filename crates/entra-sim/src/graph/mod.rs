//! Microsoft Graph v1.0: request parsing, caller authentication and the dispatch table.

mod advanced;
mod apps;
mod authz;
mod ctx;
mod directory;
mod federated;
mod literals;
mod lookup;
mod odata;
mod recycle;
mod sps;

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use crate::http::{ReqIds, odata_error};
use crate::state::{Shared, unix_now};

pub use ctx::Ctx;
pub use odata::Query;

/// Who is calling Graph, from the verified access token.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A delegated (user) token.
    User {
        /// The signed-in user's object id.
        id: String,
        /// Delegated permissions (`scp`).
        scopes: Vec<String>,
    },
    /// An app-only token.
    App {
        /// The calling service principal's object id.
        sp_id: String,
        /// Application permissions (`roles`).
        roles: Vec<String>,
    },
}

/// An object key in a Graph path: `/applications/{id}` or `/applications(uniqueName='x')`.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// Object id.
    Id(String),
    /// Alternate key: property name and value.
    Alt(String, String),
}

/// A handler's answer: `Err` is an answer given early (an error, or a short cut), `Ok` the
/// normal one; both are sent as they are.
pub type Reply = Result<Response, Response>;

/// Collections whose next plain path segment is an object id.
const COLLECTIONS: &[&str] = &[
    "applications",
    "servicePrincipals",
    "users",
    "appRoleAssignedTo",
    "appRoleAssignments",
    "oauth2PermissionGrants",
    "roleAssignments",
    "roleDefinitions",
    "directoryRoles",
    "deletedItems",
    "organization",
    "federatedIdentityCredentials",
];

fn unquote(v: &str) -> String {
    let v = v.trim();
    match v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => v.to_string(),
    }
}

/// Percent-decodes one path segment. Segments are split before decoding so that an encoded
/// `/` inside a key (`uniqueName='a%2Fb'`) stays part of the key.
fn percent_decode(seg: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first alternate key of `path` whose value is not an OData string literal
/// (`applications(uniqueName=x)` rather than `…='x'`): every alternate key Graph has here
/// (`appId`, `uniqueName`) is a string, and an unquoted one is a malformed URL, not a match.
fn unquoted_alternate_key(path: &str) -> Option<String> {
    path.split('/').map(percent_decode).find(|seg| {
        let inside = seg
            .find('(')
            .filter(|_| seg.ends_with(')'))
            .map(|open| &seg[open + 1..seg.len() - 1]);
        inside
            .and_then(|i| i.split_once('='))
            .is_some_and(|(_, v)| {
                let v = v.trim();
                !(v.len() >= 2 && v.starts_with('\'') && v.ends_with('\''))
            })
    })
}

/// Splits a raw (still percent-encoded) Graph path into (segment name, key) pairs.
pub fn parse_path(path: &str) -> Vec<(String, Option<Key>)> {
    let mut out: Vec<(String, Option<Key>)> = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode(raw);
        let raw = decoded.as_str();
        if let Some(open) = raw.find('(')
            && raw.ends_with(')')
        {
            let name = raw[..open].to_string();
            let inside = &raw[open + 1..raw.len() - 1];
            let key = match inside.split_once('=') {
                Some((prop, val)) => Key::Alt(prop.trim().to_string(), unquote(val)),
                None => Key::Id(unquote(inside)),
            };
            out.push((name, Some(key)));
            continue;
        }
        let takes_key = out
            .last()
            .is_some_and(|(n, k)| k.is_none() && COLLECTIONS.contains(&n.as_str()))
            && !raw.starts_with("microsoft.graph.");
        if takes_key && let Some(last) = out.last_mut() {
            last.1 = Some(Key::Id(raw.to_string()));
            continue;
        }
        out.push((raw.to_string(), None));
    }
    out
}

fn authenticate(
    s: &Shared,
    ids: &ReqIds,
    headers: &HeaderMap,
) -> Result<(Caller, String), Response> {
    let unauth = |msg: &str| {
        odata_error(
            ids,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            msg,
        )
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauth("Access token is empty."))?;
    let jwt = crate::tokens::jwt_of(token).unwrap_or_default();
    let claims = s.key.verify(&jwt).ok_or_else(|| {
        unauth("Access token validation failure. Invalid signature or malformed token.")
    })?;
    let aud = claims["aud"].as_str().unwrap_or_default();
    if !matches!(
        aud,
        "https://graph.microsoft.com" | "https://graph.microsoft.com/" | crate::seed::GRAPH_APP_ID
    ) {
        return Err(unauth("Access token validation failure. Invalid audience."));
    }
    let expired_through = s.lock().access_tokens_expired_through;
    if claims["exp"].as_i64().unwrap_or(0) <= unix_now()
        || claims["iat"].as_i64().unwrap_or(0) <= expired_through
    {
        return Err(unauth("Lifetime validation failed, the token is expired."));
    }
    let tid = claims["tid"].as_str().unwrap_or_default().to_string();
    if !s.lock().tenants().any(|d| d.tenant.id == tid) {
        return Err(unauth("Access token validation failure. Invalid issuer."));
    }
    let oid = claims["oid"].as_str().unwrap_or_default().to_string();
    if claims["idtyp"] == "app" {
        let roles = claims["roles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok((Caller::App { sp_id: oid, roles }, tid))
    } else {
        // Graph sends claims challenges only to clients that declared the `cp1` capability.
        let cae = crate::tokens::handles_claims_challenges(&claims);
        if cae && s.lock().faults.claims_challenge {
            return Err(crate::http::claims_challenge(
                ids,
                unix_now(),
                "TokenCreatedWithOutdatedPolicies",
            ));
        }
        // A token made under policies since changed: a silently asked-for token satisfies
        // the challenge (the refresh token still redeems).
        let iat = claims["iat"].as_i64().unwrap_or(0);
        if cae && iat <= s.lock().policies_changed_through {
            return Err(crate::http::claims_challenge(
                ids,
                unix_now(),
                "TokenCreatedWithOutdatedPolicies",
            ));
        }
        // A token from a sign-in since revoked: Continuous Access Evaluation's critical event.
        // A client without `cp1` keeps its token until it expires; the revocation reaches it
        // when it renews (AADSTS50173).
        if cae && iat <= s.lock().sign_ins_revoked_through {
            return Err(crate::http::claims_challenge(
                ids,
                unix_now(),
                "TokenIssuedBeforeRevocationTimestamp",
            ));
        }
        let scopes = claims["scp"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Ok((Caller::User { id: oid, scopes }, tid))
    }
}

/// Entry point for every `/v1.0/*` request.
pub async fn dispatch(
    State(s): State<Arc<Shared>>,
    Extension(ids): Extension<ReqIds>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rest = uri
        .path()
        .strip_prefix("/v1.0/")
        .unwrap_or_default()
        .to_string();
    let (caller, tid) = match authenticate(&s, &ids, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let query = match Query::parse(uri.query().unwrap_or_default()) {
        Ok(q) => q,
        Err(msg) => return odata_error(&ids, StatusCode::BAD_REQUEST, "BadRequest", &msg),
    };
    // Graph documents `Content-Type: application/json` as required with a body (e.g.
    // application-addpassword): a body of another or no type is not read as JSON.
    let json_typed = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    let body = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(|_| json_typed)
        {
            Some(v) => Some(v),
            None => {
                return odata_error(
                    &ids,
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
                );
            }
        }
    };
    let ctx = Ctx {
        s: &s,
        tid,
        ids: &ids,
        caller,
        query,
        headers: &headers,
        path: rest.clone(),
        body,
        method: method.clone(),
        stale: std::sync::OnceLock::new(),
    };
    if let Some(seg) = unquoted_alternate_key(&rest) {
        return odata_error(
            &ids,
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "Bad Request - Error in query syntax: the key in '{seg}' is not a quoted string literal."
            ),
        );
    }
    let segs = parse_path(&rest);
    let resp = route(&ctx, &method, &segs).unwrap_or_else(|early| early);
    if resp.status().is_success()
        && let Some((last, _)) = segs.last()
    {
        s.count_call(&format!("{method} {last}"));
    }
    resp
}

fn route(c: &Ctx<'_>, m: &Method, segs: &[(String, Option<Key>)]) -> Reply {
    let shape: Vec<(&str, Option<&Key>)> =
        segs.iter().map(|(n, k)| (n.as_str(), k.as_ref())).collect();
    let get = m == Method::GET;
    let post = m == Method::POST;
    let patch = m == Method::PATCH;
    let delete = m == Method::DELETE;
    match shape.as_slice() {
        [("me", None)] if get => directory::me(c),
        [("me", None), ("memberOf" | "transitiveMemberOf", None)] if get => {
            directory::me_member_of(c)
        }
        [("users", None)] if get => directory::list_users(c),
        [("users", Some(k))] if get => directory::get_user(c, k),
        [
            ("users", Some(k)),
            ("memberOf" | "transitiveMemberOf", None),
        ] if get => directory::user_member_of(c, k),
        [("organization", None)] if get => directory::organization(c),
        [("organization", Some(_))] if get => directory::organization(c),
        [("directoryRoles", None)] if get => directory::list_directory_roles(c),
        [("directoryRoles", Some(k)), ("members", None)] if get => {
            directory::directory_role_members(c, k)
        }
        [("roleManagement", None), ("directory", None), rest @ ..] => {
            role_management(c, m, rest).unwrap_or_else(|| unrouted(c, &shape))
        }
        [("applications", None)] if get => apps::list(c),
        [("applications", None)] if post => apps::create(c),
        [("applications", Some(k))] if get => apps::get(c, k),
        [("applications", Some(k))] if patch => apps::patch(c, k),
        [("applications", Some(k))] if delete => apps::delete(c, k),
        [("applications", Some(k)), ("owners", None)] if get => apps::list_owners(c, k),
        [("applications", Some(k)), ("owners", None), ("$ref", None)] if post => {
            apps::add_owner(c, k)
        }
        [("applications", Some(k)), ("addPassword", None)] if post => apps::add_password(c, k),
        [
            ("applications", Some(k)),
            ("federatedIdentityCredentials", None),
        ] if get => federated::list(c, k),
        [
            ("applications", Some(k)),
            ("federatedIdentityCredentials", None),
        ] if post => federated::create(c, k),
        [
            ("applications", Some(k)),
            ("federatedIdentityCredentials", Some(f)),
        ] if get => federated::get(c, k, f),
        [
            ("applications", Some(k)),
            ("federatedIdentityCredentials", Some(f)),
        ] if delete => federated::delete(c, k, f),
        [("applications", Some(k)), ("removePassword", None)] if post => {
            apps::remove_password(c, k)
        }
        [("directory", None), ("deletedItems", None), (cast, None)]
            if get && cast.starts_with("microsoft.graph.") =>
        {
            recycle::list_deleted(c, cast)
        }
        [("directory", None), ("deletedItems", Some(k))] if get => recycle::get_deleted(c, k),
        [("directory", None), ("deletedItems", Some(k))] if delete => recycle::purge_deleted(c, k),
        [
            ("directory", None),
            ("deletedItems", Some(k)),
            ("restore", None),
        ] if post => recycle::restore(c, k),
        [("servicePrincipals", None)] if get => sps::list(c),
        [("servicePrincipals", None)] if post => sps::create(c),
        [("servicePrincipals", Some(k))] if get => sps::get(c, k),
        [("servicePrincipals", Some(k))] if delete => sps::delete(c, k),
        [("servicePrincipals", Some(k)), ("addPassword", None)] if post => sps::add_password(c, k),
        [("servicePrincipals", Some(k)), ("removePassword", None)] if post => {
            sps::remove_password(c, k)
        }
        [
            ("servicePrincipals", Some(k)),
            (relation @ ("appRoleAssignedTo" | "appRoleAssignments"), a),
        ] => app_role_assignments(c, m, k, relation, *a).unwrap_or_else(|| unrouted(c, &shape)),
        [
            ("servicePrincipals", Some(k)),
            ("oauth2PermissionGrants", None),
        ] if get => sps::list_grants_of(c, k),
        [("oauth2PermissionGrants", None)] if get => sps::list_grants(c),
        [("oauth2PermissionGrants", None)] if post => sps::create_grant(c),
        [("oauth2PermissionGrants", Some(Key::Id(g)))] if get => sps::get_grant(c, g),
        [("oauth2PermissionGrants", Some(Key::Id(g)))] if patch => sps::patch_grant(c, g),
        [("oauth2PermissionGrants", Some(Key::Id(g)))] if delete => sps::delete_grant(c, g),
        _ => unrouted(c, &shape),
    }
}

/// `/roleManagement/directory/…`: role definitions and role assignments; `None` for any other
/// path or method below it.
fn role_management(c: &Ctx<'_>, m: &Method, rest: &[(&str, Option<&Key>)]) -> Option<Reply> {
    Some(match (m.as_str(), rest) {
        ("GET", [("roleDefinitions", None)]) => directory::list_role_definitions(c),
        ("GET", [("roleDefinitions", Some(k))]) => directory::get_role_definition(c, k),
        ("GET", [("roleAssignments", None)]) => directory::list_role_assignments(c),
        ("POST", [("roleAssignments", None)]) => directory::create_role_assignment(c),
        ("GET", [("roleAssignments", Some(k))]) => directory::get_role_assignment(c, k),
        ("DELETE", [("roleAssignments", Some(k))]) => directory::delete_role_assignment(c, k),
        _ => return None,
    })
}

/// `/servicePrincipals/{id}/appRoleAssignedTo[/{a}]` (the roles the SP grants, as resource)
/// and `/servicePrincipals/{id}/appRoleAssignments[/{a}]` (the roles it holds); `None` for any
/// other method or key.
fn app_role_assignments(
    c: &Ctx<'_>,
    m: &Method,
    sp: &Key,
    relation: &str,
    assignment: Option<&Key>,
) -> Option<Reply> {
    let via_resource = relation == "appRoleAssignedTo";
    Some(match (m.as_str(), assignment) {
        ("GET", None) if via_resource => sps::list_assigned_to(c, sp),
        ("GET", None) => sps::list_assignments(c, sp),
        ("POST", None) => sps::assign(c, sp, via_resource),
        ("DELETE", Some(Key::Id(a))) => sps::unassign(c, sp, a, via_resource),
        _ => return None,
    })
}

/// Graph's answer to a path no arm serves: 405 below a collection it knows, 400 naming the
/// first segment otherwise.
fn unrouted(c: &Ctx<'_>, shape: &[(&str, Option<&Key>)]) -> Reply {
    let known = shape.first().is_some_and(|(n, _)| {
        matches!(
            *n,
            "me" | "users"
                | "organization"
                | "directoryRoles"
                | "roleManagement"
                | "applications"
                | "directory"
                | "servicePrincipals"
                | "oauth2PermissionGrants"
        )
    });
    Err(if known {
        c.err(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        )
    } else {
        let seg = shape.first().map(|(n, _)| *n).unwrap_or_default();
        c.err(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Resource not found for the segment '{seg}'."),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_ids_and_alternate_keys_parse() {
        assert_eq!(
            parse_path("applications/abc/addPassword"),
            vec![
                ("applications".to_string(), Some(Key::Id("abc".into()))),
                ("addPassword".to_string(), None)
            ]
        );
        assert_eq!(
            parse_path("applications(uniqueName='o''brien')"),
            vec![(
                "applications".to_string(),
                Some(Key::Alt("uniqueName".into(), "o'brien".into()))
            )]
        );
        assert_eq!(
            parse_path("servicePrincipals(appId='x')/appRoleAssignedTo/42"),
            vec![
                (
                    "servicePrincipals".to_string(),
                    Some(Key::Alt("appId".into(), "x".into()))
                ),
                ("appRoleAssignedTo".to_string(), Some(Key::Id("42".into())))
            ]
        );
        assert_eq!(
            parse_path("applications(uniqueName='lp-a%2Fb%20c''d')"),
            vec![(
                "applications".to_string(),
                Some(Key::Alt("uniqueName".into(), "lp-a/b c'd".into()))
            )]
        );
        assert_eq!(
            parse_path("directory/deletedItems/microsoft.graph.application"),
            vec![
                ("directory".to_string(), None),
                ("deletedItems".to_string(), None),
                ("microsoft.graph.application".to_string(), None)
            ]
        );
    }
}
