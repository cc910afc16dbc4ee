//! The admin-consent endpoint (`/{tenant}/adminconsent`, entra-reference §2.4): an admin grants
//! everything an app's `requiredResourceAccess` lists (application permissions as app role
//! assignments, delegated ones as an AllPrincipals grant), then the browser is redirected to
//! the app with `tenant`, `state` and `admin_consent=True`, or with `error=permission_denied`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::model::{AppRoleAssignment, PermissionGrant, ServicePrincipal};
use crate::seed::{APP_ADMIN, CLOUD_APP_ADMIN, GLOBAL_ADMIN, GRAPH_APP_ID, PRIV_ROLE_ADMIN};
use crate::sim_page::{account_choice, error_page, escape, hidden, redirect};
use crate::state::{Inner, Shared, new_guid, now_rfc3339, random_key};

type Params = HashMap<String, String>;

/// One requested permission: (resource app id, permission id, "Role" or "Scope").
type Wanted = (String, String, String);

/// The app's name and what it asks for.
fn requested(inner: &Inner, client_id: &str) -> Option<(String, Vec<Wanted>)> {
    let app = inner.dir.app_by_app_id(client_id)?;
    let items = app
        .props
        .get("requiredResourceAccess")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|r| {
            let res = r["resourceAppId"].as_str().unwrap_or_default().to_string();
            r["resourceAccess"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |a| {
                    (
                        res.clone(),
                        a["id"].as_str().unwrap_or_default().to_string(),
                        a["type"].as_str().unwrap_or_default().to_string(),
                    )
                })
        })
        .collect();
    Some((app.display_name().to_string(), items))
}

fn checked(s: &Shared, tenant: &str, p: &Params) -> Result<(String, String), Response> {
    let mut inner = s.lock();
    if !inner.select(tenant) {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        ));
    }
    let client_id = p.get("client_id").cloned().unwrap_or_default();
    let redirect_uri = p.get("redirect_uri").cloned().unwrap_or_default();
    if inner.dir.app_by_app_id(&client_id).is_none() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            &format!(
                "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{}'.",
                inner.dir.tenant.domain
            ),
        ));
    }
    if s.redirect_kind(&inner, &client_id, &redirect_uri).is_none() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            &format!(
                "AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
            ),
        ));
    }
    Ok((client_id, redirect_uri))
}

/// `GET /{tenant}/adminconsent?client_id=…&state=…&redirect_uri=…`: the consent page.
pub async fn page(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let (client_id, redirect_uri) = match checked(&s, &tenant, &p) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let inner = s.lock_tenant(&tenant);
    let Some((name, items)) = requested(&inner, &client_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "AADSTS700016: application not found.",
        );
    };
    let list: String = items
        .iter()
        .map(|(res, id, kind)| {
            let value = inner
                .dir
                .sp_by_app_id(res)
                .and_then(|sp| {
                    let pool = if kind == "Role" {
                        &sp.app_roles
                    } else {
                        &sp.oauth2_permission_scopes
                    };
                    pool.iter()
                        .find(|r| r["id"] == id.as_str())
                        .and_then(|r| r["value"].as_str().map(str::to_string))
                })
                .unwrap_or_else(|| id.clone());
            let how = if kind == "Role" {
                "application"
            } else {
                "delegated"
            };
            format!("<li>{} ({how})</li>", escape(&value))
        })
        .collect();
    let users: Vec<&str> = inner.dir.users.iter().map(|u| u.sign_in_name()).collect();
    let fields = [
        hidden("client_id", &client_id),
        hidden("redirect_uri", &redirect_uri),
        hidden(
            "state",
            p.get("state").map(String::as_str).unwrap_or_default(),
        ),
    ]
    .concat();
    account_choice(
        "Permissions requested",
        &format!(
            "<p><b>{}</b> wants these permissions for your whole organization:</p><ul>{list}</ul>",
            escape(&name)
        ),
        &fields,
        "Admin",
        &users,
        "",
    )
}

/// `POST /{tenant}/adminconsent`: the admin's answer.
pub async fn submit(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(p): Form<Params>,
) -> Response {
    let (client_id, redirect_uri) = match checked(&s, &tenant, &p) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let state = p.get("state").cloned().unwrap_or_default();
    let denied = |why: &str| {
        redirect(
            &redirect_uri,
            &[
                ("error", "permission_denied"),
                ("error_description", why),
                ("state", &state),
            ],
        )
    };
    if p.get("action").map(String::as_str) != Some("accept") {
        return denied("AADSTS65004: User declined to consent to access the app.");
    }
    let mut inner = s.lock_tenant(&tenant);
    let Some(user) = p.get("upn").and_then(|u| inner.dir.account(u)).cloned() else {
        return denied("AADSTS50034: The user account does not exist in the directory.");
    };
    let Some((name, items)) = requested(&inner, &client_id) else {
        return denied("AADSTS700016: application not found.");
    };
    let roles = inner.dir.roles_of(&user.id);
    let holds = |wanted: &[&str]| roles.iter().any(|r| wanted.contains(&r.as_str()));
    // Microsoft Graph app roles need Privileged Role Administrator; the rest any app admin.
    let needs_pra = items
        .iter()
        .any(|(res, _, kind)| kind == "Role" && res.eq_ignore_ascii_case(GRAPH_APP_ID));
    let allowed = if needs_pra {
        holds(&[GLOBAL_ADMIN, PRIV_ROLE_ADMIN])
    } else {
        holds(&[GLOBAL_ADMIN, PRIV_ROLE_ADMIN, APP_ADMIN, CLOUD_APP_ADMIN])
    };
    if !allowed {
        return denied(
            "AADSTS90094: An administrator of the organization must grant these permissions.",
        );
    }
    grant_all(&s, &mut inner, &client_id, &name, &items);
    let tid = inner.dir.tenant.id.clone();
    s.persist(&inner);
    redirect(
        &redirect_uri,
        &[
            ("tenant", &tid),
            ("state", &state),
            ("admin_consent", "True"),
        ],
    )
}

/// Creates the client's SP if needed, then every missing app role assignment and one
/// AllPrincipals grant per resource.
fn grant_all(s: &Shared, inner: &mut Inner, client_id: &str, name: &str, items: &[Wanted]) {
    let sp_id = match inner.dir.sp_by_app_id(client_id) {
        Some(sp) => sp.id.clone(),
        None => {
            let sp = ServicePrincipal {
                passwords: Vec::new(),
                id: new_guid(),
                app_id: client_id.to_string(),
                display_name: name.to_string(),
                app_owner_organization_id: inner.dir.tenant.id.clone(),
                created: now_rfc3339(),
                app_roles: vec![],
                oauth2_permission_scopes: vec![],
                tags: vec![],
                sign_in_audience: inner.dir.audience_of(client_id),
                visible_at_ms: s.visible_at(inner),
            };
            let id = sp.id.clone();
            inner.dir.service_principals.push(sp);
            id
        }
    };
    let mut scopes: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (res_app, id, kind) in items {
        let Some(resource) = inner.dir.sp_by_app_id(res_app).cloned() else {
            continue;
        };
        if kind == "Role" {
            let exists = inner.dir.app_role_assignments.iter().any(|a| {
                a.principal_id == sp_id
                    && a.resource_id == resource.id
                    && a.app_role_id.eq_ignore_ascii_case(id)
            });
            if !exists && resource.role_value(id).is_some() {
                let a = AppRoleAssignment {
                    id: random_key(32),
                    app_role_id: id.to_ascii_lowercase(),
                    principal_id: sp_id.clone(),
                    principal_display_name: name.to_string(),
                    resource_id: resource.id.clone(),
                    resource_display_name: resource.display_name.clone(),
                    created: now_rfc3339(),
                    visible_at_ms: s.visible_at(inner),
                    listed_at_ms: s.listed_at(inner),
                };
                inner.dir.app_role_assignments.push(a);
            }
        } else if let Some(value) = resource
            .oauth2_permission_scopes
            .iter()
            .find(|p| p["id"] == id.as_str())
            .and_then(|p| p["value"].as_str())
        {
            scopes
                .entry(resource.id.clone())
                .or_default()
                .insert(value.to_string());
        }
    }
    for (resource_id, wanted) in scopes {
        let grants = &mut inner.dir.oauth2_permission_grants;
        match grants.iter_mut().find(|g| {
            g.client_id == sp_id
                && g.resource_id == resource_id
                && g.consent_type == "AllPrincipals"
        }) {
            Some(g) => {
                let mut all: BTreeSet<String> = g.scopes().map(str::to_string).collect();
                all.extend(wanted);
                g.scope = all.into_iter().collect::<Vec<_>>().join(" ");
            }
            None => grants.push(PermissionGrant {
                id: random_key(32),
                client_id: sp_id.clone(),
                consent_type: "AllPrincipals".into(),
                principal_id: None,
                resource_id,
                scope: wanted.into_iter().collect::<Vec<_>>().join(" "),
            }),
        }
    }
}
