//! The wizard's JSON endpoints. Each one takes the invitation token from the
//! `x-invitation-token` header and calls the Onboarding service (or, for the landing page and
//! attach, the invitations and credentials back-ends the gRPC services use) in process.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use credentials::{AttachRequest, Gated, RegistrationRef};
use invitations::InvitationState;
use onboard_core::time::{format_ms, now_ms};
use onboard_proto::v1 as pb;
use onboard_proto::v1::onboarding_server::Onboarding;
use provision::EventKind;
use provision::names::{FORBIDDEN, MAX_LEN, MIN_LEN, RESERVED_WORD};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use tonic::Status;

use super::Wizard;
use super::stream::{error_response, sse};
use super::visit::{Page, Visit};
use crate::error::ServerError;

/// A server error as the page's JSON error (through the one status mapping).
fn server_error(e: ServerError) -> Response {
    error_response(&Status::from(e))
}

/// The page's answer to an in-process call of the Onboarding service: `show` of its reply, or
/// its status as the page's JSON error.
pub(super) fn answer<T>(
    reply: Result<tonic::Response<T>, Status>,
    show: impl FnOnce(T) -> Response,
) -> Response {
    match reply {
        Ok(r) => show(r.into_inner()),
        Err(status) => error_response(&status),
    }
}

/// The name rules as the page lists them, each with the key the name check reports.
fn name_rules() -> Value {
    let forbidden: Vec<String> = FORBIDDEN.iter().map(char::to_string).collect();
    json!([
        {"key": "length", "text": format!("{MIN_LEN}–{MAX_LEN} characters")},
        {"key": "forbidden_character", "text": format!("none of {}", forbidden.join(" "))},
        {"key": "dot", "text": "no dot"},
        {"key": "blank", "text": "no blanks"},
        {"key": "reserved", "text": format!("not the word {RESERVED_WORD}")},
        {"key": "invisible", "text": "letters, digits and other visible characters only"},
        {"key": "not_unique", "text": "unique for this service"},
    ])
}

fn state_name(s: InvitationState) -> &'static str {
    match s {
        InvitationState::Pending => "pending",
        InvitationState::Used => "used",
        InvitationState::Expired => "expired",
        InvitationState::Revoked => "revoked",
    }
}

fn onboarding_state(s: i32) -> &'static str {
    match pb::OnboardingState::try_from(s).unwrap_or_default() {
        pb::OnboardingState::SigningIn => "signing_in",
        pb::OnboardingState::SignedIn => "signed_in",
        pb::OnboardingState::Provisioning => "provisioning",
        pb::OnboardingState::Completed => "completed",
        pb::OnboardingState::Failed => "failed",
        pb::OnboardingState::Cancelled => "cancelled",
        pb::OnboardingState::AwaitingAdmin => "awaiting_admin",
        pb::OnboardingState::Unspecified => "unknown",
    }
}

/// A retry's kind as the page reads it (`replication`, …; the proto's names in lower case
/// without their prefix).
fn retry_kind(k: pb::RetryKind) -> &'static str {
    match k {
        pb::RetryKind::Unspecified => "unspecified",
        pb::RetryKind::Throttled => "throttled",
        pb::RetryKind::MicrosoftUnavailable => "microsoft_unavailable",
        pb::RetryKind::Replication => "replication",
        pb::RetryKind::CredentialPropagation => "credential_propagation",
        pb::RetryKind::Network => "network",
    }
}

/// A failure's cause as the page reads it (`sign_in_again`, …; the proto's names in lower case
/// without their prefix).
fn failure_cause(c: pb::FailureCause) -> &'static str {
    match c {
        pb::FailureCause::Unspecified => "unspecified",
        pb::FailureCause::SignInAgain => "sign_in_again",
        pb::FailureCause::MissingRights => "missing_rights",
        pb::FailureCause::Tenant => "tenant",
        pb::FailureCause::Microsoft => "microsoft",
        pb::FailureCause::Service => "service",
    }
}

/// The landing page's facts: who invited, for what, until when; or why the link cannot be
/// used. A used invitation names its onboarding, so a reload continues it.
pub(super) async fn invitation(State(w): State<Wizard>, visit: Visit) -> Response {
    let rec = match visit.invitation(&w.app) {
        Ok(rec) => rec,
        // A malformed or unknown link: the link's own problem.
        Err(ServerError::InvalidArgument(_) | ServerError::NotFound(_)) => {
            return Json(json!({"state": "invalid"})).into_response();
        }
        // The limit on unknown tokens from this address (429), or a fault of the service's
        // (a store that cannot be read): not "this link is not valid", which would send the
        // admin to a link that is fine; the page says the service could not answer.
        Err(e) => return server_error(e),
    };
    let state = rec.state(now_ms());
    let mut onboarding = Value::Null;
    // A used invitation continues its onboarding; a hand-off link shows the one it finishes.
    let joined = match state {
        InvitationState::Used => rec.onboarding_id.as_ref(),
        InvitationState::Pending => rec.hand_off_of.as_ref(),
        _ => None,
    };
    if let Some(id) = joined {
        let req = visit.request(
            "GetOnboarding",
            pb::GetOnboardingRequest {
                onboarding_id: id.clone(),
                invitation_token: visit.token.to_string(),
            },
        );
        match Onboarding::get_onboarding(&w.onboarding, req).await {
            Ok(info) => {
                let info = info.into_inner();
                onboarding = json!({
                    "id": info.onboarding_id,
                    "state": onboarding_state(info.state),
                    "app_name": info.app_name,
                    "events": info.events,
                    "hand_off": info.hand_off.map(super::hand_off::hand_off_json),
                });
            }
            // Signed in once, but the sign-in is gone (a restart, or Microsoft refused it) and
            // no run began: the page offers a new sign-in when SignIn would take one.
            Err(_) if w.onboarding.can_sign_in_again(&visit.token) => {
                onboarding = json!({"id": id, "state": "sign_in_again"});
            }
            // Spent attaching a registration made by hand: nothing to continue.
            Err(_) if id.starts_with(credentials::ATTACHED_ID_PREFIX) => {
                onboarding = json!({"state": "attached"});
            }
            Err(_) => {}
        }
    }
    let cfg = &w.app.config().invitations;
    Json(json!({
        "state": state_name(state),
        "customer": rec.customer,
        "provider": rec.provider_name,
        "service_name": cfg.service_display_name,
        "service_id": rec.service_id,
        "admin_upn": rec.admin_upn,
        "expires_at": format_ms(rec.expires_at_ms),
        "used_at": rec.used_at_ms.map(format_ms),
        "name_rules": name_rules(),
        "onboarding": onboarding,
        "hand_off_of": rec.hand_off_of,
        // A revoked hand-off link whose onboarding no longer waits (see `stopped_waiting`).
        "wait_ended": state == InvitationState::Revoked
            && rec.hand_off_of.as_deref().is_some_and(|id| {
                crate::onboarding::hand_off::stopped_waiting(&w.app, id)
            }),
        "tenant": rec.tenant,
    }))
    .into_response()
}

/// `{upn, browser?}`
#[derive(Deserialize)]
pub(super) struct SignInBody {
    /// The admin's UPN as typed.
    upn: String,
    /// Sign in with the browser (authorization code) instead of a device code.
    #[serde(default)]
    browser: bool,
}

/// The sign-in as a stream: `device_code` (or `browser`), `pending`, `signed_in` or `error`.
pub(super) async fn sign_in(Page { w, visit, body }: Page<SignInBody>) -> Response {
    let method = if body.browser {
        pb::SignInMethod::Browser
    } else {
        pb::SignInMethod::DeviceCode
    };
    let req = pb::SignInRequest {
        invitation_token: visit.token.to_string(),
        admin_upn: body.upn,
        method: method.into(),
    };
    let reply = Onboarding::sign_in(&w.onboarding, visit.request("SignIn", req)).await;
    answer(reply, |s| sse(s, sign_in_event))
}

fn sign_in_event(e: pb::SignInEvent) -> Option<(&'static str, Value)> {
    use pb::sign_in_event::Event as E;
    Some(match e.event? {
        E::DeviceCode(c) => (
            "device_code",
            json!({
                "user_code": c.user_code,
                "verification_uri": c.verification_uri,
                "expires_at": c.expires_at.map(|t| t.seconds),
                // Seconds left as the server counts them: the page counts down from this on
                // its own monotonic clock, right however wrong the computer's clock is.
                "expires_in": c.expires_at.map(|t| (t.seconds - now_ms() / 1000).max(0)),
                "message": c.message,
                "onboarding_id": c.onboarding_id,
            }),
        ),
        E::BrowserSignIn(b) => (
            "browser",
            json!({
                "url": b.authorization_url,
                "expires_in": b.expires_at.map(|t| (t.seconds - now_ms() / 1000).max(0)),
                "onboarding_id": b.onboarding_id,
            }),
        ),
        E::Pending(p) => (
            "pending",
            json!({
                "slow_down": p.slow_down,
                "interval_s": p.interval.map_or(0, |d| d.seconds),
            }),
        ),
        E::SignedIn(s) => (
            "signed_in",
            json!({
                "upn": s.upn,
                "tenant_id": s.tenant_id,
                "roles_held": s.roles_held,
                "roles_missing": s.roles_missing,
                "onboarding_id": s.onboarding_id,
            }),
        ),
    })
}

/// `{name}`
#[derive(Deserialize)]
pub(super) struct NameBody {
    /// The app registration name as typed.
    name: String,
}

/// The name rules that need no store, checked by the server's one implementation; uniqueness
/// is checked by Plan and Provision. `rules` lists every broken rule's key (the page marks
/// them all), `rule` the first (the one Plan and Provision would refuse the name for), and
/// `message` says them all.
pub(super) async fn name(Json(b): Json<NameBody>) -> Response {
    let broken = provision::broken_rules(&b.name);
    if broken.is_empty() {
        return Json(json!({"ok": true})).into_response();
    }
    let keys: Vec<String> = broken.iter().map(rule_key).collect();
    let said: Vec<String> = broken.iter().map(ToString::to_string).collect();
    Json(json!({
        "ok": false,
        "rule": keys[0],
        "rules": keys,
        "message": format!("The name {}.", said.join(", and ")),
    }))
    .into_response()
}

/// The key [`name_rules`] lists a broken rule under: its serde tag, with the NFKC rule shown
/// as the visible-characters one.
fn rule_key(rule: &provision::NameRule) -> String {
    let key = serde_json::to_value(rule)
        .ok()
        .and_then(|v| v.get("rule").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    if key == "not_nfkc" {
        "invisible".into()
    } else {
        key
    }
}

/// `{onboarding_id, app_name}`
#[derive(Deserialize)]
pub(super) struct PlanBody {
    /// The onboarding.
    onboarding_id: String,
    /// The chosen name.
    app_name: String,
}

/// The plan for a name: every change, and which the admin lacks rights for.
pub(super) async fn plan(Page { w, visit, body }: Page<PlanBody>) -> Response {
    let req = pb::PlanRequest {
        onboarding_id: body.onboarding_id,
        app_name: body.app_name,
        profile: String::new(),
        invitation_token: visit.token.to_string(),
    };
    answer(
        Onboarding::plan(&w.onboarding, visit.request("Plan", req)).await,
        plan_json,
    )
}

/// `{onboarding_id}`
#[derive(Deserialize)]
pub(super) struct PreviewBody {
    /// The onboarding.
    onboarding_id: String,
}

/// The plan right after the sign-in, before the app is named (screen 4): Plan's answer with
/// the app's own changes unnamed.
pub(super) async fn preview(Page { w, visit, body }: Page<PreviewBody>) -> Response {
    let req = pb::PlanRequest {
        onboarding_id: body.onboarding_id,
        app_name: String::new(),
        profile: String::new(),
        invitation_token: visit.token.to_string(),
    };
    let reply = w.onboarding.plan_unnamed(visit.request("Plan", req)).await;
    answer(
        reply.map(tonic::Response::new).map_err(Status::from),
        plan_json,
    )
}

/// A plan as the page shows it.
fn plan_json(p: pb::PlanResponse) -> Response {
    let changes: Vec<Value> = p
        .changes
        .iter()
        .map(|c| {
            json!({"action": c.action, "description": c.description,
                   "missing_roles": c.missing_roles})
        })
        .collect();
    Json(
        json!({"changes": changes, "blocked": p.blocked, "hand_off": p.hand_off,
                "hand_off_roles": p.hand_off_roles}),
    )
    .into_response()
}

/// `{onboarding_id, app_name, idempotency_key}`
#[derive(Deserialize)]
pub(super) struct ProvisionBody {
    /// The onboarding.
    onboarding_id: String,
    /// The chosen name.
    app_name: String,
    /// The page's key for this onboarding (a repeat follows instead of starting again).
    idempotency_key: String,
}

/// Provision as a stream of step events (never the secret).
pub(super) async fn provision(Page { w, visit, body }: Page<ProvisionBody>) -> Response {
    let req = pb::ProvisionRequest {
        onboarding_id: body.onboarding_id,
        app_name: body.app_name,
        idempotency_key: body.idempotency_key,
        invitation_token: visit.token.to_string(),
        // The wizard never receives a secret.
        seal_to: None,
    };
    let reply = Onboarding::provision(&w.onboarding, visit.request("Provision", req)).await;
    answer(reply, |s| sse(s, provision_event))
}

/// `{onboarding_id, from_event}`
#[derive(Deserialize)]
pub(super) struct WatchBody {
    /// The onboarding.
    onboarding_id: String,
    /// The first event to send (the one after the last the page saw).
    #[serde(default)]
    from_event: u64,
}

/// Watch: the onboarding's events from `from_event`, then live ones (reload, lost network).
pub(super) async fn watch(Page { w, visit, body }: Page<WatchBody>) -> Response {
    let req = pb::WatchRequest {
        onboarding_id: body.onboarding_id,
        from_event: body.from_event,
        invitation_token: visit.token.to_string(),
    };
    let reply = Onboarding::watch(&w.onboarding, visit.request("Watch", req)).await;
    answer(reply, |s| sse(s, provision_event))
}

/// One provision event as the page shows it. Completed names the registration only: the
/// secret field is never read here.
fn provision_event(e: pb::ProvisionEvent) -> Option<(&'static str, Value)> {
    use pb::provision_event::Event as E;
    let (kind, mut v) = match e.event? {
        E::Started(s) => (
            "started",
            json!({"step": s.step, "description": s.description}),
        ),
        E::Retrying(r) => {
            let wait_ms = r.wait.map_or(0, |d| {
                d.seconds.saturating_mul(1000) + i64::from(d.nanos / 1_000_000)
            });
            (
                "retrying",
                json!({"step": r.step, "reason": super::stream::for_the_page(&r.reason), "wait_ms": wait_ms,
                       "attempt": r.attempt, "kind": retry_kind(r.kind())}),
            )
        }
        E::Done(d) => ("done", json!({"step": d.step, "unchanged": d.unchanged})),
        E::Completed(c) => (
            "completed",
            json!({"tenant_id": c.tenant_id, "client_id": c.client_id}),
        ),
        E::Failed(f) => (
            "failed",
            json!({"step": f.step, "reason": super::stream::for_the_page(&f.reason),
                   "cause": failure_cause(f.cause())}),
        ),
        E::Cancelled(c) => ("cancelled", json!({"detail": c.detail})),
        E::AwaitingAdmin(h) => ("awaiting_admin", super::hand_off::hand_off_json(h)),
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("index".into(), json!(e.index));
    }
    Some((kind, v))
}

/// `{onboarding_id, reason}`
#[derive(Deserialize)]
pub(super) struct CancelBody {
    /// The onboarding.
    onboarding_id: String,
    /// Why, for the audit log (the page sends a fixed sentence).
    #[serde(default)]
    reason: String,
}

/// Cancel: the service's capability table decides (allowed until the onboarding completed);
/// the undo then shows on the page's open stream, ending with its `cancelled` event.
pub(super) async fn cancel(Page { w, visit, body }: Page<CancelBody>) -> Response {
    let req = pb::CancelOnboardingRequest {
        onboarding_id: body.onboarding_id,
        reason: body.reason,
        invitation_token: visit.token.to_string(),
    };
    let req = visit.request("CancelOnboarding", req);
    answer(
        Onboarding::cancel_onboarding(&w.onboarding, req).await,
        |info| Json(json!({"state": onboarding_state(info.state)})).into_response(),
    )
}

/// `{onboarding_id}`
#[derive(Deserialize)]
pub(super) struct SummaryBody {
    /// The onboarding.
    onboarding_id: String,
}

/// What a completed onboarding created, for the Done screen (nothing to copy).
pub(super) async fn summary(Page { w, visit, body }: Page<SummaryBody>) -> Response {
    // The capability check and the audit entry of a read.
    let req = pb::GetOnboardingRequest {
        onboarding_id: body.onboarding_id.clone(),
        invitation_token: visit.token.to_string(),
    };
    let req = visit.request("GetOnboarding", req);
    if let Err(status) = Onboarding::get_onboarding(&w.onboarding, req).await {
        return error_response(&status);
    }
    let o = match w.app.engine().get(&body.onboarding_id) {
        Ok(Some(o)) => o,
        Ok(None) => {
            return server_error(ServerError::NotFound(
                "the onboarding has not started".into(),
            ));
        }
        Err(e) => return server_error(e.into()),
    };
    let roles: Vec<String> = o
        .role_assignments
        .keys()
        .map(|id| onboard_core::roles::role_name(id).map_or_else(|| id.clone(), str::to_owned))
        .collect();
    // Removed means this run deleted it (the step's outcome entries); a step that found no
    // temporary app finishes too, with nothing to say "removed" about.
    let removed_token_app = match w.app.engine().events(&body.onboarding_id) {
        Ok(events) => events.iter().any(|e| {
            e.step == provision::TOKEN_APP_STEP
                && matches!(&e.kind, EventKind::Done { audit_seqs, .. } if !audit_seqs.is_empty())
        }),
        Err(e) => return server_error(e.into()),
    };
    let cfg = w.app.config();
    Json(json!({
        "app_name": o.app_name,
        "client_id": o.client_id,
        "tenant_id": o.tenant_id,
        "permissions": o.grants.keys().collect::<Vec<_>>(),
        "roles": roles,
        "temporary_app": cfg.platform.token_app_name(),
        "temporary_app_removed": removed_token_app,
        "provider": cfg.platform.provider_name,
    }))
    .into_response()
}

/// `{tenant_id, client_id, client_secret}`
#[derive(Deserialize)]
pub(super) struct AttachBody {
    /// The registration's tenant.
    tenant_id: String,
    /// Its application (client) id.
    client_id: String,
    /// Its secret, as the customer entered it; sealed by the attach, never echoed.
    client_secret: String,
}

/// "Use App Registration": attaches the customer's hand-made registration for the
/// invitation's service through the credential manager (validated against the invitation's
/// profile, audited), redeeming the invitation with the attachment's id once it validated and
/// before anything is stored: a link that can no longer be used leaves nothing managed, and
/// the platform claims the secret entered with that id (ClaimSecret). A registration Onboard
/// manages already gains the service (the manual's "additional services can reuse it").
/// Missing permissions or roles come back one line each.
pub(super) async fn attach(Page { w, visit, body: b }: Page<AttachBody>) -> Response {
    let rec = match visit.invitation(&w.app) {
        Ok(r) => r,
        Err(e) => return server_error(e),
    };
    if let Err(e) = rec.require_pending(now_ms()) {
        return server_error(e.into());
    }
    if rec.hand_off_of.is_some() {
        return server_error(ServerError::FailedPrecondition(
            "this link finishes an onboarding already started; it cannot connect an app \
             registration"
                .into(),
        ));
    }
    // By the attach's rules (gRPC's, its field names) before anything is looked up or
    // recorded: a secret pasted as the client id never reaches the audit log's intent.
    let typed = RegistrationRef::new(b.tenant_id.trim(), b.client_id.trim());
    let registration = match typed.checked_for_attach() {
        Ok(r) => r,
        Err(e) => return server_error(e.into()),
    };
    let actor = format!("invitation:{}", rec.id);
    // Attaching validates against Microsoft: an expensive call, as over gRPC.
    if let Err(e) = w.app.guards().expensive(&actor, "AttachRegistration") {
        return server_error(e);
    }
    let creds = w.app.credentials();
    // One Onboard provisioned since the last import joins as a managed registration.
    if let Err(e) = creds.ensure_imported(w.app.engine(), &registration).await {
        return server_error(e.into());
    }
    let req = AttachRequest {
        registration,
        client_secret: SecretString::from(b.client_secret),
        profile: rec.profile.clone(),
        platform_version: (!rec.platform_version.is_empty()).then(|| rec.platform_version.clone()),
        service_ids: vec![rec.service_id.clone()],
        actor: actor.clone(),
    };
    let invitations = w.app.invitations();
    let redeem = |id: String| async move {
        invitations
            .redeem(&actor, &visit.token, &id)
            .await
            .map(|_| ())
    };
    let attached = match creds.attach_for_invitation(req, redeem).await {
        Ok(Gated::Attached(a)) => a,
        Ok(Gated::Refused(e)) => return server_error(e.into()),
        Err(e) => return server_error(e.into()),
    };
    tracing::info!(invitation_id = %rec.id, attachment_id = %attached.attachment_id,
        client_id = %attached.view.client_id, "registration attached by the wizard");
    Json(json!({
        "client_id": attached.view.client_id,
        "tenant_id": attached.view.tenant_id,
        "display_name": attached.view.display_name,
        "provider": w.app.config().platform.provider_name,
    }))
    .into_response()
}
