//! Audit entries for day-two changes, through the provisioning engine's writer
//! (`provision::audit`): the same fields as day one, with the registration id as
//! `onboarding_id`. Intent first (if it cannot be written, nothing is changed), then the call,
//! then `succeeded` / `failed`. No secret value ever goes in: secrets are named by key id,
//! hint and expiry.

use std::future::Future;

use audit_log::AuditLog;
use entra_client::{EntraError, OpContext, Reply};
use provision::audit::{self, AuditScope, EntryParts, Phase, Target};
use serde_json::Value;
use uuid::Uuid;

use crate::error::CredentialsError;

pub use provision::audit::change;

/// Writes the entries of one operation on one registration.
pub(crate) struct Auditor<'a> {
    /// The signed log.
    pub log: &'a AuditLog,
    /// Actor, tenant, registration id and service of every entry.
    pub scope: AuditScope,
}

/// One Entra change as the audit log describes it.
pub(crate) struct ChangeSpec {
    /// Dotted action, e.g. `password_credential.create`.
    pub action: &'static str,
    /// The object changed.
    pub target: Target,
    /// Intended property changes.
    pub changes: Value,
    /// Whether the call depends on something just made (replication-lag retries on).
    pub after_create: bool,
}

impl Auditor<'_> {
    /// Appends one entry; returns its index once durable.
    pub async fn entry(
        &self,
        action: &str,
        phase: Phase,
        target: &Target,
        changes: Value,
        error: Option<&str>,
    ) -> Result<u64, CredentialsError> {
        let crid = Uuid::new_v4().to_string();
        self.entry_with(action, phase, target, changes, None, &crid, error)
            .await
    }

    /// Appends one entry with the call's ids.
    #[allow(clippy::too_many_arguments)]
    pub async fn entry_with(
        &self,
        action: &str,
        phase: Phase,
        target: &Target,
        changes: Value,
        graph_request_id: Option<&str>,
        correlation_id: &str,
        error: Option<&str>,
    ) -> Result<u64, CredentialsError> {
        audit::append(
            self.log,
            &self.scope,
            EntryParts {
                action,
                phase,
                target,
                changes,
                graph_request_id,
                correlation_id,
                error,
            },
        )
        .await
        .map_err(CredentialsError::from)
    }

    /// Intent → call → outcome. Returns the value and the outcome's index; a failed call is
    /// recorded (best effort) and returned as [`CredentialsError::Entra`].
    pub async fn change<T, Fut>(
        &self,
        spec: ChangeSpec,
        call: impl FnOnce(OpContext) -> Fut,
        describe: impl FnOnce(&T) -> Value,
    ) -> Result<(T, u64), CredentialsError>
    where
        Fut: Future<Output = Result<Reply<T>, EntraError>>,
    {
        let crid = Uuid::new_v4();
        let crid_s = crid.to_string();
        let ChangeSpec {
            action,
            target,
            changes,
            after_create,
        } = spec;
        self.entry_with(
            action,
            Phase::Intent,
            &target,
            changes.clone(),
            None,
            &crid_s,
            None,
        )
        .await?;
        let ctx = OpContext::new().with_client_request_id(crid);
        let ctx = if after_create {
            ctx.after_create()
        } else {
            ctx
        };
        match call(ctx).await {
            Ok(Reply { value, meta }) => {
                let extra = describe(&value);
                let seq = self
                    .entry_with(
                        action,
                        Phase::Succeeded,
                        &target,
                        provision::audit::merge_changes(changes, extra),
                        meta.request_id.as_deref(),
                        &crid_s,
                        None,
                    )
                    .await?;
                Ok((value, seq))
            }
            Err(e) => {
                let text = e.to_string();
                // Best effort: an intent without an outcome already shows the attempt.
                let _ = self
                    .entry_with(
                        action,
                        Phase::Failed,
                        &target,
                        changes,
                        e.request_id(),
                        &crid_s,
                        Some(&text),
                    )
                    .await;
                Err(CredentialsError::entra(action, e))
            }
        }
    }
}

/// A target of kind `kind`.
pub(crate) fn target(kind: &'static str, id: Option<String>, name: &str) -> Target {
    Target {
        kind,
        id,
        display_name: name.to_owned(),
    }
}
