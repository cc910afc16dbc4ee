//! Cancel: undo what an onboarding made, newest first — directory role assignments, app-role
//! grants, the service principal, the application (which takes its secrets with it). Entra is
//! read first (by the record's ids, else by uniqueName), so objects made just before a crash,
//! and not yet recorded, are found too; each removal is audited like any change.

use std::future::Future;

use entra_client::graph::types::UnifiedRoleAssignment;
use entra_client::{EntraError, OpContext, Reply};
use serde_json::{Value, json};

use super::{Change, Run, StepOutcome};
use crate::error::ProvisionError;
use onboard_core::audit::{self, Action, Target, TargetKind, change};

/// Step id of the undo work in events.
const CANCEL: &str = "cancel";

impl Run {
    /// Removes everything this onboarding created; absent objects count as removed.
    pub async fn undo(&self) -> Result<StepOutcome, ProvisionError> {
        let rec = self.snapshot().await;
        // A 404 is lag only for objects this onboarding made moments ago.
        let (app_lags, sp_lags) = (self.app_may_lag().await, self.sp_may_lag().await);
        let ctx = self.read_ctx(CANCEL, app_lags);
        let sp_ctx = self.read_ctx(CANCEL, sp_lags);
        let err = |e| ProvisionError::entra(CANCEL, e);
        let app = match &rec.app_object_id {
            Some(oid) => {
                let graph = &self.graph;
                self.read_made(oid, app_lags, |c| async move {
                    graph.get_application(oid, &c).await
                })
                .await?
            }
            None => {
                self.graph
                    .get_application_by_unique_name(&rec.unique_name, &ctx)
                    .await
                    .map_err(err)?
                    .value
            }
        };
        let sp = match &app {
            Some(a) => {
                let listed = self
                    .graph
                    .find_service_principal_by_app_id(&a.app_id, &ctx)
                    .await
                    .map_err(err)?
                    .value;
                match (listed, &rec.sp_id) {
                    // A list may lag behind the service principal the record knows: read it
                    // by its id, so its grants, roles and deletion are undone and logged, not
                    // left to the application's deletion to take along unrecorded.
                    (None, Some(id)) => {
                        let graph = &self.graph;
                        self.read_made(id, sp_lags, |c| async move {
                            graph.get_service_principal(id, &c).await
                        })
                        .await?
                    }
                    (listed, _) => listed,
                }
            }
            None => None,
        };
        let mut seqs = Vec::new();
        let mut removed = Vec::new();
        if let Some(sp) = &sp {
            // An admin who may not read role assignments (an Application Administrator whose
            // hand-off expired) removes the ones this onboarding recorded making: none, unless
            // a privileged admin made them, whose removal then needs one again.
            let roles = match self
                .graph
                .readable_directory_role_assignments(&sp.id, &sp_ctx)
                .await
                .map_err(err)?
            {
                Some(read) => read,
                None => recorded_role_assignments(&rec, &sp.id),
            };
            for a in roles {
                let name = onboard_core::roles::role_name(&a.role_definition_id)
                    .unwrap_or(&a.role_definition_id);
                let graph = &self.graph;
                let id = a.id.clone();
                let seq = self
                    .remove(
                        (CANCEL, Action::DirectoryRoleAssignmentDelete),
                        false,
                        Target::new(TargetKind::UnifiedRoleAssignment, a.id.clone()).named(name),
                        vec![change(
                            "roleDefinitionId",
                            json!(a.role_definition_id),
                            Value::Null,
                        )],
                        |c| async move { graph.remove_directory_role_assignment(&id, &c).await },
                    )
                    .await?;
                seqs.extend(seq);
                removed.push(format!("role assignment {}", a.id));
            }
            let grants = self
                .graph
                .list_app_role_assignments(&sp.id, &sp_ctx)
                .await
                .map_err(err)?
                .value;
            for g in grants {
                let graph = &self.graph;
                let (res, id) = (g.resource_id.clone(), g.id.clone());
                let seq = self
                    .remove(
                        (CANCEL, Action::AppRoleAssignmentDelete),
                        false,
                        Target::new(TargetKind::AppRoleAssignment, g.id.clone())
                            .named(&g.app_role_id),
                        vec![change("appRoleId", json!(g.app_role_id), Value::Null)],
                        |c| async move { graph.revoke_app_role(&res, &id, &c).await },
                    )
                    .await?;
                seqs.extend(seq);
                removed.push(format!("grant {}", g.id));
            }
            let graph = &self.graph;
            let id = sp.id.clone();
            let seq = self
                .remove(
                    (CANCEL, Action::ServicePrincipalDelete),
                    sp_lags,
                    Target::new(TargetKind::ServicePrincipal, sp.id.clone()).named(&rec.app_name),
                    vec![change("appId", json!(sp.app_id), Value::Null)],
                    |c| async move { graph.delete_service_principal(&id, &c).await },
                )
                .await?;
            seqs.extend(seq);
            removed.push(format!("service principal {}", sp.id));
        }
        if let Some(app) = &app {
            let graph = &self.graph;
            let id = app.id.clone();
            let seq = self
                .remove(
                    (CANCEL, Action::AppRegistrationDelete),
                    app_lags,
                    Target::new(TargetKind::Application, app.id.clone()).named(&rec.app_name),
                    vec![
                        change("appId", json!(app.app_id), Value::Null),
                        change("uniqueName", json!(rec.unique_name), Value::Null),
                    ],
                    |c| async move { graph.delete_application(&id, &c).await },
                )
                .await?;
            seqs.extend(seq);
            removed.push(format!("application {}", app.id));
        }
        self.update(|r| {
            r.grants.clear();
            r.role_assignments.clear();
            r.sp_id = None;
            r.app_object_id = None;
            r.client_id = None;
            r.secret = None;
        })
        .await?;
        let detail = if removed.is_empty() {
            "nothing to remove".to_owned()
        } else {
            format!("removed {}", removed.join(", "))
        };
        Ok(StepOutcome {
            detail,
            audit_seqs: seqs,
        })
    }

    /// The object `oid` (an application or a service principal) as `get` reads it now, or
    /// `None` when it is gone. `may_lag`: this onboarding made it moments ago, so a 404 may
    /// come from a replica that has not seen it yet (Microsoft promises no read-your-writes):
    /// unless the recycle bin holds it (then it was deleted, by an earlier cancel or by
    /// someone), it is read again with lag retries, and only a 404 that outlasts them is taken
    /// as gone.
    async fn read_made<T, Fut>(
        &self,
        oid: &str,
        may_lag: bool,
        get: impl Fn(OpContext) -> Fut,
    ) -> Result<Option<T>, ProvisionError>
    where
        Fut: Future<Output = Result<Reply<T>, EntraError>>,
    {
        let err = |e| ProvisionError::entra(CANCEL, e);
        let read = async |lag| match get(self.read_ctx(CANCEL, lag)).await {
            Ok(r) => Ok(Some(r.value)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(err(e)),
        };
        if let Some(found) = read(false).await? {
            return Ok(Some(found));
        }
        if !may_lag {
            return Ok(None);
        }
        let binned = self
            .graph
            .is_in_recycle_bin(oid, &self.read_ctx(CANCEL, false))
            .await
            .map_err(err)?;
        if binned.value {
            return Ok(None);
        }
        read(true).await
    }

    /// One audited removal at `step`: `action` on `target`, `was` what it held, now gone.
    /// Returns the outcome entry's index, or `None` when Graph answers 404: a list may still
    /// show what an earlier attempt removed ("replication delays for app role assignments that
    /// were recently granted or removed", Graph's list-approleassignments page), so the object
    /// is already gone, the goal is reached, and the `failed` outcome entry records Graph's
    /// words. `may_lag`: this onboarding may have made the object moments ago, so a 404 may
    /// come from a replica that has not seen it yet; it is retried as replication lag, and
    /// only a 404 that outlasts the retries counts as gone.
    pub(super) async fn remove<Fut>(
        &self,
        (step, action): (&str, Action),
        may_lag: bool,
        target: Target,
        was: Vec<audit::Change>,
        call: impl FnOnce(OpContext) -> Fut,
    ) -> Result<Option<u64>, ProvisionError>
    where
        Fut: Future<Output = Result<Reply<()>, EntraError>>,
    {
        let spec = Change {
            step,
            action,
            target,
            changes: was,
            after_create: may_lag,
        };
        match self.change(spec, call, |_| (None, vec![])).await {
            Ok(((), seq)) => Ok(Some(seq)),
            Err(ProvisionError::Entra { source, .. }) if source.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The directory role assignments `rec` says this onboarding made for service principal
/// `sp_id`, as Graph would list them.
fn recorded_role_assignments(
    rec: &crate::store::OnboardingRecord,
    sp_id: &str,
) -> Vec<UnifiedRoleAssignment> {
    rec.role_assignments
        .iter()
        .map(|(template, id)| UnifiedRoleAssignment {
            id: id.clone(),
            role_definition_id: template.clone(),
            principal_id: sp_id.to_owned(),
            directory_scope_id: Some("/".to_owned()),
        })
        .collect()
}
