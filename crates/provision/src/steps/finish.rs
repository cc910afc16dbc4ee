//! The last steps: removing the temporary `<server>-<provider>-token` enterprise app, and the
//! client-credentials check that the new app really authenticates with its secret.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Change, Run, StepOutcome, ids, sts_meta};
use crate::audit::{self, EntryParts, Phase, Target, change};
use crate::error::ProvisionError;
use crate::plan::token_app_name;

impl Run {
    /// Deletes the temporary enterprise app: the service principal of the provider's token app
    /// (found by `appId`; it carries the provider app's own name); none found = done.
    pub async fn remove_token_app(&self) -> Result<StepOutcome, ProvisionError> {
        let Some(client_id) = self.inner.token_app_client_id.clone() else {
            return Ok(StepOutcome::unchanged(
                "no token app client id configured; nothing to look for",
            ));
        };
        let name = token_app_name(&self.inner.server_name, &self.inner.provider);
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
                kind: "servicePrincipal",
                id: Some(sp_id.clone()),
                display_name: name.clone(),
            };
            let graph = &self.graph;
            let id = sp_id;
            let res = self
                .change(
                    Change {
                        step: ids::TOKEN_APP,
                        action: "temporary_app.delete",
                        target,
                        changes: json!([change("appId", json!(app_id), Value::Null)]),
                        after_create: false,
                    },
                    |ctx| async move { graph.delete_service_principal(&id, &ctx).await },
                    |_| (None, Value::Null),
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
            .open(&rec.id, "client_secret", &secret.sealed)?;
        let crid = Uuid::new_v4();
        let crid_s = crid.to_string();
        let target = Target {
            kind: "application",
            id: rec.app_object_id.clone(),
            display_name: rec.app_name.clone(),
        };
        let changes = json!([change(
            "clientCredentials",
            Value::Null,
            json!({
                "key_id": secret.key_id,
                "scope": self.inner.verify_scope,
            })
        )]);
        let scope = &self.scope;
        let log = &self.inner.audit;
        let parts = |phase| EntryParts {
            action: "authentication.verify",
            phase,
            target: &target,
            changes: changes.clone(),
            graph_request_id: None,
            correlation_id: &crid_s,
            error: None,
        };
        self.check_not_stopping()?;
        audit::append(log, scope, parts(Phase::Intent)).await?;
        let ctx = self.op_ctx(ids::VERIFY, crid, true);
        let result = self
            .inner
            .entra
            .sts()
            .client_credentials(
                &rec.tenant_id,
                &client_id,
                &value,
                &self.inner.verify_scope,
                &ctx,
            )
            .await;
        match result {
            Ok(tokens) => {
                let meta = sts_meta(&crid_s, tokens.request_id.clone());
                let seq = audit::append(
                    log,
                    scope,
                    EntryParts {
                        graph_request_id: meta.request_id.as_deref(),
                        ..parts(Phase::Succeeded)
                    },
                )
                .await?;
                Ok(StepOutcome {
                    detail: format!(
                        "client {client_id} authenticates with secret {}",
                        secret.key_id
                    ),
                    audit_seqs: vec![seq],
                })
            }
            Err(e) => {
                let text = e.to_string();
                let _ = audit::append(
                    log,
                    scope,
                    EntryParts {
                        error: Some(&text),
                        ..parts(Phase::Failed)
                    },
                )
                .await;
                Err(ProvisionError::entra(ids::VERIFY, e))
            }
        }
    }
}
