//! The hand-off to a privileged admin. An Application Administrator may create the app, its
//! service principal and secret and grant other APIs' permissions, but only a Global
//! Administrator or Privileged Role Administrator may grant Microsoft Graph app roles or assign
//! directory roles (entra-reference §3.1). When the signed-in admin lacks those rights the run
//! makes what it may, then the onboarding waits ([`Status::AwaitingAdmin`]), durably, for a
//! second admin to provision the rest. Nobody acting by [`HandOff::expires_at`] undoes it,
//! audited.
//!
//! Audit: `onboarding.hand_off` intent when the wait begins (roles, changes left, expiry), then
//! succeeded (actor: whoever finished it) or failed (expired or cancelled).

use std::sync::Arc;
use std::time::Duration;

use entra_client::OpContext;
use onboard_core::Purpose;
use onboard_core::audit::{Action, AuditEntry, Phase, Target, TargetKind};
use onboard_core::roles::{self, Right};
use onboard_core::time::{format, parse};
use secrecy::SecretString;

use crate::config::Inner;
use crate::driver::scope_of;
use crate::engine::Engine;
use crate::error::ProvisionError;
use crate::events::EventKind;
use crate::plan::Plan;
use crate::steps::Run;
use crate::store::{HandOff, OnboardingRecord, Status, WaitEnd, WaitEndHow};

/// The audit actor of an undo because nobody finished the hand-off in time.
pub const EXPIRY_ACTOR: &str = "system:hand-off-expired";

/// How long a hand-off waits when the engine is not told otherwise: a week.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Names of the roles any one of which grants every right in `rights` (Global Administrator,
/// Privileged Role Administrator for Graph consent and role assignment).
pub fn roles_for(rights: &[Right]) -> Vec<String> {
    let Some((first, rest)) = rights.split_first() else {
        return vec![];
    };
    first
        .granted_by()
        .iter()
        .filter(|id| rest.iter().all(|r| r.granted_by().contains(id)))
        .filter_map(|id| roles::role_name(id))
        .map(str::to_owned)
        .collect()
}

/// The changes of `rec` that need one of `rights` and are not made yet (`action target`, as
/// the plan and `onboarding.start` list them).
pub(crate) fn left_changes(rec: &OnboardingRecord, rights: &[Right]) -> Vec<String> {
    let mut left: Vec<String> = rec
        .profile
        .permissions
        .iter()
        .filter(|p| rights.contains(&p.resource.grant_right()))
        .map(onboard_core::permissions::permission_key)
        .filter(|k| !rec.grants.contains_key(k))
        .map(|k| format!("{} {k}", Action::AppRoleAssignmentCreate.as_str()))
        .collect();
    if rights.contains(&Right::AssignDirectoryRoles) {
        left.extend(
            rec.profile
                .directory_roles
                .iter()
                .filter(|r| !rec.role_assignments.contains_key(&r.template_id))
                .map(|r| {
                    format!(
                        "{} {}",
                        Action::DirectoryRoleAssignmentCreate.as_str(),
                        r.name
                    )
                }),
        );
    }
    left
}

fn entry(rec: &OnboardingRecord, actor: &str, phase: Phase, h: &HandOff) -> AuditEntry {
    AuditEntry::new(Action::OnboardingHandOff, phase, &scope_of(rec, actor))
        .with_target(Target::new(TargetKind::Onboarding, rec.id.clone()).named(&rec.app_name))
        .with_request_ids(None, Some(rec.id.clone()))
        .with_detail("roles", roles_for(&h.rights))
        .with_detail("left", h.left.clone())
        .with_detail("expires_at", h.expires_at.clone())
}

/// Microsoft's admin-consent page for `rec`'s app (entra-reference §2.4: it grants what the
/// app's `requiredResourceAccess` lists, i.e. exactly the profile's permissions), when
/// Microsoft Graph permissions are among what is left and the app has the reply address.
pub(crate) fn consent_url(
    inner: &Inner,
    rec: &OnboardingRecord,
    rights: &[Right],
) -> Option<String> {
    let reply = rec.consent_redirect_uri.as_deref()?;
    let client_id = rec.client_id.as_deref()?;
    if !rights.contains(&Right::GrantGraphAppRoles) {
        return None;
    }
    let mut url = inner.cfg.entra.authority().clone();
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend([rec.tenant_id.as_str(), "adminconsent"]);
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", reply)
        .append_pair("state", &rec.id);
    Some(url.to_string())
}

/// The wait's event for the watchers.
pub(crate) fn waiting_event(h: &HandOff) -> EventKind {
    EventKind::AwaitingAdmin {
        roles: roles_for(&h.rights),
        left: h.left.clone(),
        expires_at: h.expires_at.clone(),
        admin_consent_url: h.admin_consent_url.clone(),
        started_by: Some(h.first_actor.clone()),
    }
}

/// The run made what its admin may: record the wait (audited first), then tell the watchers.
pub(crate) async fn begin(run: &Arc<Run>, rights: Vec<Right>) -> Result<(), ProvisionError> {
    let rec = run.snapshot().await;
    let wait = run.inner.cfg.hand_off_for.unwrap_or(DEFAULT_WAIT);
    let now = time::OffsetDateTime::now_utc();
    let h = HandOff {
        left: left_changes(&rec, &rights),
        admin_consent_url: consent_url(&run.inner, &rec, &rights),
        rights,
        since: format(now),
        expires_at: format(now + wait),
        first_actor: run.scope.actor.clone(),
        ended: None,
        ended_by: None,
    };
    let mut e = entry(&rec, &run.scope.actor, Phase::Intent, &h);
    if let Some(url) = &h.admin_consent_url {
        e = e.with_detail("admin_consent_url", url.clone());
    }
    e.append(&run.inner.cfg.audit).await?;
    let event = waiting_event(&h);
    run.update(|r| {
        r.status = Status::AwaitingAdmin;
        r.error = None;
        r.hand_off = Some(h);
        // Another admin may grant or assign while it waits: the full pass reads first.
        r.attempted.insert(crate::steps::ids::ACCESS.to_owned());
    })
    .await?;
    run.emitter.emit("", event);
    // The consent watch may be asleep until the next expiry check: it has work now.
    run.inner.consent_nudge.notify_one();
    tracing::info!(onboarding_id = %run.id, "waiting for a privileged admin");
    Ok(())
}

/// Notes on `rec`'s wait, when it is open and its end not noted yet, that `actor` ended it
/// `how` ([`HandOff::ended_by`]). The caller stores `rec`.
pub(crate) fn note_end(rec: &mut OnboardingRecord, actor: &str, how: WaitEndHow) {
    if let Some(h) = rec
        .hand_off
        .as_mut()
        .filter(|h| h.ended.is_none() && h.ended_by.is_none())
    {
        h.ended_by = Some(WaitEnd {
            actor: actor.to_owned(),
            how,
        });
    }
}

/// Records how a wait ended: finished by `actor` (`finished`), else expired or cancelled. An
/// expiry or a cancel is noted as the wait's end ([`note_end`]); a finished one was noted when
/// the Provision (or the consent page) let the run go on, by whoever did. Does nothing when
/// `rec` has no open wait. The caller stores `rec`.
pub(crate) async fn end(
    inner: &Inner,
    rec: &mut OnboardingRecord,
    actor: &str,
    finished: bool,
) -> Result<(), ProvisionError> {
    if !finished {
        let how = match actor {
            EXPIRY_ACTOR => WaitEndHow::Expired,
            _ => WaitEndHow::Cancelled,
        };
        note_end(rec, actor, how);
    }
    let Some(h) = rec.hand_off.as_mut().filter(|h| h.ended.is_none()) else {
        return Ok(());
    };
    h.ended = Some(format(time::OffsetDateTime::now_utc()));
    let h = h.clone();
    let mut e = entry(
        rec,
        actor,
        if finished {
            Phase::Succeeded
        } else {
            Phase::Failed
        },
        &h,
    );
    if !finished {
        e = e.with_error(if actor == EXPIRY_ACTOR {
            format!("nobody finished the onboarding by {}", h.expires_at)
        } else {
            "the onboarding was cancelled while it waited".to_owned()
        });
    }
    e.append(&inner.cfg.audit).await?;
    Ok(())
}

impl Engine {
    /// Whether Provision with `plan` makes what its admin may and hands the rest off: the
    /// admin lacks some right, hand-offs are on, and creating the app is not among what they
    /// lack (that part cannot wait for someone else).
    pub fn hands_off(&self, plan: &Plan) -> bool {
        self.inner.cfg.hand_off_for.is_some()
            && !plan.missing_rights.is_empty()
            && plan
                .missing_rights
                .iter()
                .all(|m| m.right != Right::ManageApplications)
    }

    /// Undoes every onboarding whose wait for a privileged admin has passed its expiry, as
    /// [`EXPIRY_ACTOR`]; returns their ids. One that cannot be undone now is tried again at the
    /// next call (its record still waits).
    pub async fn expire_hand_offs(&self) -> Result<Vec<String>, ProvisionError> {
        let now = time::OffsetDateTime::now_utc();
        let mut undone = Vec::new();
        for rec in self.inner.store.all()? {
            let due = rec.status == Status::AwaitingAdmin
                && rec
                    .hand_off
                    .as_ref()
                    .and_then(|h| parse(&h.expires_at))
                    .is_some_and(|t| t <= now);
            if !due {
                continue;
            }
            match self.cancel(&rec.id, EXPIRY_ACTOR).await {
                Ok(_) => undone.push(rec.id),
                Err(e) => {
                    tracing::warn!(onboarding_id = %rec.id, error = %e, "an expired hand-off could not be undone yet");
                }
            }
        }
        Ok(undone)
    }

    /// An access token for `rec`'s admin that still works after a long wait: redeemed from the
    /// sealed refresh token (the rotated one is sealed back into `rec`, which the caller stores),
    /// else the stored access token. With [`Stored::WhileValid`] the stored one stands in only
    /// while it has [`STILL_VALID_SECS`] left (or its expiry is unknown), and otherwise the
    /// refused renewal is the error, as it is in a run ([`crate::FailureCause::SignInAgain`] for
    /// `invalid_grant`): a token known to be dead would only fail the next Graph call with a
    /// 401 that hides why. A cancel takes it anyway ([`Stored::Always`]), so the end of a wait
    /// and the undo that could not be made are on the log.
    pub(crate) async fn fresh_admin_token(
        &self,
        rec: &mut OnboardingRecord,
        stored: Stored,
    ) -> Result<AdminToken, ProvisionError> {
        let (Some(sealed), Some(client_id)) = (
            rec.sealed_admin_refresh.as_deref(),
            self.inner.cfg.token_app_client_id.as_deref(),
        ) else {
            return self.admin_token(rec).map(AdminToken::renewable);
        };
        let refresh = self
            .inner
            .key
            .open(&rec.id, Purpose::AdminRefreshToken, sealed)?;
        let redeemed = self
            .inner
            .cfg
            .entra
            .sts()
            .refresh(
                &rec.tenant_id,
                client_id,
                &refresh,
                crate::SIGN_IN_SCOPES,
                &OpContext::new(),
            )
            .await;
        match redeemed {
            Ok(tokens) => {
                let expires_at = crate::signin::expires_at(&tokens);
                self.seal_admin_tokens(
                    rec,
                    &tokens.access_token,
                    tokens.refresh_token.as_ref(),
                    expires_at,
                )?;
                Ok(AdminToken::renewable(tokens.access_token))
            }
            Err(e) => {
                let now = onboard_core::time::now_ms() / 1000;
                if stored == Stored::WhileValid
                    && rec
                        .admin_token_expires_at
                        .is_some_and(|at| at < now.saturating_add(STILL_VALID_SECS))
                {
                    return Err(ProvisionError::entra(RENEWAL_STEP, e));
                }
                tracing::warn!(onboarding_id = %rec.id, error = %e, "the admin's refresh token was not redeemed; using the stored access token");
                Ok(AdminToken {
                    access: self.admin_token(rec)?,
                    renewable: false,
                })
            }
        }
    }
}

/// An access token for an onboarding's admin ([`Engine::fresh_admin_token`]).
pub(crate) struct AdminToken {
    /// The delegated access token.
    pub(crate) access: SecretString,
    /// False when the STS has just refused to renew the sign-in and the stored access token
    /// stands in: a client that renewed it again ([`Engine::record_graph`]) would meet the
    /// same refusal before that token runs out.
    pub(crate) renewable: bool,
}

impl AdminToken {
    /// `access`, its sign-in renewable as far as is known.
    pub(crate) fn renewable(access: SecretString) -> Self {
        Self {
            access,
            renewable: true,
        }
    }
}

/// When [`Engine::fresh_admin_token`] falls back on the stored access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// While it has [`STILL_VALID_SECS`] left, or its expiry is unknown.
    WhileValid,
    /// Whatever its expiry.
    Always,
}

/// How long the stored access token must still live to stand in for a refused renewal.
const STILL_VALID_SECS: i64 = 60;

/// What a refused renewal's error names as its step.
const RENEWAL_STEP: &str = "admin_sign_in_renewal";
