//! Resolving a profile's permissions to the ids a tenant uses: each resource's service
//! principal and the app role ids it offers. Read at runtime, never hard-coded
//! (entra-reference.md §1.5, §3.3); used by onboarding and by day-two permission changes.

use std::collections::BTreeMap;

use entra_client::graph::ServicePrincipal;
use entra_client::{GraphClient, OpContext};
use serde::Serialize;

use crate::error::CoreError;
use crate::profiles::{PermissionRef, ResolvedProfile, Resource};

/// A permission with its app-role id as the tenant's resource service principal lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedPermission {
    /// Resource and value.
    pub permission: PermissionRef,
    /// The resource's service principal object id in this tenant (`resourceId` of a grant).
    pub resource_sp_id: String,
    /// The app role id (`appRoleId`).
    pub app_role_id: String,
}

impl ResolvedPermission {
    /// `Resource display name/value`: the key grants are stored and reported under.
    pub fn key(&self) -> String {
        permission_key(&self.permission)
    }
}

/// Key of a permission in records and step ids.
pub fn permission_key(p: &PermissionRef) -> String {
    format!("{}/{}", p.resource.display_name(), p.value)
}

/// Reads the resources' app roles and resolves every permission of `profile` to its id. Ids are
/// read at runtime, never hard-coded (entra-reference.md §1.5, §3.3).
pub async fn resolve_permissions(
    graph: &GraphClient,
    profile: &ResolvedProfile,
    ctx: &OpContext,
) -> Result<Vec<ResolvedPermission>, CoreError> {
    // One read per resource, however many of its permissions the profile lists; the reads are
    // independent, so they run at once.
    let resources: std::collections::BTreeSet<Resource> =
        profile.permissions.iter().map(|p| p.resource).collect();
    let mut reads = tokio::task::JoinSet::new();
    for r in resources {
        let (graph, ctx) = (graph.clone(), ctx.clone());
        reads.spawn(async move { (r, graph.resource_service_principal(r.app_id(), &ctx).await) });
    }
    // Every read is waited for, and a failure is chosen in resource order: no call is left
    // half done behind an error (a read whose token was renewed is sent again before the plan
    // answers), and which error the admin sees does not depend on which answer came first.
    let mut results = BTreeMap::new();
    while let Some(joined) = reads.join_next().await {
        let (r, res) =
            joined.map_err(|e| CoreError::Store(format!("resource lookup task: {e}")))?;
        results.insert(r, res);
    }
    let mut sps: BTreeMap<Resource, ServicePrincipal> = BTreeMap::new();
    for (r, res) in results {
        let sp = match res {
            Ok(found) => found.value,
            // The resource is Microsoft's: a 404 is an answer (nothing was just created), and
            // the admin can fix it.
            Err(e) if e.is_not_found() => {
                return Err(CoreError::MissingResource {
                    resource: r.display_name().to_owned(),
                    app_id: r.app_id().to_owned(),
                });
            }
            Err(e) => return Err(CoreError::entra("resolve_permissions", e)),
        };
        sps.insert(r, sp);
    }
    let mut out = Vec::new();
    for p in &profile.permissions {
        let Some(sp) = sps.get(&p.resource) else {
            continue;
        };
        let role = sp
            .app_roles
            .iter()
            .find(|r| {
                r.value.as_deref() == Some(p.value.as_str())
                    && r.is_enabled
                    && r.allowed_member_types.iter().any(|t| t == "Application")
            })
            .ok_or_else(|| CoreError::UnknownPermission {
                resource: p.resource.display_name().to_owned(),
                permission: p.value.clone(),
            })?;
        out.push(ResolvedPermission {
            permission: p.clone(),
            resource_sp_id: sp.id.clone(),
            app_role_id: role.id.clone(),
        });
    }
    Ok(out)
}
