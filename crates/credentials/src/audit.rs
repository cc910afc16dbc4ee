//! Audit entries for day-two changes, through `onboard_core`'s typed entry and its one
//! intent → call → outcome wrapper: the same fields as day one, with the registration id as
//! `onboarding_id`. Intent first (if it cannot be written, nothing is changed), then the call,
//! then `succeeded` / `failed`. No secret value ever goes in: secrets are named by key id,
//! hint and expiry.

use std::future::Future;

use audit_log::AuditLog;
use entra_client::{EntraError, OpContext, Reply};
use onboard_core::audit::{
    self, Action, AuditEntry, Change, Described, EntraChange, Phase, Scope, Target, TargetKind,
};

use crate::error::CredentialsError;

/// Writes the entries of one operation on one registration.
pub(crate) struct Auditor<'a> {
    /// The signed log.
    pub log: &'a AuditLog,
    /// Actor, tenant, registration id, service and client id of every entry.
    pub scope: Scope,
    /// The `correlation_id` of the entries [`Auditor::entry`] writes: one per operation, so an
    /// intent and its outcome pair up (a rotation's is its id, which outlives a restart).
    /// Entra changes ([`Auditor::change`]) carry their own call's `client-request-id`.
    pub correlation: String,
}

/// One Entra change as the audit log describes it.
pub(crate) struct ChangeSpec {
    /// What is done, e.g. [`Action::PasswordCredentialCreate`].
    pub action: Action,
    /// The object changed.
    pub target: Target,
    /// Intended property changes.
    pub changes: Vec<Change>,
    /// Whether the call depends on something just made (replication-lag retries on).
    pub after_create: bool,
}

impl<'a> Auditor<'a> {
    /// An auditor for one operation on `log` with `scope`: a new correlation id.
    pub fn new(log: &'a AuditLog, scope: Scope) -> Self {
        Self {
            log,
            scope,
            correlation: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The same auditor with `id` as the correlation id of its entries.
    pub fn correlated(self, id: &str) -> Self {
        Self {
            correlation: id.to_owned(),
            ..self
        }
    }

    /// Appends one entry with the operation's correlation id; returns its index once durable.
    pub async fn entry(
        &self,
        action: Action,
        phase: Phase,
        target: &Target,
        changes: Vec<Change>,
        error: Option<&str>,
    ) -> Result<u64, CredentialsError> {
        let mut e = AuditEntry::new(action, phase, &self.scope)
            .with_target(target.clone())
            .with_changes(changes)
            .with_request_ids(None, Some(self.correlation.clone()));
        e.error = error.map(str::to_owned);
        Ok(e.append(self.log).await?)
    }

    /// Records that `action` on `target` failed with `err`; the entry's index once durable.
    pub async fn failed(
        &self,
        action: Action,
        target: &Target,
        changes: Vec<Change>,
        err: &CredentialsError,
    ) -> Result<u64, CredentialsError> {
        let text = err.to_string();
        self.entry(action, Phase::Failed, target, changes, Some(&text))
            .await
    }

    /// Intent → call → outcome through [`audit::audited_change`]. Returns the value and the
    /// outcome's index; a failed call is recorded (best effort) and returned as
    /// [`CredentialsError::Entra`].
    pub async fn change<T, Fut>(
        &self,
        spec: ChangeSpec,
        call: impl FnOnce(OpContext) -> Fut,
        describe: impl FnOnce(&T) -> Vec<Change>,
    ) -> Result<(T, u64), CredentialsError>
    where
        Fut: Future<Output = Result<Reply<T>, EntraError>>,
    {
        let (action, after_create) = (spec.action, spec.after_create);
        audit::audited_change(
            self.log,
            &self.scope,
            spec.into(),
            async { Ok::<(), CredentialsError>(()) },
            |crid| {
                let ctx = OpContext::new().with_client_request_id(crid);
                if after_create {
                    ctx.after_create()
                } else {
                    ctx
                }
            },
            call,
            |v| Described {
                id: None,
                changes: describe(v),
            },
        )
        .await
        .map_err(|e| e.into_error(|e| CredentialsError::entra(action.as_str(), e)))
    }
}

impl From<ChangeSpec> for EntraChange {
    fn from(s: ChangeSpec) -> Self {
        EntraChange {
            action: s.action,
            target: s.target,
            changes: s.changes,
        }
    }
}

/// A target of kind `kind`.
/// The registration's application as an audit target.
pub(crate) fn app_target(reg: &crate::model::Registration) -> Target {
    target(
        TargetKind::Application,
        reg.app_object_id.clone(),
        &reg.display_name,
    )
}

pub(crate) fn target(kind: TargetKind, id: Option<String>, name: &str) -> Target {
    Target {
        kind,
        id,
        display_name: Some(name.to_owned()),
    }
}
