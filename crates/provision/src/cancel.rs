//! Cancelling an onboarding: stop its run, undo what it made (audited), one undo at a time.

use onboard_core::audit::{Action, AuditEntry, Phase, Target, TargetKind};
use secrecy::SecretString;

use crate::engine::{Engine, Inner};
use crate::error::ProvisionError;
use crate::events::EventKind;
use crate::hand_off::Stored;
use crate::store::Status;
use crate::view::Onboarding;

impl Engine {
    /// Stops the onboarding (if running) and removes what it created, audited; returns the
    /// final state. Uses the admin sign-in the onboarding was started with, its access token
    /// renewed with its refresh token.
    pub async fn cancel(&self, id: &str, actor: &str) -> Result<Onboarding, ProvisionError> {
        self.cancel_as(id, actor, None).await
    }

    /// [`Engine::cancel`] with `admin`, another admin's delegated Graph token, when given: a
    /// completed onboarding's own sign-in cannot be renewed (the temporary app its refresh
    /// token was issued to is gone), so undoing it later needs a new admin sign-in.
    pub async fn cancel_as(
        &self,
        id: &str,
        actor: &str,
        admin: Option<SecretString>,
    ) -> Result<Onboarding, ProvisionError> {
        let _undoing = Undoing::claim(&self.inner, id)?;
        let handle = self
            .inner
            .running
            .lock()
            .map_err(|_| ProvisionError::Store("running map poisoned".into()))?
            .remove(id);
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
        let mut rec = self
            .inner
            .store
            .get(id)?
            .ok_or_else(|| ProvisionError::NotFound(id.to_owned()))?;
        if rec.status == Status::Cancelled {
            return Ok(Onboarding::from(&rec));
        }
        // A cancelling admin's own token is used as it is. The record's sign-in may be days
        // old (a completed onboarding undone, a wait that outlived the access token): its
        // refresh token is redeemed for a working access token, and again as that one runs
        // out (an undo of many changes may outlive it).
        let graph = match admin {
            Some(token) => self.token_graph(token),
            None => {
                let token = self.fresh_admin_token(&mut rec, Stored::Always).await?;
                self.record_graph(&rec, token)?
            }
        };
        if rec.status == Status::AwaitingAdmin {
            // The wait's end is on the log first.
            crate::hand_off::end(&self.inner, &mut rec, actor, false).await?;
        }
        if rec.status != Status::Cancelling {
            // A failed run's error is not the undo's: from here `error` is a failed undo's
            // (GetOnboarding's `error` while cancelling); a retried undo keeps the last one.
            rec.error = None;
        }
        rec.status = Status::Cancelling;
        self.inner.store.put(&rec).await?;
        let run = self.run_for(rec, graph, actor, None, None)?;
        let target =
            Target::new(TargetKind::Onboarding, id.to_owned()).named(run.snapshot().await.app_name);
        let entry = |phase| {
            AuditEntry::new(Action::OnboardingCancel, phase, &run.scope)
                .with_target(target.clone())
                .with_request_ids(None, Some(id.to_owned()))
        };
        entry(Phase::Intent).append(&self.inner.cfg.audit).await?;
        run.emitter.emit(
            "cancel",
            EventKind::Started {
                description: "undo the changes made".into(),
            },
        );
        match run.undo().await {
            Ok(out) => {
                // The outcome is on the log before the state says Cancelled: whoever reads
                // Cancelled finds the entry that attests it. (A crash in between leaves the
                // record Cancelling; the restart's cancel finds nothing left to undo and
                // writes its own intent and outcome, as `system`.)
                entry(Phase::Succeeded)
                    .append(&self.inner.cfg.audit)
                    .await?;
                run.update(|r| {
                    r.status = Status::Cancelled;
                    r.error = None;
                    r.forget_sign_in();
                })
                .await?;
                run.emitter.emit(
                    "cancel",
                    EventKind::Done {
                        detail: out.detail.clone(),
                        audit_seqs: out.audit_seqs,
                    },
                );
                run.emitter
                    .emit("", EventKind::Cancelled { detail: out.detail });
                Ok(Onboarding::from(&run.snapshot().await))
            }
            Err(e) => {
                let text = e.to_string();
                // Best effort: the intent entry already shows the attempt.
                let _ = entry(Phase::Failed)
                    .with_error(text.clone())
                    .append(&self.inner.cfg.audit)
                    .await;
                run.emitter.emit("cancel", EventKind::failed(&e));
                // Terminal for the streams following it: the onboarding stays being cancelled
                // (another cancel retries the undo; a Watch from the next index follows that).
                run.emitter.emit("", EventKind::aborted(&e));
                run.update(|r| r.error = Some(text)).await?;
                Err(e)
            }
        }
    }
}

/// Marks an onboarding as being undone for as long as it lives.
struct Undoing<'a> {
    /// The engine state holding the set.
    inner: &'a Inner,
    /// The onboarding.
    id: String,
}

impl<'a> Undoing<'a> {
    /// Claims `id`'s undo; refused while another runs.
    fn claim(inner: &'a Inner, id: &str) -> Result<Self, ProvisionError> {
        let mut set = inner
            .undoing
            .lock()
            .map_err(|_| ProvisionError::Store("undo set poisoned".into()))?;
        if !set.insert(id.to_owned()) {
            return Err(ProvisionError::InvalidState {
                id: id.to_owned(),
                state: Status::Cancelling.as_str().into(),
                what: "it is being cancelled already; Watch it to see the end".into(),
            });
        }
        Ok(Self {
            inner,
            id: id.to_owned(),
        })
    }
}

impl Drop for Undoing<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.inner.undoing.lock() {
            set.remove(&self.id);
        }
    }
}
