//! Application permissions and directory roles of a registration's service principal: listed
//! as Entra has them now, changed with the tenant's admin session (only a Privileged Role
//! Administrator or Global Administrator may grant Graph app roles or assign roles), each
//! change audited with intent and outcome. Removing what the profile requires needs the
//! explicit override.

use std::collections::BTreeMap;

use entra_client::graph::types::{AppRoleAssignment, UnifiedRoleAssignment};
use entra_client::{GraphClient, OpContext};
use onboard_core::audit::{Action, Change, TargetKind, change, set};
use onboard_core::permissions::ResolvedPermission;
use onboard_core::profiles::{PermissionRef, Resource};
use onboard_core::{ResolvedProfile, roles};
use serde_json::{Value, json};

use crate::audit::{ChangeSpec, target};
use crate::error::CredentialsError;
use crate::model::Registration;
use crate::session::OPAQUE_TOKEN;
use crate::{Credentials, RegistrationRef};

mod request;

use request::{check_required, named_in_request, parse_lists, parse_permission, parse_role};

/// Permissions and roles as Entra has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Application permissions: Graph ones by value (`User.Read.All`), others as
    /// `<resource display name>/<value>`; sorted.
    pub permissions: Vec<String>,
    /// Directory roles by display name (template id when unknown); sorted.
    pub roles: Vec<String>,
    /// Audit entries of the changes the call made.
    pub audit_seqs: Vec<u64>,
}

/// Roles or permissions to add and remove.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    /// To add.
    pub add: Vec<String>,
    /// To remove.
    pub remove: Vec<String>,
    /// Allows removing what the profile requires.
    pub override_required: bool,
    /// Audit actor.
    pub actor: String,
}

/// The name of a permission as listed and accepted.
pub(crate) fn permission_name(p: &PermissionRef) -> String {
    match p.resource {
        Resource::Graph => p.value.clone(),
        other => format!("{}/{}", other.display_name(), p.value),
    }
}

fn role_display(template_id: &str) -> String {
    roles::role_name(template_id)
        .or_else(|| entra_client::claims::implicit_wid_name(template_id))
        .map(str::to_owned)
        .unwrap_or_else(|| template_id.to_owned())
}

impl Credentials {
    /// Permissions and roles as Entra has them now: read with the tenant's admin session when
    /// there is one and its admin may read them, else from fresh app-only tokens of the
    /// registration (`roles` per resource and `wids`), which Entra issues from its current
    /// grants; when Microsoft issues such a token as an opaque string (not a readable JWT), or
    /// without a `wids` claim, from Graph with the registration's own token, or
    /// FAILED_PRECONDITION saying why they cannot be determined.
    pub async fn list_grants(&self, r: &RegistrationRef) -> Result<Grants, CredentialsError> {
        let reg = self.registration(r)?;
        if self.admin_session(&reg.tenant_id)?.is_some() {
            // A stored session may no longer renew (e.g. an onboarding removed the token app
            // it was consented through): then read the app's own tokens instead.
            match self.admin_graph(&reg.tenant_id).await {
                Ok(graph) => match self.grants_via(&graph, &reg).await {
                    // An admin who may not read directory role assignments (an Application
                    // Administrator: Learn names Directory Readers, Global Reader and
                    // Privileged Role Administrator): the app's own tokens tell instead.
                    Err(CredentialsError::Entra { source, .. })
                        if source.is_authorization_denied() => {}
                    read => return read,
                },
                Err(CredentialsError::NoAdminSession { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.grants_via_token(&reg).await
    }

    /// From app-only tokens: one per resource of the profile (plus Graph).
    pub(crate) async fn grants_via_token(
        &self,
        reg: &Registration,
    ) -> Result<Grants, CredentialsError> {
        let mut out = Grants::default();
        let mut resources = vec![Resource::Graph];
        for p in &reg.profile.permissions {
            if !resources.contains(&p.resource) {
                resources.push(p.resource);
            }
        }
        for res in resources {
            let scope = if res == Resource::Graph {
                "https://graph.microsoft.com/.default".to_owned()
            } else {
                format!("{}/.default", res.app_id())
            };
            let t = self.app_token(reg, &scope).await?;
            // Microsoft: "access tokens must be treated as opaque strings … might not always be
            // a JWT that can be decoded". One that is not: Graph is asked instead.
            let Ok(claims) = t.access_token_claims() else {
                let why = format!(
                    "Microsoft issued its access token for {} {OPAQUE_TOKEN}",
                    res.display_name()
                );
                return self.grants_via_own_graph(reg, why).await;
            };
            // No `wids` claim at all: the app is not configured to emit them (its manifest's
            // `groupMembershipClaims`), which says nothing of its directory roles; Entra's
            // app-only tokens otherwise carry at least their default value.
            if res == Resource::Graph && claims.wids.is_empty() {
                let why = "its Graph access token carries no `wids` claim (the app's manifest \
                           sets no `groupMembershipClaims`), so the token does not show its \
                           directory roles"
                    .to_owned();
                return self.grants_via_own_graph(reg, why).await;
            }
            for v in claims.roles {
                out.permissions.push(permission_name(&PermissionRef {
                    resource: res,
                    value: v,
                }));
            }
            if res == Resource::Graph {
                out.roles = claims.wids.iter().map(|w| role_display(w)).collect();
            }
        }
        out.permissions.sort();
        out.permissions.dedup();
        out.roles.sort();
        Ok(out)
    }

    /// When the app-only tokens do not show the grants (`why`: one is not a readable JWT, or
    /// carries no `wids`): the grants from Graph, read with the registration's own Graph
    /// token. If it may not read them (it needs `Application.Read.All` and
    /// `RoleManagement.Read.Directory` or more), the answer says they cannot be determined
    /// this way and how they can; Graph unavailable stays an outage.
    async fn grants_via_own_graph(
        &self,
        reg: &Registration,
        why: String,
    ) -> Result<Grants, CredentialsError> {
        tracing::info!(
            client_id = %reg.client_id,
            why,
            "the app-only access tokens do not show the grants; reading them from Graph"
        );
        let t = self
            .app_token(reg, "https://graph.microsoft.com/.default")
            .await?;
        let graph = self.inner.entra.graph(t.access_token);
        self.grants_via(&graph, reg).await.map_err(|e| {
            if e.is_entra_outage() {
                return e;
            }
            CredentialsError::FailedPrecondition(format!(
                "the grants of registration {} cannot be determined without an admin session \
                 who may read them: {why}, and the registration's own token may not read them \
                 from Graph ({e}); sign an admin in for tenant {} (Global Administrator, \
                 Privileged Role Administrator or Global Reader) to read them from Graph",
                reg.client_id, reg.tenant_id
            ))
        })
    }

    /// From Graph reads (assignments of the SP, resolved to names).
    async fn grants_via(
        &self,
        graph: &GraphClient,
        reg: &Registration,
    ) -> Result<Grants, CredentialsError> {
        let (mut permissions, roles) = self.held_via_graph(graph, reg).await?;
        permissions.sort();
        let mut roles: Vec<String> = roles.iter().map(|id| role_display(id)).collect();
        roles.sort();
        Ok(Grants {
            permissions,
            roles,
            audit_seqs: vec![],
        })
    }

    /// What the registration's service principal holds, read from Graph with `graph` (an
    /// admin's token, or the registration's own when it may read them): its application
    /// permissions of the APIs we know, by name, and its directory roles' template ids.
    pub(crate) async fn held_via_graph(
        &self,
        graph: &GraphClient,
        reg: &Registration,
    ) -> Result<(Vec<String>, Vec<String>), CredentialsError> {
        // A standing registration: a 404 is an answer, not replication lag (fresh contexts).
        let (assignments, names) = self.app_role_assignments(graph, reg).await?;
        let permissions = assignments
            .iter()
            .filter_map(|a| {
                names.get(&(
                    a.resource_id.to_ascii_lowercase(),
                    a.app_role_id.to_ascii_lowercase(),
                ))
            })
            .cloned()
            .collect();
        let roles = held_roles(graph, reg)
            .await?
            .into_iter()
            .map(|a| a.role_definition_id)
            .collect();
        Ok((permissions, roles))
    }

    /// The SP's app-role assignments, and (resource SP id, app role id) → permission name for
    /// the resources we know.
    #[allow(clippy::type_complexity)]
    async fn app_role_assignments(
        &self,
        graph: &GraphClient,
        reg: &Registration,
    ) -> Result<(Vec<AppRoleAssignment>, BTreeMap<(String, String), String>), CredentialsError>
    {
        let ctx = OpContext::new();
        let assignments = graph
            .list_app_role_assignments(&reg.sp_id, &ctx)
            .await
            .map_err(|e| CredentialsError::entra("list_app_role_assignments", e))?
            .value;
        let mut names = BTreeMap::new();
        for res in [Resource::Graph, Resource::TeamsAdminApi] {
            let Ok(sp) = graph.resource_service_principal(res.app_id(), &ctx).await else {
                continue;
            };
            for role in &sp.value.app_roles {
                if let Some(v) = &role.value {
                    let name = permission_name(&PermissionRef {
                        resource: res,
                        value: v.clone(),
                    });
                    // Keyed lower-case: Graph compares GUIDs without regard to case.
                    names.insert(
                        (
                            sp.value.id.to_ascii_lowercase(),
                            role.id.to_ascii_lowercase(),
                        ),
                        name,
                    );
                }
            }
        }
        Ok((assignments, names))
    }

    /// Adds and removes directory roles of the registration's service principal.
    pub async fn update_roles(
        &self,
        r: &RegistrationRef,
        req: &UpdateRequest,
    ) -> Result<Grants, CredentialsError> {
        let (add, remove) = parse_lists(req, parse_role, |(_, id)| id.clone())?;
        let (_g, reg) = self.locked(r).await?;
        let required: Vec<String> = remove
            .iter()
            .filter(|(_, id)| {
                reg.profile
                    .directory_roles
                    .iter()
                    .any(|p| p.template_id.eq_ignore_ascii_case(id))
            })
            .map(|(n, _)| n.clone())
            .collect();
        check_required(&reg, &required, req)?;
        let graph = self.admin_graph(&reg.tenant_id).await?;
        let held = held_roles(&graph, &reg).await?;
        let aud = self.auditor(&reg, "", &req.actor);
        let mut seqs = Vec::new();
        for (name, id) in &add {
            if held
                .iter()
                .any(|a| a.role_definition_id.eq_ignore_ascii_case(id))
            {
                continue;
            }
            let (g, sp, tid) = (&graph, reg.sp_id.clone(), id.clone());
            let (_, seq) = aud
                .change(
                    ChangeSpec {
                        action: Action::DirectoryRoleAssignmentCreate,
                        target: target(TargetKind::UnifiedRoleAssignment, None, name),
                        changes: vec![
                            set("principalId", json!(reg.sp_id)),
                            set("roleDefinitionId", json!(id)),
                            set("directoryScopeId", json!("/")),
                        ],
                        after_create: false,
                    },
                    |ctx| async move { g.assign_directory_role(&tid, &sp, &ctx).await },
                    |a| vec![set("id", json!(a.id))],
                )
                .await?;
            seqs.push(seq);
        }
        for (name, id) in &remove {
            for a in held
                .iter()
                .filter(|a| a.role_definition_id.eq_ignore_ascii_case(id))
            {
                let (g, aid) = (&graph, a.id.clone());
                let override_used = required.contains(name);
                let spec = removal(
                    (
                        Action::DirectoryRoleAssignmentDelete,
                        TargetKind::UnifiedRoleAssignment,
                    ),
                    (&a.id, name),
                    change("roleDefinitionId", json!(id), Value::Null),
                    override_used,
                );
                let removed = aud
                    .change(
                        spec,
                        |ctx| async move { g.remove_directory_role_assignment(&aid, &ctx).await },
                        |_| vec![],
                    )
                    .await;
                seqs.extend(gone_already(removed)?);
            }
        }
        self.grants_after(&graph, &reg, seqs).await
    }

    /// Grants (with admin consent) and revokes application permissions.
    pub async fn update_permissions(
        &self,
        r: &RegistrationRef,
        req: &UpdateRequest,
    ) -> Result<Grants, CredentialsError> {
        let (add, remove) = parse_lists(req, parse_permission, Clone::clone)?;
        let (_g, reg) = self.locked(r).await?;
        let required: Vec<String> = remove
            .iter()
            .filter(|p| reg.profile.permissions.contains(p))
            .map(permission_name)
            .collect();
        check_required(&reg, &required, req)?;
        let graph = self.admin_graph(&reg.tenant_id).await?;
        let ctx = OpContext::new();
        let wanted = ResolvedProfile {
            name: "update".into(),
            platform_version: None,
            file_version: 0,
            permissions: add.iter().chain(remove.iter()).cloned().collect(),
            directory_roles: vec![],
            self_rotation: false,
        };
        let resolved = onboard_core::permissions::resolve_permissions(&graph, &wanted, &ctx)
            .await
            .map_err(|e| named_in_request(e, &add))?;
        let (held, _) = self.app_role_assignments(&graph, &reg).await?;
        let aud = self.auditor(&reg, "", &req.actor);
        let mut seqs = Vec::new();
        for p in resolved.iter().filter(|p| add.contains(&p.permission)) {
            if held.iter().any(|a| same_assignment(a, p)) {
                continue;
            }
            let name = permission_name(&p.permission);
            let (g, res, sp, role) = (
                &graph,
                p.resource_sp_id.clone(),
                reg.sp_id.clone(),
                p.app_role_id.clone(),
            );
            let (_, seq) = aud
                .change(
                    ChangeSpec {
                        action: Action::AppRoleAssignmentCreate,
                        target: target(TargetKind::AppRoleAssignment, None, &name),
                        changes: vec![
                            set("principalId", json!(reg.sp_id)),
                            set("resourceId", json!(p.resource_sp_id)),
                            set("appRoleId", json!(p.app_role_id)),
                            set("permission", json!(name)),
                        ],
                        after_create: false,
                    },
                    |ctx| async move { g.grant_app_role(&res, &sp, &role, &ctx).await },
                    |a| vec![set("id", json!(a.id))],
                )
                .await?;
            seqs.push(seq);
        }
        for p in resolved.iter().filter(|p| remove.contains(&p.permission)) {
            let name = permission_name(&p.permission);
            let override_used = required.contains(&name);
            for a in held.iter().filter(|a| same_assignment(a, p)) {
                let (g, res, aid) = (&graph, p.resource_sp_id.clone(), a.id.clone());
                let spec = removal(
                    (
                        Action::AppRoleAssignmentDelete,
                        TargetKind::AppRoleAssignment,
                    ),
                    (&a.id, &name),
                    change("permission", json!(name), Value::Null),
                    override_used,
                );
                let removed = aud
                    .change(
                        spec,
                        |ctx| async move { g.revoke_app_role(&res, &aid, &ctx).await },
                        |_| vec![],
                    )
                    .await;
                seqs.extend(gone_already(removed)?);
            }
        }
        self.grants_after(&graph, &reg, seqs).await
    }

    /// The grants after a change whose audit entries are `seqs`.
    async fn grants_after(
        &self,
        graph: &GraphClient,
        reg: &Registration,
        seqs: Vec<u64>,
    ) -> Result<Grants, CredentialsError> {
        let mut out = self.grants_via(graph, reg).await?;
        out.audit_seqs = seqs;
        Ok(out)
    }
}

/// The directory role assignments of the registration's service principal.
async fn held_roles(
    graph: &GraphClient,
    reg: &Registration,
) -> Result<Vec<UnifiedRoleAssignment>, CredentialsError> {
    graph
        .list_directory_role_assignments(&reg.sp_id, &OpContext::new())
        .await
        .map(|r| r.value)
        .map_err(|e| CredentialsError::entra("list_directory_role_assignments", e))
}

/// The audited removal (`action`) of assignment `id` (of kind `kind`, of role or permission
/// `name`): what it assigned (`was`, now gone) and whether the profile's requirement was
/// overridden.
fn removal(
    (action, kind): (Action, TargetKind),
    (id, name): (&str, &str),
    was: Change,
    override_used: bool,
) -> ChangeSpec {
    ChangeSpec {
        action,
        target: target(kind, Some(id.to_owned()), name),
        changes: vec![was, set("overrideRequired", json!(override_used))],
        after_create: false,
    }
}

/// Whether `a` grants permission `p`: the same resource and app role, compared without
/// regard to case, as Graph compares GUIDs.
fn same_assignment(a: &AppRoleAssignment, p: &ResolvedPermission) -> bool {
    a.resource_id.eq_ignore_ascii_case(&p.resource_sp_id)
        && a.app_role_id.eq_ignore_ascii_case(&p.app_role_id)
}

/// A removal's outcome entry index, or `None` when Graph answered 404: the list it came from
/// may still show what an earlier call removed (Graph: "replication delays for app role
/// assignments that were recently granted or removed"), so it is gone already and the
/// `failed` outcome entry keeps Graph's words.
fn gone_already<T>(
    removed: Result<(T, u64), CredentialsError>,
) -> Result<Option<u64>, CredentialsError> {
    match removed {
        Ok((_, seq)) => Ok(Some(seq)),
        Err(CredentialsError::Entra { source, .. }) if source.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names_round_trip() {
        let g = parse_permission("User.Read.All", "add").expect("graph");
        assert_eq!(g.resource, Resource::Graph);
        assert_eq!(permission_name(&g), "User.Read.All");
        let t = parse_permission("Skype and Teams Tenant Admin API/application_access", "add")
            .expect("teams");
        assert_eq!(t.resource, Resource::TeamsAdminApi);
        assert_eq!(
            permission_name(&t),
            "Skype and Teams Tenant Admin API/application_access"
        );
        // The violation names the request list the value came from.
        for field in ["add", "remove"] {
            for bad in ["Nope/x", "a b"] {
                match parse_permission(bad, field) {
                    Err(CredentialsError::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
                    other => panic!("{bad:?} in {field}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn roles_by_name_or_template_id() {
        let (n, id) = parse_role("teams administrator", "add").expect("name");
        assert_eq!(n, "Teams Administrator");
        assert_eq!(id, "69091246-20e8-4a56-aa4d-066075b2a7a8");
        let (n2, _) = parse_role("69091246-20e8-4a56-aa4d-066075b2a7a8", "add").expect("id");
        assert_eq!(n2, "Teams Administrator");
        assert!(parse_role("Chief Wizard", "add").is_err());
    }
}
