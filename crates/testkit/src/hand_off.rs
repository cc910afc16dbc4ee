//! A hand-off to a privileged admin as the tests drive and check it: the link issued with the
//! starter's token, a link read back as an operator reads it, the holder's GetOnboarding,
//! whether (and by whom, why) a link was revoked. The engine's test hook holding or halting a
//! call at a hook point (`hand_off:links_end`, say) is [`crate::hold`]'s.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use tonic::Status;

use crate::sim_server::SimServer;

/// IssueHandOffLink of onboarding `id` with the starter's invitation `token`.
pub async fn issue_link(env: &SimServer, token: &str, id: &str) -> Result<pb::HandOffLink, Status> {
    let ch = env
        .server
        .channel()
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    crate::wizard::hand_off_link(ch, token, id).await
}

/// Invitation (or hand-off link) `id` as an operator reads it.
pub async fn invitation(env: &SimServer, id: &str) -> Result<pb::Invitation> {
    let key = pb::get_invitation_request::Key::Id(id.into());
    env.server.invitation(key).await
}

/// GetOnboarding of `id` with the invitation `token`: `Ok` or the refusal.
pub async fn get_with(env: &SimServer, token: &str, id: &str) -> Result<Result<(), Status>> {
    let request = pb::GetOnboardingRequest {
        onboarding_id: id.into(),
        invitation_token: token.into(),
    };
    let mut c = env.server.onboarding(None).await?;
    Ok(c.get_onboarding(request).await.map(drop))
}

/// Whether the wizard's landing page tells the holder of the revoked hand-off link `token`
/// that its onboarding no longer waits (`wait_ended`: nothing left to do), rather than to ask
/// the colleague for the current link.
pub async fn says_wait_ended(env: &SimServer, token: &str) -> Result<bool> {
    let landing = env
        .server
        .wizard_post("/wizard/api/invitation", token, "{}")
        .await?;
    let landing = crate::server::json_body(&landing)?;
    ensure!(landing["state"] == "revoked", "{landing}");
    landing["wait_ended"]
        .as_bool()
        .with_context(|| format!("no wait_ended: {landing}"))
}

/// Checks that hand-off link `link` of onboarding `id` is REVOKED by `actor` (with a time),
/// audited as a schema-valid `invitation.revoke` about `id` with a reason containing `why`.
/// The record changes before the outcome entry is appended, so this waits (20 s at most) for
/// the entry.
pub async fn revoked_by(
    env: &SimServer,
    link: &str,
    id: &str,
    actor: &str,
    why: &str,
) -> Result<()> {
    let inv = invitation(env, link).await?;
    ensure!(
        inv.state() == pb::InvitationState::Revoked
            && inv.revoked_at.is_some()
            && inv.revoked_by == actor,
        "{inv:?}"
    );
    let outcome = |e: &&serde_json::Value| {
        e["action"] == "invitation.revoke" && e["phase"] == "succeeded" && e["target"]["id"] == link
    };
    let limit = Duration::from_secs(20);
    crate::wait::until_true("the revocation's outcome entry", limit, async || {
        Ok(env.server.entries()?.iter().any(|e| outcome(&e)))
    })
    .await?;
    let entries = env.server.entries()?;
    let entry = entries
        .iter()
        .find(outcome)
        .context("no invitation.revoke entry")?;
    ensure!(
        entry["actor"] == actor
            && entry["onboarding_id"] == id
            && entry["reason"].as_str().is_some_and(|r| r.contains(why)),
        "{entry}"
    );
    crate::audit::check_schema(&entries)
}

/// Waits (`limit` at most) until invitation `link` is REVOKED.
pub async fn until_revoked(env: &SimServer, link: &str, limit: Duration) -> Result<()> {
    crate::wait::until_true("the hand-off link revoked", limit, async || {
        Ok(invitation(env, link).await?.state() == pb::InvitationState::Revoked)
    })
    .await
}

/// CancelOnboarding of `id` with the invitation `token` (the starter's, or a link's), for
/// `reason`: the onboarding as the answer gives it.
pub async fn cancel_with(
    env: &SimServer,
    token: &str,
    id: &str,
    reason: &str,
) -> Result<pb::OnboardingInfo> {
    let request = pb::CancelOnboardingRequest {
        onboarding_id: id.into(),
        reason: reason.into(),
        invitation_token: token.into(),
    };
    let mut c = env.server.onboarding(None).await?;
    Ok(c.cancel_onboarding(request).await?.into_inner())
}
