//! The dry run: the exact Entra changes `provision` would make for an app name and profile in
//! the admin's tenant as it is now, and which of them the admin lacks rights for. Reads only.

use std::future::Future;

use entra_client::{EntraError, GraphClient, OpContext, Reply};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ProvisionError;
use crate::names;
use crate::signin::Admin;
use onboard_core::ResolvedProfile;
use onboard_core::permissions::ResolvedPermission;
use onboard_core::roles::Right;

/// The Entra `uniqueName` of the registration that onboarding `onboarding_id` makes for
/// `(tenant, name)`: stable for the onboarding, so a retried or resumed run upserts the same app;
/// different for every onboarding, because a deleted application keeps its `uniqueName` for the
/// 30 days it sits in the recycle bin (a cancelled onboarding's name must not block the next
/// one; docs/microsoft.md); hashed, because names may hold characters awkward in an OData key.
pub fn unique_name(tenant_id: &str, app_name: &str, onboarding_id: &str) -> String {
    let d = Sha256::digest(
        format!(
            "{tenant_id}\n{}\n{onboarding_id}",
            names::name_key(app_name)
        )
        .as_bytes(),
    );
    format!("onboard-{}", &hex::encode(d)[..32])
}

/// One change the plan lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    /// Audit action it will be recorded as (e.g. `app_role_assignment.create`).
    pub action: String,
    /// What it touches (e.g. `Microsoft Graph/User.Read.All`, `Teams Administrator`).
    pub target: String,
    /// `create`, `update`, `delete`, `check`, or `none` when Entra already has it.
    pub operation: String,
    /// The admin right it needs (`None` for the authentication check).
    pub right: Option<Right>,
    /// Whether the signed-in admin holds that right.
    pub allowed: bool,
}

/// A right the admin lacks, with the changes that need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingRight {
    /// The right.
    pub right: Right,
    /// What it is for and which roles grant it.
    pub description: String,
    /// Targets of the planned changes that need it.
    pub changes: Vec<String>,
}

/// The dry run's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Tenant the changes would be made in.
    pub tenant_id: String,
    /// App registration display name.
    pub app_name: String,
    /// Its `uniqueName`; empty for a dry run made before an onboarding id exists (every new
    /// onboarding gets its own key, so such a run creates).
    pub unique_name: String,
    /// Profile applied.
    pub profile: ResolvedProfile,
    /// The changes, in execution order.
    pub changes: Vec<PlannedChange>,
    /// Rights the admin lacks (empty: provisioning can run).
    pub missing_rights: Vec<MissingRight>,
}

/// Facts read from the tenant that decide create vs none.
pub(crate) struct TenantState {
    /// App object id and client id if the uniqueName already exists.
    pub app: Option<(String, String)>,
    /// Our SP id if it exists.
    pub sp_id: Option<String>,
    /// `resource_sp_id/app_role_id` pairs our SP already holds.
    pub granted: Vec<(String, String)>,
    /// Template ids of directory roles our SP already holds.
    pub roles: Vec<String>,
    /// Temporary token apps found: (service principal id, app id).
    pub token_apps: Vec<(String, String)>,
    /// The temporary app's display name as the tenant shows it (the provider app's own name).
    pub token_app_name: Option<String>,
}

/// What `read` finds under `key`, when there is a key; nothing without one.
async fn read_if<'a, T, Fut>(
    key: Option<&'a str>,
    read: impl FnOnce(&'a str) -> Fut,
) -> Result<Option<T>, EntraError>
where
    Fut: Future<Output = Result<Reply<Option<T>>, EntraError>>,
{
    match key {
        Some(k) => read(k).await.map(|r| r.value),
        None => Ok(None),
    }
}

pub(crate) async fn read_tenant(
    graph: &GraphClient,
    unique: Option<&str>,
    token_app_client_id: Option<&str>,
    ctx: &OpContext,
) -> Result<TenantState, ProvisionError> {
    let err = |e| ProvisionError::entra("plan", e);
    // The app and the temporary app are looked up at once; what our SP holds is read (both
    // lists at once) only when the app already exists. Without a key (a dry run before the
    // onboarding exists) there is no app of ours to find.
    let app_read = read_if(unique, |u| graph.get_application_by_unique_name(u, ctx));
    // The temporary app is found by appId: its service principal takes the provider app's own
    // display name, which need not be `<server>-<provider>-token`.
    let token_read = read_if(token_app_client_id, |id| {
        graph.find_service_principal_by_app_id(id, ctx)
    });
    let (app, token_sp) = tokio::join!(app_read, token_read);
    let app = app.map_err(err)?;
    let token_sp = token_sp.map_err(err)?;
    let mut st = TenantState {
        app: app.as_ref().map(|a| (a.id.clone(), a.app_id.clone())),
        sp_id: None,
        granted: vec![],
        roles: vec![],
        token_app_name: token_sp.as_ref().and_then(|s| s.display_name.clone()),
        token_apps: token_sp.into_iter().map(|s| (s.id, s.app_id)).collect(),
    };
    if let Some(a) = &app {
        st.sp_id = graph
            .find_service_principal_by_app_id(&a.app_id, ctx)
            .await
            .map_err(err)?
            .value
            .map(|s| s.id);
    }
    if let Some(sp) = &st.sp_id {
        // An admin who may not read role assignments may not make them either: what this
        // plan would assign is then left for a privileged admin, read or not.
        let (granted, roles) = tokio::join!(
            graph.list_app_role_assignments(sp, ctx),
            graph.readable_directory_role_assignments(sp, ctx)
        );
        st.granted = granted
            .map_err(err)?
            .value
            .into_iter()
            .map(|a| (a.resource_id, a.app_role_id))
            .collect();
        st.roles = roles
            .map_err(err)?
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.role_definition_id)
            .collect();
    }
    Ok(st)
}

/// Builds the plan from the tenant state.
pub(crate) fn build(
    admin: &Admin,
    app_name: &str,
    unique: String,
    profile: ResolvedProfile,
    perms: &[ResolvedPermission],
    st: &TenantState,
    token_app: &str,
) -> Plan {
    let mut changes = Vec::new();
    let mut push = |action: &str, target: String, operation: &str, right: Option<Right>| {
        changes.push(PlannedChange {
            action: action.into(),
            target,
            operation: operation.into(),
            right,
            allowed: right.is_none_or(|r| admin.has(r)),
        });
    };
    let manage = Some(Right::ManageApplications);
    let app_op = if st.app.is_some() { "update" } else { "create" };
    push(
        "app_registration.create",
        app_name.to_owned(),
        app_op,
        manage,
    );
    let sp_op = if st.sp_id.is_some() { "none" } else { "create" };
    push(
        "service_principal.create",
        app_name.to_owned(),
        sp_op,
        manage,
    );
    push("client_secret.add", app_name.to_owned(), "create", manage);
    for p in perms {
        let held = st.granted.iter().any(|(r, id)| {
            r.eq_ignore_ascii_case(&p.resource_sp_id) && id.eq_ignore_ascii_case(&p.app_role_id)
        });
        let op = if held { "none" } else { "create" };
        let right = Some(p.permission.resource.grant_right());
        push("app_role_assignment.create", p.key(), op, right);
    }
    for r in &profile.directory_roles {
        let held = st
            .roles
            .iter()
            .any(|x| x.eq_ignore_ascii_case(&r.template_id));
        let op = if held { "none" } else { "create" };
        let right = Some(Right::AssignDirectoryRoles);
        push(
            "directory_role_assignment.create",
            r.name.clone(),
            op,
            right,
        );
    }
    if profile.self_rotation {
        // Added if missing; the plan does not read the app's owners.
        push("app_owner.add", app_name.to_owned(), "create", manage);
    }
    let token_op = if st.token_apps.is_empty() {
        "none"
    } else {
        "delete"
    };
    push(
        "temporary_app.delete",
        token_app.to_owned(),
        token_op,
        manage,
    );
    push("authentication.verify", app_name.to_owned(), "check", None);

    let mut missing: Vec<MissingRight> = Vec::new();
    for c in changes
        .iter()
        .filter(|c| !c.allowed && c.operation != "none")
    {
        let Some(right) = c.right else { continue };
        match missing.iter_mut().find(|m| m.right == right) {
            Some(m) => m.changes.push(c.target.clone()),
            None => missing.push(MissingRight {
                right,
                description: right.describe(),
                changes: vec![c.target.clone()],
            }),
        }
    }
    Plan {
        tenant_id: admin.tenant_id.clone(),
        app_name: app_name.to_owned(),
        unique_name: unique,
        profile,
        changes,
        missing_rights: missing,
    }
}

/// Marks the changes of confirmed steps (`done(step id)`) as `none` and drops the missing
/// rights no change left needs.
pub(crate) fn count_done(plan: &mut Plan, done: impl Fn(&str) -> bool) {
    use crate::steps::ids;
    for c in &mut plan.changes {
        let step = match c.action.as_str() {
            "app_registration.create" => ids::APP,
            "service_principal.create" => ids::SP,
            "client_secret.add" => ids::SECRET,
            "app_owner.add" => ids::OWNER,
            _ => continue,
        };
        if done(step) {
            c.operation = "none".into();
        }
    }
    let changes = &plan.changes;
    plan.missing_rights.retain(|m| {
        changes
            .iter()
            .any(|c| c.right == Some(m.right) && !c.allowed && c.operation != "none")
    });
}

impl Plan {
    /// The missing rights as one line each, for [`ProvisionError::MissingRights`].
    pub fn missing_lines(&self) -> Vec<String> {
        self.missing_rights
            .iter()
            .map(|m| format!("{} (for {})", m.description, m.changes.join(", ")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_name_is_stable_and_case_blind() {
        let a = unique_name("t1", "Sbc-One", "onb-1");
        assert_eq!(a, unique_name("t1", "sbc-one", "onb-1"));
        assert_ne!(a, unique_name("t2", "Sbc-One", "onb-1"));
        assert_ne!(
            a,
            unique_name("t1", "Sbc-One", "onb-2"),
            "a later onboarding of the same name must not collide with a deleted app's key"
        );
        assert!(a.starts_with("onboard-") && a.len() == 40);
        assert_eq!(
            onboard_core::platform::token_app_name("Sandbox1", "sp2"),
            "Sandbox1-sp2-token"
        );
    }
}
