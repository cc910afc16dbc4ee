//! Writing entries: [`AuditEntry::append`] for one entry, and [`audited_change`], the one
//! intent → call → outcome wrapper every Entra change goes through.

use std::future::Future;

use audit_log::{AuditLog, PreparedEntry};
use entra_client::{EntraError, OpContext, Reply};
use uuid::Uuid;

use super::Action;
use super::entry::{AuditEntry, Change, Phase, SCHEMA_VERSION, Scope, Target};
use crate::error::CoreError;

impl AuditEntry {
    /// The entry as the log takes it (serialised here, on the caller's thread).
    pub fn prepare(&self) -> Result<PreparedEntry, CoreError> {
        Ok(PreparedEntry::new(SCHEMA_VERSION, &self.to_fields()?)?)
    }

    /// Appends the entry; returns its index once it is durable and covered by a signed
    /// checkpoint. An error means it was not recorded: whatever it describes must not happen
    /// (fail closed).
    pub async fn append(&self, log: &AuditLog) -> Result<u64, CoreError> {
        Ok(log.append_prepared(self.prepare()?).await?.seq)
    }
}

/// One Entra change as the audit log describes it.
#[derive(Debug, Clone)]
pub struct EntraChange {
    /// What is done, e.g. [`Action::ServicePrincipalCreate`].
    pub action: Action,
    /// The object (its id unknown yet for a create's intent).
    pub target: Target,
    /// The intended property changes.
    pub changes: Vec<Change>,
}

/// What a successful call's answer adds to the outcome entry.
#[derive(Debug, Clone, Default)]
pub struct Described {
    /// The target's id, when the answer tells it (a create).
    pub id: Option<String>,
    /// Changes the answer revealed (ids, a created flag), after the intended ones.
    pub changes: Vec<Change>,
}

/// Why an audited change did not complete.
#[derive(Debug)]
pub enum ChangeError<E> {
    /// Nothing was attempted: the intent entry, or the work that must be durable with it,
    /// failed.
    Before(E),
    /// Entra refused or failed; a `failed` entry was written (best effort).
    Entra(EntraError),
    /// The call succeeded but its outcome entry could not be written: the change happened and
    /// is shown only by its intent entry; the caller must not report it done.
    Outcome(CoreError),
}

impl<E: From<CoreError>> ChangeError<E> {
    /// The caller's error: [`Self::Before`]'s as it is, [`Self::Outcome`]'s converted, and
    /// Entra's through `entra` (which names the operation).
    pub fn into_error(self, entra: impl FnOnce(EntraError) -> E) -> E {
        match self {
            ChangeError::Before(e) => e,
            ChangeError::Outcome(e) => e.into(),
            ChangeError::Entra(e) => entra(e),
        }
    }
}

/// One audited Entra change: writes the `intent` entry (with `alongside`, work that must be
/// durable before the call, at the same time; if either fails, the call is not made), makes
/// the call with a fresh client-request-id (the entries' `correlation_id`) and the context
/// `context` builds for it, then writes the `succeeded` entry (with Graph's request id and what
/// `describe` reads from the answer) or, best effort, the `failed` one. Returns the value and
/// the outcome entry's index.
pub async fn audited_change<T, E, Fut>(
    log: &AuditLog,
    scope: &Scope,
    change: EntraChange,
    alongside: impl Future<Output = Result<(), E>>,
    context: impl FnOnce(Uuid) -> OpContext,
    call: impl FnOnce(OpContext) -> Fut,
    describe: impl FnOnce(&T) -> Described,
) -> Result<(T, u64), ChangeError<E>>
where
    E: From<CoreError>,
    Fut: Future<Output = Result<Reply<T>, EntraError>>,
{
    let EntraChange {
        action,
        target,
        changes,
    } = change;
    let crid = Uuid::new_v4();
    let crid_s = crid.to_string();
    let entry = |phase: Phase, target: &Target, changes: Vec<Change>| {
        AuditEntry::new(action, phase, scope)
            .with_target(target.clone())
            .with_changes(changes)
            .with_request_ids(None, Some(crid_s.clone()))
    };
    let intent = entry(Phase::Intent, &target, changes.clone());
    // Both must be durable before the call; they may go to different stores, so at once.
    tokio::try_join!(alongside, async {
        intent.append(log).await.map_err(E::from)
    })
    .map_err(ChangeError::Before)?;
    match call(context(crid)).await {
        Ok(Reply { value, meta }) => {
            let more = describe(&value);
            let target = Target {
                id: more.id.or(target.id),
                ..target
            };
            let mut all = changes;
            all.extend(more.changes);
            let mut done = entry(Phase::Succeeded, &target, all);
            done.graph_request_id = meta.request_id;
            let seq = done.append(log).await.map_err(ChangeError::Outcome)?;
            Ok((value, seq))
        }
        Err(e) => {
            let mut failed = entry(Phase::Failed, &target, changes).with_error(e.to_string());
            failed.graph_request_id = e.request_id().map(str::to_owned);
            // Best effort: if the log is down too, the intent entry without an outcome already
            // shows the change was attempted.
            if let Err(log_err) = failed.append(log).await {
                tracing::error!(action = action.as_str(), error = %log_err,
                    "the failure of an Entra change could not be audited");
            }
            Err(ChangeError::Entra(e))
        }
    }
}
