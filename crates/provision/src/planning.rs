//! The engine's dry runs: the plan for a name, the plan of an onboarding as it stands (before
//! its app is named, or after its run began), and the plan a run starts from with what its reads
//! found. Read only.

use entra_client::OpContext;
use onboard_core::permissions::resolve_permissions;
use onboard_core::platform::token_app_name;

use crate::PlanRequest;
use crate::engine::Engine;
use crate::error::ProvisionError;
use crate::names::{self, validate_name};
use crate::plan::{self, Plan};
use crate::signin::Admin;
use crate::steps::Seed;
use crate::store::Status;

impl Engine {
    /// The exact changes `provision` would make, and the rights the admin lacks. Changes nothing.
    pub async fn plan(&self, admin: &Admin, req: &PlanRequest) -> Result<Plan, ProvisionError> {
        validate_name(&req.app_name)?;
        Ok(self.plan_and_seed(admin, req, None).await?.0)
    }

    /// The plan of onboarding `id` before its app is named (the wizard shows it right after the
    /// sign-in): what a run would change and which rights the admin lacks, with the app's own
    /// targets unnamed (empty). An onboarding whose run has begun has its name: its plan is
    /// [`Engine::plan_for`]'s. `req.app_name` is ignored. Changes nothing.
    pub async fn plan_unnamed(
        &self,
        id: &str,
        admin: &Admin,
        req: &PlanRequest,
    ) -> Result<Plan, ProvisionError> {
        match self.inner.store.get(id)? {
            Some(rec) => {
                let named = PlanRequest {
                    app_name: rec.app_name.clone(),
                    ..req.clone()
                };
                self.plan_for(id, admin, &named).await
            }
            None => {
                let unnamed = PlanRequest {
                    app_name: String::new(),
                    ..req.clone()
                };
                Ok(self.plan_and_seed(admin, &unnamed, None).await?.0)
            }
        }
    }

    /// Refuses `app_name` (`NameTaken`) when another live onboarding of `tenant` (running,
    /// completed, cancelling or awaiting an admin) has it, in any case. Provision checks under
    /// the names lock; Plan checks too, so the wizard says so as the admin types.
    pub(crate) fn check_name_free(
        &self,
        id: &str,
        tenant: &str,
        app_name: &str,
    ) -> Result<(), ProvisionError> {
        let name_key = names::name_key(app_name);
        let mut holders = self.inner.store.name_holders(tenant, &name_key)?;
        // The first by id, as a scan of the records in key order named it.
        holders.sort_by(|a, b| a.0.cmp(&b.0));
        for (other, status) in holders {
            let live = matches!(
                status,
                Status::Running | Status::Completed | Status::Cancelling | Status::AwaitingAdmin
            );
            if other != id && live {
                return Err(ProvisionError::NameTaken {
                    name: app_name.to_owned(),
                    existing: other,
                });
            }
        }
        Ok(())
    }

    /// The plan of onboarding `id` as it stands now: once its run has begun (a retry, or a
    /// privileged admin finishing a hand-off) its own app is read and the steps it confirmed
    /// count as made, so the plan lists only what is left. Before that, [`Engine::plan`]. A
    /// name another onboarding of the tenant holds is refused, as Provision would.
    pub async fn plan_for(
        &self,
        id: &str,
        admin: &Admin,
        req: &PlanRequest,
    ) -> Result<Plan, ProvisionError> {
        validate_name(&req.app_name)?;
        self.check_name_free(id, &admin.tenant_id, &req.app_name)?;
        let Some(rec) = self.inner.store.get(id)? else {
            return self.plan(admin, req).await;
        };
        // Provision refuses a retry under another name; so does its plan.
        if rec.name_key != names::name_key(&req.app_name) {
            return Err(ProvisionError::InvalidState {
                id: rec.id,
                state: rec.status.as_str().into(),
                what: "a retry must use the same tenant and name".into(),
            });
        }
        let mut plan = self
            .plan_and_seed(admin, req, Some(rec.unique_name.clone()))
            .await?
            .0;
        plan::count_done(&mut plan, |step| rec.done(step));
        Ok(plan)
    }

    /// The plan, and what its reads found that a run starting right now can use instead of
    /// reading again.
    pub(crate) async fn plan_and_seed(
        &self,
        admin: &Admin,
        req: &PlanRequest,
        unique: Option<String>,
    ) -> Result<(Plan, Seed), ProvisionError> {
        let profile = self
            .inner
            .cfg
            .profiles
            .resolve(&req.profile, req.platform_version.as_deref())?;
        let graph = self.admin_graph(admin);
        let ctx = OpContext::new();
        // Independent reads: the resources' app roles and the tenant's current state.
        let (perms, st) = tokio::join!(
            resolve_permissions(&graph, &profile, &ctx),
            plan::read_tenant(
                &graph,
                unique.as_deref(),
                self.inner.cfg.token_app_client_id.as_deref(),
                &ctx
            )
        );
        let (perms, st) = (perms?, st?);
        let token_app = st.token_app_name.clone().unwrap_or_else(|| {
            token_app_name(&self.inner.cfg.server_name, &self.inner.cfg.provider)
        });
        let plan = plan::build(
            admin,
            &req.app_name,
            unique.unwrap_or_default(),
            profile,
            &perms,
            &st,
            &token_app,
        );
        let seed = Seed {
            perms,
            token_apps: st.token_apps,
            token_app_name: st.token_app_name,
        };
        Ok((plan, seed))
    }
}
