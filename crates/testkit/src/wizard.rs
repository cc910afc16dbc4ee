//! The wizard's calls over any channel to a server (in this process or a child process): an
//! invitation (operator), the device-code SignIn with the emulator's "browser" acting, Provision
//! to its end. [`onboard`] is the one way tests get an onboarded registration over gRPC.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::Sim;
use onboard_proto::v1 as pb;
use onboard_proto::v1::invitations_client::InvitationsClient;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use pb::provision_event::Event as PE;
use pb::sign_in_event::Event as SE;
use tonic::Status;
use tonic::transport::Channel;

use crate::config::OPERATOR;
use crate::server::with_token;
use crate::sim::{upn, users};

/// How long one stream message may take before the test fails as stalled.
const STALL: Duration = Duration::from_secs(300);

/// A new invitation (as the operator) for `service_id` and `profile`, valid for `valid_for`
/// (none: the server's default). Returns (token, invitation id).
pub async fn invite(
    ch: Channel,
    service_id: &str,
    profile: &str,
    valid_for: Option<Duration>,
) -> Result<(String, String)> {
    let r = InvitationsClient::new(with_token(ch, Some(OPERATOR)))
        .create_invitation(pb::CreateInvitationRequest {
            valid_for: valid_for.map(|d| prost_types::Duration {
                seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
            }),
            ..contoso(service_id, profile)
        })
        .await?
        .into_inner();
    Ok((r.token, r.invitation.context("invitation")?.id))
}

/// An invitation for the customer "Contoso", `service_id` and `profile`, the rest defaults.
pub fn contoso(service_id: &str, profile: &str) -> pb::CreateInvitationRequest {
    pb::CreateInvitationRequest {
        customer: "Contoso".into(),
        service_id: service_id.into(),
        profile: profile.into(),
        ..Default::default()
    }
}

/// What the person at the browser does when the device code arrives.
#[derive(Clone, Copy, Debug)]
pub enum Browser<'a> {
    /// Nothing (the code expires, or the call is refused first).
    Idle,
    /// Signs in as this seeded user (a nick of the first tenant, or a whole UPN).
    SignsInAs(&'a str),
    /// Declines as this seeded user.
    Declines(&'a str),
    /// Signs in as this account (a whole UPN), which Microsoft refuses at the sign-in page
    /// (for example AADSTS50020, an account of another organization); the test fails if the
    /// emulator lets the account in.
    Refused(&'a str),
}

/// SignIn with invitation `token` for `admin_upn`; `browser` acts on the device code. Returns
/// every event, or the status the call ended with.
pub async fn sign_in(
    ch: Channel,
    sim: &Sim,
    token: &str,
    admin_upn: &str,
    browser: Browser<'_>,
) -> Result<Result<Vec<pb::SignInEvent>, Status>> {
    let info = sim.info();
    let mut stream = match start_sign_in(ch, token, admin_upn).await {
        Ok(s) => s,
        Err(status) => return Ok(Err(status)),
    };
    let mut events = Vec::new();
    loop {
        let next = tokio::time::timeout(STALL, stream.message())
            .await
            .context("sign-in stalled")?;
        match next {
            Ok(Some(e)) => {
                if let Some(SE::DeviceCode(code)) = &e.event {
                    ensure!(!code.onboarding_id.is_empty() && !code.message.is_empty());
                    match browser {
                        Browser::Idle => {}
                        Browser::SignsInAs(nick) => {
                            let who = if nick.contains('@') {
                                nick.to_owned()
                            } else {
                                upn(&info, nick)
                            };
                            sim.complete_device_login(&code.user_code, &who).await?
                        }
                        Browser::Refused(who) => {
                            let refused = sim.complete_device_login(&code.user_code, who).await;
                            ensure!(refused.is_err(), "{who} was let in: {refused:?}");
                        }
                        Browser::Declines(nick) => {
                            sim.decline_device_login(&code.user_code, &upn(&info, nick))
                                .await?
                        }
                    }
                }
                events.push(e);
            }
            Ok(None) => return Ok(Ok(events)),
            Err(status) => return Ok(Err(status)),
        }
    }
}

/// Calls SignIn with invitation `token` for `admin_upn`: the open event stream, or the status
/// the call was refused with.
pub async fn start_sign_in(
    ch: Channel,
    token: &str,
    admin_upn: &str,
) -> Result<tonic::Streaming<pb::SignInEvent>, Status> {
    start_sign_in_by(ch, token, admin_upn, pb::SignInMethod::DeviceCode).await
}

/// [`start_sign_in`] the way `method` says (a device code, or a browser sign-in).
pub async fn start_sign_in_by(
    ch: Channel,
    token: &str,
    admin_upn: &str,
    method: pb::SignInMethod,
) -> Result<tonic::Streaming<pb::SignInEvent>, Status> {
    let request = pb::SignInRequest {
        invitation_token: token.into(),
        admin_upn: admin_upn.into(),
        method: method.into(),
    };
    Ok(OnboardingClient::new(ch)
        .sign_in(request)
        .await?
        .into_inner())
}

/// How long a test waits for one SignIn event it reads itself before failing as stalled.
pub const EVENT_STALL: Duration = Duration::from_secs(60);

/// The next SignIn event, or `None` when the stream ended cleanly; the status it ended with is
/// an error.
pub async fn next_sign_in_event(
    stream: &mut tonic::Streaming<pb::SignInEvent>,
) -> Result<Option<SE>> {
    Ok(tokio::time::timeout(EVENT_STALL, stream.message())
        .await
        .context("the sign-in stalled")??
        .and_then(|e| e.event))
}

/// SignIn with `token` as `upn`, left open: the stream and its first event, the DeviceCode.
pub async fn device_code(
    ch: Channel,
    token: &str,
    upn: &str,
) -> Result<(tonic::Streaming<pb::SignInEvent>, pb::DeviceCode)> {
    let mut stream = start_sign_in(ch, token, upn)
        .await
        .map_err(|s| anyhow::anyhow!("SignIn refused: {s:?}"))?;
    let first = next_sign_in_event(&mut stream).await?;
    let Some(SE::DeviceCode(code)) = first else {
        bail!("the sign-in did not begin with a device code: {first:?}");
    };
    Ok((stream, code))
}

/// A successful sign-in as `nick` with invitation `token`; the SignedIn event.
pub async fn signed_in(ch: Channel, sim: &Sim, token: &str, nick: &str) -> Result<pb::SignedIn> {
    let events = sign_in(
        ch,
        sim,
        token,
        &upn(&sim.info(), nick),
        Browser::SignsInAs(nick),
    )
    .await?
    .map_err(|s| anyhow::anyhow!("sign-in failed: {s:?}"))?;
    ensure!(
        matches!(
            events.first().and_then(|e| e.event.as_ref()),
            Some(SE::DeviceCode(_))
        ),
        "first event is not the code: {events:?}"
    );
    match events.last().and_then(|e| e.event.clone()) {
        Some(SE::SignedIn(s)) => Ok(s),
        other => bail!("last event is not SignedIn: {other:?}"),
    }
}

/// The Provision request of the wizard (idempotency key `key-<id>`).
fn provision_request(token: &str, id: &str, name: &str) -> pb::ProvisionRequest {
    pb::ProvisionRequest {
        onboarding_id: id.into(),
        app_name: name.into(),
        idempotency_key: format!("key-{id}"),
        invitation_token: token.into(),
        seal_to: None,
    }
}

/// Starts Provision for a signed-in onboarding; the event stream, or the status.
pub async fn provision_stream(
    ch: Channel,
    token: &str,
    id: &str,
    name: &str,
) -> Result<tonic::Streaming<pb::ProvisionEvent>, Status> {
    Ok(OnboardingClient::new(ch)
        .provision(provision_request(token, id, name))
        .await?
        .into_inner())
}

/// Provision to the end of its stream: every event, or the status it was refused with.
pub async fn provision(
    ch: Channel,
    token: &str,
    id: &str,
    name: &str,
) -> Result<Result<Vec<pb::ProvisionEvent>, Status>> {
    match provision_stream(ch, token, id, name).await {
        Ok(s) => Ok(Ok(drain(s).await?)),
        Err(status) => Ok(Err(status)),
    }
}

/// Reads a ProvisionEvent stream to its end.
pub async fn drain(mut s: tonic::Streaming<pb::ProvisionEvent>) -> Result<Vec<pb::ProvisionEvent>> {
    let mut out = Vec::new();
    while let Some(e) = tokio::time::timeout(STALL, s.message())
        .await
        .context("provision stalled")??
    {
        out.push(e);
    }
    Ok(out)
}

/// The Completed event that ends `events`.
pub fn completed(events: &[pb::ProvisionEvent]) -> Result<pb::Completed> {
    match events.last().and_then(|e| e.event.clone()) {
        Some(PE::Completed(c)) => Ok(c),
        other => bail!("last event is not Completed: {other:?}\nall: {events:#?}"),
    }
}

/// The platform's claim of a completed onboarding's secret (operator, once).
pub async fn claim(ch: Channel, onboarding_id: &str) -> Result<pb::ClaimedSecret> {
    Ok(OnboardingClient::new(with_token(ch, Some(OPERATOR)))
        .claim_secret(pb::ClaimSecretRequest {
            onboarding_id: onboarding_id.into(),
            seal_to: None,
        })
        .await?
        .into_inner())
}

/// An onboarded registration, as the wizard got it.
#[derive(Debug)]
pub struct Onboarding {
    /// The invitation's token.
    pub token: String,
    /// The invitation's id.
    pub invitation_id: String,
    /// The onboarding's id.
    pub onboarding_id: String,
    /// Every Provision event, ending with Completed.
    pub events: Vec<pb::ProvisionEvent>,
    /// The Completed event; its `secret` filled from the platform's claim (the wizard's own
    /// Completed never carries it).
    pub done: pb::Completed,
}

/// A day-two sign-in over `ch` ("Reinitiate Authentication Flow"): a new invitation for
/// `service_id` (direct-routing) signed in as the Global Administrator, which stores the
/// tenant's admin session for the changes that follow.
pub async fn day_two_sign_in(ch: Channel, sim: &Sim, service_id: &str) -> Result<()> {
    let (token, _) = invite(ch.clone(), service_id, "direct-routing", None).await?;
    signed_in(ch, sim, &token, users::GLOBAL_ADMIN).await?;
    Ok(())
}

/// Invitation → SignIn as the Global Administrator → Provision of app `name` for service
/// `service_id` and `profile`, to Completed (without the secret, as the wizard gets it) → the
/// platform's ClaimSecret, whose value is put into `done.secret`.
pub async fn onboard(
    ch: Channel,
    sim: &Sim,
    service_id: &str,
    profile: &str,
    name: &str,
) -> Result<Onboarding> {
    let (token, invitation_id) = invite(ch.clone(), service_id, profile, None).await?;
    let onboarding_id = signed_in(ch.clone(), sim, &token, users::GLOBAL_ADMIN)
        .await?
        .onboarding_id;
    let events = provision(ch.clone(), &token, &onboarding_id, name)
        .await?
        .map_err(|s| anyhow::anyhow!("{name}: provision failed: {s:?}"))?;
    let mut done = completed(&events)?;
    ensure!(
        done.secret.is_empty(),
        "{name}: the invitation-token caller received the secret"
    );
    let claimed = claim(ch, &onboarding_id).await?;
    ensure!(claimed.client_id == done.client_id && !claimed.secret.is_empty());
    done.secret = claimed.secret;
    Ok(Onboarding {
        token,
        invitation_id,
        onboarding_id,
        events,
        done,
    })
}

/// What one whole onboarding took.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// Invitation + device-code sign-in (dominated by the device-code poll interval).
    pub sign_in: Duration,
    /// From the Provision call to its Completed event.
    pub provision: Duration,
}

/// [`onboard`] of the `direct-routing` profile, timed.
pub async fn onboard_timed(
    ch: Channel,
    sim: &Sim,
    service_id: &str,
    name: &str,
) -> Result<Timings> {
    let t0 = tokio::time::Instant::now();
    let (token, _) = invite(ch.clone(), service_id, "direct-routing", None).await?;
    let id = signed_in(ch.clone(), sim, &token, users::GLOBAL_ADMIN)
        .await?
        .onboarding_id;
    let t1 = tokio::time::Instant::now();
    let events = drain(provision_stream(ch, &token, &id, name).await?).await?;
    match completed(&events) {
        Ok(_) => Ok(Timings {
            sign_in: t1 - t0,
            provision: t1.elapsed(),
        }),
        other => bail!("{name}: the stream ended with {other:?}"),
    }
}

/// The onboarding as the operator sees it.
pub async fn get(ch: Channel, id: &str) -> Result<pb::OnboardingInfo> {
    Ok(OnboardingClient::new(with_token(ch, Some(OPERATOR)))
        .get_onboarding(pb::GetOnboardingRequest {
            onboarding_id: id.into(),
            invitation_token: String::new(),
        })
        .await?
        .into_inner())
}

/// The wait for a privileged admin a Provision stream ended with.
pub fn awaiting_admin(events: &[pb::ProvisionEvent]) -> Result<pb::HandOff> {
    match events.last().and_then(|e| e.event.clone()) {
        Some(PE::AwaitingAdmin(h)) => Ok(h),
        other => bail!("the stream did not end waiting for an admin: {other:?}\n{events:#?}"),
    }
}

/// IssueHandOffLink for the waiting onboarding `id`, with the starter's invitation `token`.
pub async fn hand_off_link(ch: Channel, token: &str, id: &str) -> Result<pb::HandOffLink, Status> {
    Ok(OnboardingClient::new(ch)
        .issue_hand_off_link(pb::IssueHandOffLinkRequest {
            onboarding_id: id.into(),
            invitation_token: token.into(),
        })
        .await?
        .into_inner())
}

/// Polls until `pred` holds for the onboarding's summary (or fails after `limit`); that summary.
pub async fn wait_for(
    ch: Channel,
    id: &str,
    limit: Duration,
    pred: impl Fn(&pb::OnboardingInfo) -> bool,
) -> Result<pb::OnboardingInfo> {
    let what = format!("onboarding {id} to get there");
    crate::wait::until(&what, limit, async || {
        let info = get(ch.clone(), id).await?;
        Ok(crate::wait::settled(pred(&info), info.clone(), info))
    })
    .await
}

/// Polls until the onboarding is no longer running; its final summary.
pub async fn wait_settled(ch: Channel, id: &str, limit: Duration) -> Result<pb::OnboardingInfo> {
    wait_for(ch, id, limit, |info| {
        !matches!(
            info.state(),
            pb::OnboardingState::Provisioning
                | pb::OnboardingState::SignedIn
                | pb::OnboardingState::SigningIn
                | pb::OnboardingState::Unspecified
        )
    })
    .await
}
