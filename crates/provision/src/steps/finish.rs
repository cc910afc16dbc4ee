//! The last steps: removing the temporary `<server>-<provider>-token` enterprise app, and the
//! client-credentials check that the new app really authenticates with its secret.

use entra_client::Reply;
use onboard_core::Purpose;
use onboard_core::audit::{Action, Target, TargetKind, change, set};
use onboard_core::platform::token_app_name;
use serde_json::{Value, json};

use super::{Change, Run, StepOutcome, ids, sts_meta};
use crate::error::ProvisionError;

impl Run {
    /// Deletes the temporary enterprise app: the service principal of the provider's token app
    /// (found by `appId`; it carries the provider app's own name); none found = done.
    pub async fn remove_token_app(&self) -> Result<StepOutcome, ProvisionError> {
        let Some(client_id) = self.inner.cfg.token_app_client_id.clone() else {
            return Ok(StepOutcome::unchanged(
                "no token app client id configured; nothing to look for",
            ));
        };
        let name = token_app_name(&self.inner.cfg.server_name, &self.inner.cfg.provider);
        // A fresh run uses what the plan found moments ago; a resumed or repeated one reads
        // again. An app deleted in between answers 404, which counts as removed.
        let seeded = match &self.seed {
            Some(seed) if !self.rec.lock().await.attempted.contains(ids::TOKEN_APP) => {
                Some((seed.token_apps.clone(), seed.token_app_name.clone()))
            }
            _ => None,
        };
        let (found, name): (Vec<(String, String)>, String) = match seeded {
            Some((found, shown)) => (found, shown.unwrap_or(name)),
            None => {
                let sp = self
                    .graph
                    .find_service_principal_by_app_id(
                        &client_id,
                        &self.read_ctx(ids::TOKEN_APP, false),
                    )
                    .await
                    .map_err(|e| ProvisionError::entra(ids::TOKEN_APP, e))?
                    .value;
                let shown = sp
                    .as_ref()
                    .and_then(|s| s.display_name.clone())
                    .unwrap_or(name);
                (sp.into_iter().map(|s| (s.id, s.app_id)).collect(), shown)
            }
        };
        if found.is_empty() {
            return Ok(StepOutcome::unchanged(format!(
                "the temporary app (appId {client_id}) is not present"
            )));
        }
        let mut seqs = Vec::new();
        for (sp_id, app_id) in found {
            let target = Target {
                kind: TargetKind::ServicePrincipal,
                id: Some(sp_id.clone()),
                display_name: Some(name.clone()),
            };
            let graph = &self.graph;
            let id = sp_id;
            let res = self
                .change(
                    Change {
                        step: ids::TOKEN_APP,
                        action: Action::TemporaryAppDelete,
                        target,
                        changes: vec![change("appId", json!(app_id), Value::Null)],
                        after_create: false,
                    },
                    |ctx| async move { graph.delete_service_principal(&id, &ctx).await },
                    |_| (None, vec![]),
                )
                .await;
            match res {
                Ok(((), seq)) => seqs.push(seq),
                // Another onboarding of the same tenant removed it first: the goal is reached.
                Err(ProvisionError::Entra { source, .. }) if source.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(StepOutcome {
            detail: format!("{name} removed"),
            audit_seqs: seqs,
        })
    }

    /// Gets an app-only Graph token with the new secret, retrying while the new credential
    /// propagates (AADSTS700016 / 7000215). Audited as `authentication.verify`.
    pub async fn verify_authentication(&self) -> Result<StepOutcome, ProvisionError> {
        let rec = self.snapshot().await;
        let (Some(client_id), Some(secret)) = (rec.client_id.clone(), rec.secret.clone()) else {
            return Err(ProvisionError::Store(
                "verify step without app and secret".into(),
            ));
        };
        let value = self
            .inner
            .key
            .open(&rec.id, Purpose::ClientSecret, &secret.sealed)?;
        let target =
            Target::new(TargetKind::Application, rec.app_object_id.clone()).named(&rec.app_name);
        let changes = vec![set(
            "clientCredentials",
            json!({"key_id": secret.key_id, "scope": self.inner.cfg.verify_scope}),
        )];
        let sts = self.inner.cfg.entra.sts();
        let (tenant, scope) = (&rec.tenant_id, &self.inner.cfg.verify_scope);
        let ((), seq) = self
            .change(
                Change {
                    step: ids::VERIFY,
                    action: Action::AuthenticationVerify,
                    target,
                    changes,
                    after_create: true,
                },
                |ctx| async move {
                    let tokens = sts
                        .client_credentials(tenant, &client_id, &value, scope, &ctx)
                        .await?;
                    Ok(Reply {
                        value: (),
                        meta: sts_meta(
                            &ctx.client_request_id.to_string(),
                            tokens.request_id.clone(),
                        ),
                    })
                },
                |()| (None, vec![]),
            )
            .await?;
        Ok(StepOutcome {
            detail: format!(
                "client {} authenticates with secret {}",
                rec.client_id.as_deref().unwrap_or_default(),
                secret.key_id
            ),
            audit_seqs: vec![seq],
        })
    }
}
