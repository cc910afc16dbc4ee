//! Queries over the emulator's state (`Sim::snapshot()`), and the check that an onboarding made
//! each object exactly once.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

/// The profile `direct-routing`'s app-role grants: Organization.Read.All, User.Read.All,
/// Application.ReadWrite.OwnedBy (self-rotation, on by default) and the Teams Tenant Admin
/// API's `application_access`.
pub const GRANTS: usize = 4;
/// The profile `direct-routing`'s directory roles: Teams Administrator.
pub const ROLES: usize = 1;

/// The items of the snapshot's `kind` list where `key` equals `value`.
fn where_eq<'a>(snap: &'a Value, kind: &str, key: &str, value: &str) -> Vec<&'a Value> {
    snap[kind]
        .as_array()
        .map(|a| a.iter().filter(|x| x[key] == value).collect())
        .unwrap_or_default()
}

/// Applications whose display name is `name`.
pub fn apps_named<'a>(snap: &'a Value, name: &str) -> Vec<&'a Value> {
    snap["applications"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["props"]["displayName"] == name)
                .collect()
        })
        .unwrap_or_default()
}

/// Service principals whose `key` (`app_id`, `display_name`, `id`) is `value`.
pub fn sps_where<'a>(snap: &'a Value, key: &str, value: &str) -> Vec<&'a Value> {
    where_eq(snap, "service_principals", key, value)
}

/// App-role assignments held by the service principal `sp_id`.
pub fn grants_of<'a>(snap: &'a Value, sp_id: &str) -> Vec<&'a Value> {
    where_eq(snap, "app_role_assignments", "principal_id", sp_id)
}

/// Directory role assignments of the service principal `sp_id`.
pub fn roles_of<'a>(snap: &'a Value, sp_id: &str) -> Vec<&'a Value> {
    where_eq(snap, "role_assignments", "principal_id", sp_id)
}

/// The passwords of the application with client id `app_id`.
pub fn passwords(snap: &Value, app_id: &str) -> Vec<Value> {
    snap["applications"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["app_id"] == app_id))
        .and_then(|a| a["passwords"].as_array().cloned())
        .unwrap_or_default()
}

/// The object id of a service principal of application `app_id` (e.g. Microsoft Graph's).
pub fn sp_id_of_app(snap: &Value, app_id: &str) -> Result<String> {
    sps_where(snap, "app_id", app_id)
        .first()
        .and_then(|s| s["id"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no service principal for {app_id}"))
}

/// Exactly one single-tenant app named `name` with one secret and one service principal,
/// holding `grants` app-role grants and `roles` directory roles, each once (no duplicate).
/// Returns (client id, service principal id).
pub fn provisioned_once(
    snap: &Value,
    name: &str,
    grants: usize,
    roles: usize,
) -> Result<(String, String)> {
    let apps = apps_named(snap, name);
    ensure!(apps.len() == 1, "{} applications named {name}", apps.len());
    let app = apps[0];
    let app_id = app["app_id"].as_str().context("app_id")?.to_owned();
    ensure!(
        app["props"]["signInAudience"] == "AzureADMyOrg",
        "not single tenant: {}",
        app["props"]["signInAudience"]
    );
    let secrets = app["passwords"].as_array().map(Vec::len).unwrap_or(0);
    ensure!(secrets == 1, "{secrets} secrets");
    let sps = sps_where(snap, "app_id", &app_id);
    ensure!(sps.len() == 1, "{} service principals", sps.len());
    let sp_id = sps[0]["id"].as_str().context("sp id")?.to_owned();
    for (kind, of_sp, want, key) in [
        (
            "app role grants",
            grants_of(snap, &sp_id),
            grants,
            "app_role_id",
        ),
        (
            "role assignments",
            roles_of(snap, &sp_id),
            roles,
            "role_definition_id",
        ),
    ] {
        let distinct: BTreeSet<String> = of_sp.iter().map(|x| x[key].to_string()).collect();
        ensure!(
            of_sp.len() == want && distinct.len() == want,
            "{kind}: {} held, {} distinct, want {want}",
            of_sp.len(),
            distinct.len()
        );
    }
    Ok((app_id, sp_id))
}

/// [`provisioned_once`] with the `direct-routing` profile's grants and roles.
pub fn no_duplicates(snap: &Value, name: &str) -> Result<(String, String)> {
    provisioned_once(snap, name, GRANTS, ROLES)
}
