//! App registration (uniqueName upsert), service principal (check before create) and client
//! secret (orphans from an interrupted earlier attempt are removed first).

use entra_client::graph::{ApplicationSpec, RequiredResourceAccess, ResourceAccess};
use serde_json::{Value, json};

use super::{Change, Run, StepOutcome, ids};
use onboard_core::Purpose;
use onboard_core::audit::{Action, Target, TargetKind, change, set};
use onboard_core::permissions::ResolvedPermission;
use onboard_core::roles::Right;

use crate::error::ProvisionError;
use crate::store::StoredSecret;

/// Label put on our secrets, so a retry can recognise one it made but never recorded.
pub(crate) fn secret_label(onboarding_id: &str) -> String {
    format!("onboard:{onboarding_id}")
}

/// How often the secret step adds its secret again after an answer was lost.
const LOST_SECRET_ATTEMPTS: u32 = 3;

impl Run {
    /// Upserts the single-tenant app by `uniqueName`, asking for the profile's permissions.
    pub async fn app_registration(
        &self,
        perms: &[ResolvedPermission],
    ) -> Result<StepOutcome, ProvisionError> {
        let rec = self.snapshot().await;
        let mut rra: Vec<RequiredResourceAccess> = Vec::new();
        for p in perms {
            let app_id = p.permission.resource.app_id();
            let access = ResourceAccess {
                id: p.app_role_id.clone(),
                kind: "Role".into(),
            };
            match rra.iter_mut().find(|r| r.resource_app_id == app_id) {
                Some(r) => r.resource_access.push(access),
                None => rra.push(RequiredResourceAccess {
                    resource_app_id: app_id.to_owned(),
                    resource_access: vec![access],
                }),
            }
        }
        // An admin who cannot grant the Microsoft Graph permissions hands them off; Microsoft's
        // admin-consent page for the app then needs a reply address registered on it.
        let reply = self
            .inner
            .cfg
            .consent_redirect_uri
            .clone()
            .filter(|_| rec.lacking.contains(&Right::GrantGraphAppRoles));
        let mut spec = ApplicationSpec {
            display_name: rec.app_name.clone(),
            sign_in_audience: Some("AzureADMyOrg".into()),
            required_resource_access: rra,
            ..Default::default()
        };
        let mut changes = vec![
            set("displayName", json!(rec.app_name)),
            set("uniqueName", json!(rec.unique_name)),
            set("signInAudience", json!("AzureADMyOrg")),
            set(
                "requiredResourceAccess",
                json!(perms.iter().map(|p| p.key()).collect::<Vec<_>>()),
            ),
        ];
        if let Some(uri) = &reply {
            spec.extra
                .insert("web".into(), json!({ "redirectUris": [uri] }));
            changes.push(set("web.redirectUris", json!([uri])));
        }
        let target = Target {
            kind: TargetKind::Application,
            id: rec.app_object_id.clone(),
            display_name: Some(rec.app_name.clone()),
        };
        let graph = &self.graph;
        let unique = rec.unique_name.clone();
        let changed = self
            .change(
                Change {
                    step: ids::APP,
                    action: Action::AppRegistrationCreate,
                    target,
                    changes,
                    after_create: false,
                },
                |ctx| async move { graph.upsert_application(&unique, &spec, &ctx).await },
                |o| {
                    (
                        Some(o.application.id.clone()),
                        vec![
                            set("appId", json!(o.application.app_id)),
                            set("created", json!(o.created)),
                        ],
                    )
                },
            )
            .await;
        let (out, seq) = match changed {
            Ok(v) => v,
            Err(e) => return Err(self.explain_unique_name_taken(e).await),
        };
        let app = out.application;
        self.note(|r| {
            r.app_object_id = Some(app.id.clone());
            r.client_id = Some(app.app_id.clone());
            r.fresh_app = out.created;
            // Made now, or maybe by an earlier send or attempt whose answer never came.
            let earlier = rec.app_object_id.is_none() && rec.attempted.contains(ids::APP);
            r.app_may_be_new = out.created || out.retried || earlier;
            if r.app_may_be_new {
                r.made_at_ms = Some(onboard_core::time::now_ms());
            }
            r.consent_redirect_uri = reply;
        })
        .await;
        let verb = if out.created {
            "created"
        } else {
            "already existed; updated"
        };
        Ok(StepOutcome {
            detail: format!("application {} (client id {}) {verb}", app.id, app.app_id),
            audit_seqs: vec![seq],
        })
    }

    /// Finds the app's service principal, or creates it (retrying replication lag).
    pub async fn service_principal(&self) -> Result<StepOutcome, ProvisionError> {
        let rec = self.snapshot().await;
        let client_id = rec
            .client_id
            .clone()
            .ok_or_else(|| ProvisionError::Store("service principal step without an app".into()))?;
        if self.must_check(ids::SP).await {
            let existing = self
                .graph
                .find_service_principal_by_app_id(&client_id, &self.read_ctx(ids::SP, false))
                .await
                .map_err(|e| ProvisionError::entra(ids::SP, e))?
                .value;
            if let Some(sp) = existing {
                self.note(|r| r.sp_id = Some(sp.id.clone())).await;
                return Ok(StepOutcome::unchanged(format!(
                    "service principal {} already exists",
                    sp.id
                )));
            }
        }
        let target = Target {
            kind: TargetKind::ServicePrincipal,
            id: None,
            display_name: Some(rec.app_name.clone()),
        };
        let graph = &self.graph;
        let cid = client_id.clone();
        let (sp, seq) = self
            .change(
                Change {
                    step: ids::SP,
                    action: Action::ServicePrincipalCreate,
                    target,
                    changes: vec![set("appId", json!(client_id))],
                    // A new app may not have replicated yet ("no backing application").
                    after_create: self.app_may_lag().await,
                },
                |ctx| async move { graph.create_service_principal(&cid, &ctx).await },
                |sp| (Some(sp.id.clone()), vec![]),
            )
            .await?;
        self.note(|r| {
            r.sp_id = Some(sp.id.clone());
            r.made_at_ms = Some(onboard_core::time::now_ms());
        })
        .await;
        Ok(StepOutcome {
            detail: format!("service principal {} created", sp.id),
            audit_seqs: vec![seq],
        })
    }

    /// Adds the client secret and stores it sealed. Secrets with our label that are not the
    /// recorded one come from an attempt that crashed before recording: their value is lost, so
    /// they are removed (audited) before the new one is added.
    pub async fn client_secret(&self) -> Result<StepOutcome, ProvisionError> {
        let rec = self.snapshot().await;
        let (Some(app_oid), Some(_)) = (rec.app_object_id.clone(), rec.client_id.clone()) else {
            return Err(ProvisionError::Store("secret step without an app".into()));
        };
        if let Some(s) = &rec.secret {
            return Ok(StepOutcome::unchanged(format!(
                "secret {} already recorded",
                s.key_id
            )));
        }
        let label = secret_label(&rec.id);
        let mut seqs = Vec::new();
        if self.must_check(ids::SECRET).await {
            seqs = self.remove_orphan_secrets(&app_oid, &label).await?;
        }
        let end = self.inner.secret_end_date_time();
        let target = Target {
            kind: TargetKind::PasswordCredential,
            id: None,
            display_name: Some(label.clone()),
        };
        let graph = &self.graph;
        let mut lost = 0;
        let (pw, seq) = loop {
            let (aoid, lbl, end2) = (app_oid.clone(), label.clone(), end.clone());
            let attempt = self
                .change(
                    Change {
                        step: ids::SECRET,
                        action: Action::ClientSecretAdd,
                        target: target.clone(),
                        changes: vec![
                            set("passwordCredential.displayName", json!(label)),
                            set("passwordCredential.endDateTime", json!(end)),
                        ],
                        // A 404 is lag only on an app this onboarding just made (§6).
                        after_create: self.app_may_lag().await,
                    },
                    |ctx| async move {
                        graph
                            .add_password(&aoid, Some(&lbl), end2.as_deref(), &ctx)
                            .await
                    }, // Only key id and hint and expiry: never the value.
                    |pw| {
                        (
                            Some(pw.info.key_id.clone()),
                            vec![
                                set("keyId", json!(pw.info.key_id)),
                                set("hint", json!(pw.info.hint)),
                                set("endDateTime", json!(pw.info.end_date_time)),
                            ],
                        )
                    },
                )
                .await;
            match attempt {
                Ok(added) => break added,
                // The answer was lost (500/502/504, a timeout): the secret may exist, but its
                // value is gone with the answer. It carries our label, so it is an orphan like
                // a crashed attempt's: after the wait Microsoft asks for (its `Retry-After`,
                // else the backoff step), removed (audited), then the secret is added again.
                Err(ProvisionError::Entra { source, .. })
                    if source.is_unanswered_write() && lost < LOST_SECRET_ATTEMPTS =>
                {
                    lost += 1;
                    let ctx = self.read_ctx(ids::SECRET, false);
                    graph
                        .wait_after_lost_answer("add_password", &ctx, lost, &source)
                        .await;
                    seqs.extend(self.remove_orphan_secrets(&app_oid, &label).await?);
                }
                Err(e) => return Err(e),
            }
        };
        seqs.push(seq);
        let sealed = self
            .inner
            .key
            .seal(&rec.id, Purpose::ClientSecret, &pw.secret_text)?;
        let stored = StoredSecret {
            key_id: pw.info.key_id.clone(),
            hint: pw.info.hint.clone(),
            end_date_time: pw.info.end_date_time.clone(),
            sealed,
        };
        self.note(|r| r.secret = Some(stored)).await;
        Ok(StepOutcome {
            detail: format!(
                "secret {} added (expires {})",
                pw.info.key_id,
                pw.info
                    .end_date_time
                    .as_deref()
                    .unwrap_or("per tenant default")
            ),
            audit_seqs: seqs,
        })
    }

    /// Removes secrets labelled `label` (ours, from an attempt that crashed before recording
    /// the value, which is lost); returns the audit indexes of the removals.
    async fn remove_orphan_secrets(
        &self,
        app_oid: &str,
        label: &str,
    ) -> Result<Vec<u64>, ProvisionError> {
        let mut seqs = Vec::new();
        let app = self
            .graph
            .get_application(
                app_oid,
                &self.read_ctx(ids::SECRET, self.app_may_lag().await),
            )
            .await
            .map_err(|e| ProvisionError::entra(ids::SECRET, e))?
            .value;
        for orphan in app
            .password_credentials
            .iter()
            .filter(|p| p.display_name.as_deref() == Some(label))
        {
            let target = Target {
                kind: TargetKind::PasswordCredential,
                id: Some(orphan.key_id.clone()),
                display_name: Some(label.to_owned()),
            };
            let graph = &self.graph;
            let (aoid, kid) = (app_oid.to_owned(), orphan.key_id.clone());
            let ((), seq) = self
                .change(
                    Change {
                        step: ids::SECRET,
                        action: Action::ClientSecretRemove,
                        target,
                        changes: vec![
                            change("keyId", json!(orphan.key_id), Value::Null),
                            change("hint", json!(orphan.hint), Value::Null),
                        ],
                        after_create: self.app_may_lag().await,
                    },
                    |ctx| async move { graph.remove_password(&aoid, &kid, &ctx).await },
                    |_| (None, vec![]),
                )
                .await?;
            seqs.push(seq);
        }
        Ok(seqs)
    }

    /// Makes the app's service principal an owner of the app (self-rotating profiles), so the
    /// app can later change its own secrets with `Application.ReadWrite.OwnedBy`.
    pub async fn app_owner(&self) -> Result<StepOutcome, ProvisionError> {
        let rec = self.snapshot().await;
        let (Some(app_oid), Some(sp_id)) = (rec.app_object_id.clone(), rec.sp_id.clone()) else {
            return Err(ProvisionError::Store(
                "owner step without app and service principal".into(),
            ));
        };
        if self.must_check(ids::OWNER).await {
            let owners = self
                .graph
                .list_application_owners(
                    &app_oid,
                    &self.read_ctx(ids::OWNER, self.app_may_lag().await),
                )
                .await
                .map_err(|e| ProvisionError::entra(ids::OWNER, e))?
                .value;
            if owners.iter().any(|o| o.id.eq_ignore_ascii_case(&sp_id)) {
                return Ok(StepOutcome::unchanged(format!(
                    "service principal {sp_id} already owns the app"
                )));
            }
        }
        let target = Target {
            kind: TargetKind::Application,
            id: Some(app_oid.clone()),
            display_name: Some(rec.app_name.clone()),
        };
        let graph = &self.graph;
        let (aoid, owner) = (app_oid.clone(), sp_id.clone());
        let ((), seq) = self
            .change(
                Change {
                    step: ids::OWNER,
                    action: Action::AppOwnerAdd,
                    target,
                    changes: vec![set("owners", json!([sp_id]))],
                    // Either object may be new: a 404 for one this run made may be lag.
                    after_create: self.app_may_lag().await || self.sp_may_lag().await,
                },
                |ctx| async move { graph.add_application_owner(&aoid, &owner, &ctx).await },
                |_| (None, vec![]),
            )
            .await?;
        Ok(StepOutcome {
            detail: format!("service principal {sp_id} owns the app (self-rotation)"),
            audit_seqs: vec![seq],
        })
    }

    /// Removes the reply address the app was given for Microsoft's admin-consent page (the
    /// wait it served is over); none recorded = done.
    pub async fn remove_consent_reply(&self) -> Result<StepOutcome, ProvisionError> {
        let rec = self.snapshot().await;
        let (Some(uri), Some(app_oid)) = (rec.consent_redirect_uri, rec.app_object_id) else {
            return Ok(StepOutcome::unchanged(
                "the app has no admin-consent reply address",
            ));
        };
        let target = Target {
            kind: TargetKind::Application,
            id: Some(app_oid.clone()),
            display_name: Some(rec.app_name.clone()),
        };
        let graph = &self.graph;
        let patch = json!({ "web": { "redirectUris": [] } });
        let ((), seq) = self
            .change(
                Change {
                    step: ids::CONSENT_REPLY,
                    action: Action::AppRegistrationUpdate,
                    target,
                    changes: vec![change("web.redirectUris", json!([uri]), json!([]))],
                    after_create: false,
                },
                |ctx| async move { graph.update_application(&app_oid, &patch, &ctx).await },
                |_| (None, vec![]),
            )
            .await?;
        self.note(|r| r.consent_redirect_uri = None).await;
        Ok(StepOutcome {
            detail: format!("removed the admin-consent reply address {uri} from the app"),
            audit_seqs: vec![seq],
        })
    }
}
