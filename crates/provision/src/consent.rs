//! The admin-consent variant of the hand-off. When the first admin could not grant the
//! Microsoft Graph permissions, the app got a reply address and the wait offers Microsoft's
//! admin-consent page for it ([`crate::hand_off::consent_url`]): a Global Administrator or
//! Privileged Role Administrator who opens it grants exactly what the app's
//! `requiredResourceAccess` lists, without signing in to Onboard. Microsoft tells Onboard
//! nothing (the browser's redirect back is not proof of anything), so the engine looks: it
//! reads the app's grants as the first admin, and when they are there it records them
//! (`admin_consent.observed`, actor [`CONSENT_ACTOR`]) and goes on. With nothing else left the
//! run continues as the first admin (the remaining steps, the reply address removed, the
//! temporary app removed); with a directory role still left (admin consent cannot assign one)
//! the wait goes on for the link, with the shorter list.

use std::time::Duration;

use entra_client::{EntraError, OpContext};
use onboard_core::audit::{Action, AuditEntry, Phase, Target, TargetKind};
use onboard_core::permissions::resolve_permissions;
use onboard_core::roles::Right;
use secrecy::SecretString;

use crate::driver::scope_of;
use crate::engine::Engine;
use crate::error::ProvisionError;
use crate::hand_off::{AdminToken, Stored, consent_url, left_changes, waiting_event};
use crate::store::{OnboardingRecord, Status, WaitEndHow};

/// The audit actor of grants made on Microsoft's admin-consent page: Microsoft does not say
/// which admin it was (the tenant's own sign-in and audit logs do).
pub const CONSENT_ACTOR: &str = "entra:admin-consent";

impl Engine {
    /// Wakes [`Engine::consent_nudged`] at once: an admin came back from Microsoft's page.
    pub fn nudge_consents(&self) {
        self.inner.consent_nudge.notify_one();
    }

    /// Waits for a nudge, or `at_most`.
    pub async fn consent_nudged(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.inner.consent_nudge.notified()).await;
    }

    /// Whether any onboarding waits with Microsoft's admin-consent page on offer.
    pub fn consent_pending(&self) -> Result<bool, ProvisionError> {
        Ok(self.inner.store.all()?.iter().any(offers_consent))
    }

    /// Looks, for every onboarding waiting with the admin-consent page on offer, whether the
    /// permissions were granted there; records those that were and moves the onboarding on.
    /// Returns the ids that moved on. One that cannot be read now is tried again next time.
    pub async fn check_admin_consents(&self) -> Result<Vec<String>, ProvisionError> {
        let mut moved = Vec::new();
        for rec in self.inner.store.all()? {
            if !offers_consent(&rec) || self.is_running(&rec.id) {
                continue;
            }
            let id = rec.id.clone();
            match self.check_one(rec).await {
                Ok(true) => moved.push(id),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(onboarding_id = %id, error = %e, "admin consent not checked");
                }
            }
        }
        Ok(moved)
    }

    /// One waiting onboarding; `rec` is read again under the lock before anything is decided.
    async fn check_one(&self, mut rec: OnboardingRecord) -> Result<bool, ProvisionError> {
        let sp_id = rec.sp_id.clone().ok_or_else(|| {
            ProvisionError::Store("a hand-off without a service principal".into())
        })?;
        // The stored access token first; a new one from the refresh token once it has expired.
        let mut token = AdminToken::renewable(self.admin_token(&rec)?);
        let mut refreshed = false;
        let granted = match self.assignments(&token.access, &sp_id).await {
            Err(EntraError::Graph(g)) if g.status == 401 => {
                token = self.fresh_admin_token(&mut rec, Stored::WhileValid).await?;
                refreshed = true;
                self.assignments(&token.access, &sp_id).await
            }
            other => other,
        };
        if refreshed {
            self.keep_tokens(&rec).await?;
        }
        let granted = granted.map_err(|e| ProvisionError::entra("admin_consent", e))?;
        // Nothing there that the record does not know: nobody consented yet.
        let known: Vec<&String> = rec.grants.values().collect();
        if granted.iter().all(|(id, _, _)| known.contains(&id)) {
            return Ok(false);
        }
        let graph = self.inner.cfg.entra.graph(token.access.clone());
        let perms = resolve_permissions(&graph, &rec.profile, &OpContext::new()).await?;
        let mut seen = Vec::new();
        for p in &perms {
            if let Some((id, _, _)) = granted.iter().find(|(_, res, role)| {
                res.eq_ignore_ascii_case(&p.resource_sp_id)
                    && role.eq_ignore_ascii_case(&p.app_role_id)
            }) {
                seen.push((p.key(), id.clone()));
            }
        }
        // Decide under the lock Provision takes, on the record as it is now: a privileged
        // admin's Provision (or a cancel) may have moved it meanwhile, and then reads the
        // grants itself.
        let _guard = self.inner.names.lock().await;
        let Some(mut rec) = self
            .inner
            .store
            .get(&rec.id)?
            .filter(|r| offers_consent(r) && !self.is_running(&r.id))
        else {
            return Ok(false);
        };
        seen.retain(|(key, _)| !rec.grants.contains_key(key));
        if seen.is_empty() {
            return Ok(false);
        }
        let keys: Vec<String> = seen.iter().map(|(k, _)| k.clone()).collect();
        AuditEntry::new(
            Action::AdminConsentObserved,
            Phase::Succeeded,
            &scope_of(&rec, CONSENT_ACTOR),
        )
        .with_target(Target::new(TargetKind::ServicePrincipal, sp_id).named(&rec.app_name))
        .with_request_ids(None, Some(rec.id.clone()))
        .with_detail("granted", keys.clone())
        .append(&self.inner.cfg.audit)
        .await?;
        tracing::info!(onboarding_id = %rec.id, granted = ?keys, "admin consent seen");
        rec.grants.extend(seen);
        let Some(mut h) = rec.hand_off.clone() else {
            return Ok(false);
        };
        let snapshot = rec.clone();
        h.rights
            .retain(|r| !left_changes(&snapshot, std::slice::from_ref(r)).is_empty());
        h.left = left_changes(&snapshot, &h.rights);
        h.admin_consent_url = consent_url(&self.inner, &snapshot, &h.rights);
        let first_actor = h.first_actor.clone();
        let done = h.rights.is_empty();
        rec.hand_off = Some(h.clone());
        if done {
            // Everything the first admin lacked is there: their run goes on, and the wait
            // ended with the grants seen (its hand-off links end with it).
            crate::hand_off::note_end(&mut rec, CONSENT_ACTOR, WaitEndHow::Consented);
            rec.status = Status::Running;
            rec.lacking = Vec::new();
            self.inner.store.put(&rec).await?;
            let graph = self.record_graph(&rec, token)?;
            self.spawn(self.run_for(rec, graph, &first_actor, None, None)?)?;
        } else {
            rec.lacking.retain(|r| h.rights.contains(r));
            let graph = self.record_graph(&rec, token)?;
            let run = self.run_for(rec, graph, &first_actor, None, None)?;
            run.update(|_| {}).await?;
            run.emitter.emit("", waiting_event(&h));
        }
        Ok(true)
    }

    /// Stores the admin tokens `rec` holds (just redeemed) into the record as it is now, under
    /// the lock Provision takes, unless it moved on.
    async fn keep_tokens(&self, rec: &OnboardingRecord) -> Result<(), ProvisionError> {
        let _guard = self.inner.names.lock().await;
        if let Some(mut now) = self.inner.store.get(&rec.id)?.filter(offers_consent) {
            now.sealed_admin_token = rec.sealed_admin_token.clone();
            now.admin_token_expires_at = rec.admin_token_expires_at;
            now.sealed_admin_refresh = rec.sealed_admin_refresh.clone();
            self.inner.store.put(&now).await?;
        }
        Ok(())
    }

    /// `(assignment id, resource service principal id, app role id)` of every app role the
    /// service principal holds, read with `token`.
    async fn assignments(
        &self,
        token: &SecretString,
        sp_id: &str,
    ) -> Result<Vec<(String, String, String)>, EntraError> {
        Ok(self
            .inner
            .cfg
            .entra
            .graph(token.clone())
            .list_app_role_assignments(sp_id, &OpContext::new())
            .await?
            .value
            .into_iter()
            .map(|a| (a.id, a.resource_id, a.app_role_id))
            .collect())
    }
}

/// Whether `rec` waits with Microsoft's admin-consent page on offer.
fn offers_consent(rec: &OnboardingRecord) -> bool {
    rec.status == Status::AwaitingAdmin
        && rec.hand_off.as_ref().is_some_and(|h| {
            h.ended.is_none()
                && h.admin_consent_url.is_some()
                && h.rights.contains(&Right::GrantGraphAppRoles)
        })
}
