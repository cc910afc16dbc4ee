//! Application permissions with admin consent (`appRoleAssignedTo`) and directory role
//! assignments: independent of each other, so they run concurrently, bounded by the engine's
//! `concurrency`. Each one lists what our service principal already holds first.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Change, Run, StepOutcome, ids};
use crate::error::ProvisionError;
use crate::events::EventKind;
use entra_client::graph::AppRoleAssignment;
use onboard_core::audit::{Action, Target, TargetKind, set};
use onboard_core::permissions::ResolvedPermission;
use onboard_core::profiles::RoleRef;
use onboard_core::roles::Right;

/// One unit of concurrent work.
enum Item {
    /// Grant this permission.
    Grant(ResolvedPermission),
    /// Assign this directory role.
    Role(RoleRef),
}

impl Item {
    /// The admin right the change needs.
    fn right(&self) -> Right {
        match self {
            Item::Grant(p) => p.permission.resource.grant_right(),
            Item::Role(_) => Right::AssignDirectoryRoles,
        }
    }

    fn step_id(&self) -> String {
        match self {
            Item::Grant(p) => ids::grant(&p.key()),
            Item::Role(r) => ids::role(&r.name),
        }
    }
}

/// Whether assignment `g` is the grant of permission `p`: the same resource and app role.
/// Object and role ids are GUIDs, which Graph compares without regard to case.
fn grants(g: &AppRoleAssignment, p: &ResolvedPermission) -> bool {
    g.resource_id.eq_ignore_ascii_case(&p.resource_sp_id)
        && g.app_role_id.eq_ignore_ascii_case(&p.app_role_id)
}

impl Run {
    /// Grants every permission and assigns every role the SP lacks, except those needing a
    /// right in `lacking` (the signed-in admin's missing rights: left for a privileged admin).
    pub async fn permissions_and_roles(
        self: &Arc<Self>,
        perms: &[ResolvedPermission],
        lacking: &[Right],
    ) -> Result<StepOutcome, ProvisionError> {
        let rec = self.snapshot().await;
        let sp_id = rec.sp_id.clone().ok_or_else(|| {
            ProvisionError::Store("grant step without a service principal".into())
        })?;
        // A service principal this onboarding created, whose grants were never begun, holds
        // nothing yet: reading would only cost a round trip.
        let (granted, assigned) = if self.must_check(ids::ACCESS).await {
            let ctx = self.read_ctx(ids::ACCESS, self.sp_may_lag().await);
            // An admin who may not read role assignments (an Application Administrator) may
            // not make them: its role items are among `lacking`, left for a privileged admin.
            let (granted, assigned) = tokio::join!(
                self.graph.list_app_role_assignments(&sp_id, &ctx),
                self.graph.readable_directory_role_assignments(&sp_id, &ctx)
            );
            (
                granted
                    .map_err(|e| ProvisionError::entra(ids::ACCESS, e))?
                    .value,
                assigned
                    .map_err(|e| ProvisionError::entra(ids::ACCESS, e))?
                    .unwrap_or_default(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let mut items = Vec::new();
        let mut already = 0usize;
        for p in perms {
            match granted.iter().find(|g| grants(g, p)) {
                Some(g) => {
                    already += 1;
                    let (k, id) = (p.key(), g.id.clone());
                    self.note(|r| {
                        r.grants.insert(k, id);
                    })
                    .await;
                }
                None => items.push(Item::Grant(p.clone())),
            }
        }
        for role in &rec.profile.directory_roles {
            match assigned.iter().find(|a| {
                a.role_definition_id.eq_ignore_ascii_case(&role.template_id)
                    && a.directory_scope_id.as_deref().unwrap_or("/") == "/"
            }) {
                Some(a) => {
                    already += 1;
                    let (k, id) = (role.template_id.clone(), a.id.clone());
                    self.note(|r| {
                        r.role_assignments.insert(k, id);
                    })
                    .await;
                }
                None => items.push(Item::Role(role.clone())),
            }
        }
        let before = items.len();
        items.retain(|i| !lacking.contains(&i.right()));
        let left = before - items.len();
        let total = items.len();
        let sem = Arc::new(Semaphore::new(self.inner.cfg.concurrency.max(1)));
        // Read once for the whole step: the sign-in check runs beside it and, once it passes,
        // `sp_may_lag` turns false, but a token from the STS proves nothing about the Graph
        // replica an item still waiting for a slot will write to.
        let sp_lag = self.sp_may_lag().await;
        let mut set = JoinSet::new();
        for item in items {
            let run = self.clone();
            let sem = sem.clone();
            let sp = sp_id.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                run.one(item, &sp, sp_lag).await
            });
        }
        let mut seqs = Vec::new();
        let mut first_err = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(seq)) => seqs.push(seq),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(ProvisionError::Store(format!("grant task: {e}")));
                }
            }
        }
        // Every task is waited for, so no change is left running (or unaudited) behind a failure.
        if let Some(e) = first_err {
            return Err(e);
        }
        let mut detail = format!("{total} granted or assigned, {already} already in place");
        if left > 0 {
            detail.push_str(&format!(", {left} left for a privileged admin"));
        }
        Ok(StepOutcome {
            detail,
            audit_seqs: seqs,
        })
    }

    /// One grant or assignment, with its own Started/Done/Failed events; `sp_lag`: whether
    /// the service principal may not have replicated yet.
    async fn one(&self, item: Item, sp_id: &str, sp_lag: bool) -> Result<u64, ProvisionError> {
        let step = item.step_id();
        let description = match &item {
            Item::Grant(p) => format!("grant {} with admin consent", p.key()),
            Item::Role(r) => format!("assign directory role {}", r.name),
        };
        self.emitter.emit(&step, EventKind::Started { description });
        let result = match &item {
            Item::Grant(p) => self.grant(&step, p, sp_id, sp_lag).await,
            Item::Role(r) => self.assign(&step, r, sp_id, sp_lag).await,
        };
        match &result {
            Ok((seq, detail)) => {
                self.emitter.emit(
                    &step,
                    EventKind::Done {
                        detail: detail.clone(),
                        audit_seqs: vec![*seq],
                    },
                );
            }
            Err(e) => {
                self.emitter.emit(&step, EventKind::failed(e));
            }
        }
        result.map(|(seq, _)| seq)
    }

    async fn grant(
        &self,
        step: &str,
        p: &ResolvedPermission,
        sp_id: &str,
        sp_lag: bool,
    ) -> Result<(u64, String), ProvisionError> {
        let target = Target::new(TargetKind::AppRoleAssignment, None).named(p.key());
        let changes = vec![
            set("principalId", json!(sp_id)),
            set("resourceId", json!(p.resource_sp_id)),
            set("appRoleId", json!(p.app_role_id)),
            set("permission", json!(p.key())),
        ];
        let graph = &self.graph;
        let (res, pid, rid) = (
            p.resource_sp_id.clone(),
            sp_id.to_owned(),
            p.app_role_id.clone(),
        );
        let (a, seq) = self
            .change(
                Change {
                    step,
                    action: Action::AppRoleAssignmentCreate,
                    target,
                    changes,
                    after_create: sp_lag,
                },
                |ctx| async move { graph.grant_app_role(&res, &pid, &rid, &ctx).await },
                |a| (Some(a.id.clone()), vec![]),
            )
            .await?;
        let (k, id) = (p.key(), a.id.clone());
        self.note(|r| {
            r.grants.insert(k, id);
        })
        .await;
        Ok((seq, format!("{} granted (assignment {})", p.key(), a.id)))
    }

    async fn assign(
        &self,
        step: &str,
        role: &RoleRef,
        sp_id: &str,
        sp_lag: bool,
    ) -> Result<(u64, String), ProvisionError> {
        let target = Target::new(TargetKind::UnifiedRoleAssignment, None).named(&role.name);
        let changes = vec![
            set("principalId", json!(sp_id)),
            set("roleDefinitionId", json!(role.template_id)),
            set("directoryScopeId", json!("/")),
        ];
        let graph = &self.graph;
        let (tid, pid) = (role.template_id.clone(), sp_id.to_owned());
        let (a, seq) = self
            .change(
                Change {
                    step,
                    action: Action::DirectoryRoleAssignmentCreate,
                    target,
                    changes,
                    after_create: sp_lag,
                },
                |ctx| async move { graph.assign_directory_role(&tid, &pid, &ctx).await },
                |a| (Some(a.id.clone()), vec![]),
            )
            .await?;
        let (k, id) = (role.template_id.clone(), a.id.clone());
        self.note(|r| {
            r.role_assignments.insert(k, id);
        })
        .await;
        Ok((seq, format!("{} assigned (assignment {})", role.name, a.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onboard_core::profiles::{PermissionRef, Resource};

    #[test]
    fn a_held_grant_is_recognised_whatever_the_case_of_its_ids() {
        let p = ResolvedPermission {
            permission: PermissionRef {
                resource: Resource::Graph,
                value: "User.Read.All".into(),
            },
            resource_sp_id: "5B1E6B4A-0C4F-4D0E-9E43-AB12CD34EF56".into(),
            app_role_id: "df021288-bdef-4463-88db-98f22de89214".into(),
        };
        let held = |resource: &str, role: &str| AppRoleAssignment {
            id: "a".into(),
            app_role_id: role.into(),
            principal_id: "p".into(),
            principal_type: None,
            resource_id: resource.into(),
            resource_display_name: None,
            created_date_time: None,
        };
        let lower = "5b1e6b4a-0c4f-4d0e-9e43-ab12cd34ef56";
        assert!(grants(
            &held(lower, "DF021288-BDEF-4463-88DB-98F22DE89214"),
            &p
        ));
        assert!(grants(&held(&p.resource_sp_id, &p.app_role_id), &p));
        // Another role of the same resource, or the same role id of another resource, is not it.
        assert!(!grants(
            &held(lower, "741f803b-c850-494e-b5df-cde7c675a1ca"),
            &p
        ));
        assert!(!grants(
            &held("00000000-0000-0000-0000-000000000001", &p.app_role_id),
            &p
        ));
    }
}
