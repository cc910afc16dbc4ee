//! What an invitation token unlocks, and for how long: the capability table.
//!
//! The customer admin holds no identity of ours, only the invitation token; it unlocks its own
//! onboarding while that makes sense and no longer. The same table is in
//! `proto/onboard/v1/onboarding.proto` and ARCHITECTURE.md; `tests/capabilities.rs` in this
//! crate tests every cell over loopback gRPC.
//!
//! | RPC with the token | signing in | signed in | provisioning | failed or awaiting admin | cancelling | completed or cancelled, within `limits.customer_watch_grace_secs` | after the grace | invitation revoked |
//! | --- | --- | --- | --- | --- | --- | --- | --- | --- |
//! | Plan, Provision | wait | yes | yes | yes | no | no | no | no |
//! | Watch, GetOnboarding | yes | yes | yes | yes | yes | yes | no | no |
//! | CancelOnboarding | wait | yes | yes | yes | yes | no (never: completed) | no | no |
//! | IssueHandOffLink | wait | yes | yes | yes | no | no | no | no |
//!
//! "Signing in" is from the DeviceCode event to SignedIn; "wait" is FAILED_PRECONDITION until
//! SignedIn (`pending.rs`), not a capability refusal.
//!
//! IssueHandOffLink is answered only while the onboarding waits for a privileged admin and
//! never to a hand-off link's holder (`hand_off.rs`). A hand-off link unlocks the onboarding it
//! was issued for, before it is redeemed too.
//!
//! A Provision repeated with the same idempotency key (a reconnect) only follows the run and
//! counts as Watch. SignIn needs a pending invitation (neither used, expired nor revoked). Refusals are
//! PERMISSION_DENIED and say why. Revoking a used invitation cuts its holder off at once: new
//! calls are refused and open SignIn, Watch and Provision streams end (a SignIn stream of a
//! pending one too, and a sign-in finished after the revocation keeps nothing). Undoing a completed onboarding is an
//! operator's CancelOnboarding with a non-empty `reason`.

use invitations::InvitationError;
use onboard_core::time::{now_ms, parse};
use onboard_proto::v1 as pb;
use provision::Status;
use tonic::Request;

use super::OnboardingService;
use crate::auth::Role;
use crate::error::{Result, ServerError};

/// Who is calling on an onboarding: the audit actor, and the invitation when it is the
/// customer (its revocation ends the caller's streams).
pub(super) struct Access {
    /// `invitation:<id>` or the operator's identity.
    pub(super) actor: String,
    /// The invitation id, for a customer.
    pub(super) invitation: Option<String>,
}

/// A request about one onboarding, made with the customer's invitation token or (token empty)
/// by an operator: what [`OnboardingService::access`] reads.
pub(super) trait OnboardingCall {
    /// The invitation token; empty for an operator.
    fn token(&self) -> &str;
    /// The onboarding the call is about.
    fn onboarding_id(&self) -> &str;
    /// The same, for [`OnboardingService::access`] to put in lower case once checked.
    fn onboarding_id_mut(&mut self) -> &mut String;
}

macro_rules! onboarding_calls {
    ($($request:ty),* $(,)?) => {$(
        impl OnboardingCall for $request {
            fn token(&self) -> &str {
                &self.invitation_token
            }
            fn onboarding_id(&self) -> &str {
                &self.onboarding_id
            }
            fn onboarding_id_mut(&mut self) -> &mut String {
                &mut self.onboarding_id
            }
        }
    )*};
}

onboarding_calls!(
    pb::PlanRequest,
    pb::ProvisionRequest,
    pb::WatchRequest,
    pb::GetOnboardingRequest,
    pb::CancelOnboardingRequest,
    pb::IssueHandOffLinkRequest,
);

impl OnboardingService {
    /// The caller of an RPC on `onboarding_id`: the invitation that created it (token given,
    /// within the capability table of `capability`) or an operator.
    pub(super) fn access<T: OnboardingCall>(
        &self,
        req: &mut Request<T>,
        rpc: CustomerRpc,
    ) -> Result<Access> {
        // Checked, then looked up in lower case whoever asks (RFC 9562: case-insensitive).
        let checked = ServerError::uuid("onboarding_id", req.get_ref().onboarding_id());
        if let Ok(id) = &checked {
            req.get_mut().onboarding_id_mut().clone_from(id);
            // Only a well-formed id reaches the call's log line and span: the field may hold
            // anything, an invitation token (64 characters) sent in the wrong field included.
            crate::telemetry::note_onboarding(req, id);
        }
        let req = &*req;
        let (token, onboarding_id) = (req.get_ref().token(), req.get_ref().onboarding_id());
        if token.is_empty() {
            let caller = self.app.auth().authorize(req, &[Role::Operator])?;
            checked?;
            self.app.guards().expensive_call(req, &caller.identity)?;
            return Ok(Access {
                actor: caller.identity,
                invitation: None,
            });
        }
        checked?;
        let peer = req.remote_addr().map(|a| a.ip());
        let guards = self.app.guards();
        guards.token_gate(peer)?;
        let inv = match self.app.invitations().get_by_token(token) {
            Ok(inv) => inv,
            // Not a token we issued, or one whose invitation is gone.
            Err(InvitationError::InvalidArgument(_) | InvitationError::NotFound(_)) => {
                return Err(guards.token_failed(peer).unwrap_or_else(|| {
                    ServerError::Unauthenticated("unknown invitation token".into())
                }));
            }
            // The store failed: the caller is not told their token is unknown.
            Err(e) => return Err(e.into()),
        };
        if inv.revoked_at_ms.is_some() {
            return Err(super::revoked::revoked(&inv.id));
        }
        // A hand-off link unlocks the onboarding it was issued for before it is redeemed too
        // (its holder sees what is left before signing in); an invitation signing in unlocks
        // the onboarding its DeviceCode event named before it is redeemed (`pending.rs`).
        let unlocks = inv.onboarding_id.as_deref().or(inv.hand_off_of.as_deref())
            == Some(onboarding_id)
            || self.signing_in_with(onboarding_id).as_deref() == Some(inv.id.as_str());
        if !unlocks {
            // A failure like an unknown token: a genuine token must not probe other ids freely.
            return Err(guards.token_failed(peer).unwrap_or_else(|| {
                ServerError::PermissionDenied(format!(
                    "this invitation does not unlock onboarding {onboarding_id:?}"
                ))
            }));
        }
        // A signed-in onboarding cancelled before its run stands as cancelled at that time.
        let (status, updated_at) = match self.app.engine().get(onboarding_id)? {
            Some(o) => (Some(o.status), o.updated_at),
            None => match self.cancelled_before_run(onboarding_id)? {
                Some(at) => (Some(Status::Cancelled), onboard_core::time::format_ms(at)),
                None => (None, String::new()),
            },
        };
        check(
            rpc,
            status,
            &updated_at,
            self.app.config().limits.customer_watch_grace_secs,
            onboarding_id,
        )?;
        let actor = format!("invitation:{}", inv.id);
        crate::telemetry::note_caller(req, &actor);
        guards.expensive_call(req, &actor)?;
        Ok(Access {
            actor,
            invitation: Some(inv.id),
        })
    }
}

/// The customer's RPCs on an existing onboarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CustomerRpc {
    /// Plan (reads Entra, changes nothing).
    Plan,
    /// Provision (starts, resumes or follows the run).
    Provision,
    /// Watch (events, replayed then live).
    Watch,
    /// GetOnboarding.
    Get,
    /// CancelOnboarding.
    Cancel,
    /// IssueHandOffLink (the handler refuses a hand-off link's own holder).
    IssueHandOffLink,
}

impl CustomerRpc {
    fn name(self) -> &'static str {
        match self {
            CustomerRpc::Plan => "Plan",
            CustomerRpc::Provision => "Provision",
            CustomerRpc::Watch => "Watch",
            CustomerRpc::Get => "GetOnboarding",
            CustomerRpc::Cancel => "CancelOnboarding",
            CustomerRpc::IssueHandOffLink => "IssueHandOffLink",
        }
    }
}

/// Where an onboarding stands, for the table: `None` is signed in (no run yet); `updated_at`
/// is when a finished onboarding finished.
pub(crate) fn check(
    rpc: CustomerRpc,
    status: Option<Status>,
    updated_at: &str,
    grace_secs: u64,
    id: &str,
) -> Result<()> {
    let Some(status) = status else {
        return Ok(()); // signed in: every customer action
    };
    let finished = matches!(status, Status::Completed | Status::Cancelled);
    let refuse = |why: String| {
        Err(ServerError::PermissionDenied(format!(
            "the invitation no longer unlocks {} on onboarding {id}: {why}",
            rpc.name()
        )))
    };
    match rpc {
        CustomerRpc::Cancel if status == Status::Completed => refuse(
            "it completed; undoing a completed onboarding is an operator's CancelOnboarding with a reason".into(),
        ),
        CustomerRpc::Plan
        | CustomerRpc::Provision
        | CustomerRpc::Cancel
        | CustomerRpc::IssueHandOffLink
            if finished =>
        {
            refuse(format!("it is {}", status_name(status)))
        }
        CustomerRpc::Plan | CustomerRpc::Provision | CustomerRpc::IssueHandOffLink
            if status == Status::Cancelling =>
        {
            refuse("it is being cancelled".into())
        }
        CustomerRpc::Watch | CustomerRpc::Get if finished => {
            let done_ms = parse(updated_at).map_or(0, onboard_core::time::ms_of);
            let grace_ms = i64::try_from(grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            if now_ms() > done_ms.saturating_add(grace_ms) {
                refuse(format!(
                    "it is {} and the {grace_secs} s grace after that has passed",
                    status_name(status)
                ))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Running => "provisioning",
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Cancelling => "being cancelled",
        Status::Cancelled => "cancelled",
        Status::AwaitingAdmin => "waiting for a privileged admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's "cancelling" column, row by row (the state is too brief to reach over the
    /// wire in a test).
    #[test]
    fn while_cancelling_the_token_may_watch_get_and_cancel_only() {
        let at = |rpc| check(rpc, Some(Status::Cancelling), "", 600, "o-1");
        for rpc in [
            CustomerRpc::Plan,
            CustomerRpc::Provision,
            CustomerRpc::IssueHandOffLink,
        ] {
            let e = at(rpc).expect_err(rpc.name());
            assert!(matches!(e, ServerError::PermissionDenied(_)), "{e:?}");
        }
        for rpc in [CustomerRpc::Watch, CustomerRpc::Get, CustomerRpc::Cancel] {
            assert!(at(rpc).is_ok(), "{}", rpc.name());
        }
    }
}
