//! The Onboarding service end to end over real loopback sockets: a gRPC client, the server,
//! and the HTTPS Entra emulator (`entra_sim::Sim`) the server's Entra client trusts through
//! `entra.extra_trust_roots`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{ADMIN, AUDITOR, OPERATOR, TestServer, bad_fields};
use entra_sim::{Faults, Sim, SimConfig, SimInfo};
use onboard_proto::v1 as pb;
use pb::provision_event::Event as PE;
use pb::sign_in_event::Event as SE;
use serde_json::Value;
use tonic::Code;

const TOKEN_APP: &str = "Sandbox1-sp2-token";

/// The emulator and a server pointed at it.
struct Env {
    /// The Entra emulator (1 s device-code interval).
    sim: Sim,
    /// Its tenant and users.
    info: SimInfo,
    /// The server under test.
    server: TestServer,
}

async fn start() -> Result<Env> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Sim::start(
        listener,
        SimConfig {
            faults: Faults {
                device_code_interval_s: Some(1),
                seed: Some(7),
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await?;
    let info = sim.info();
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("sim-ca.pem");
    std::fs::write(&ca, sim.ca_pem())?;
    let extra = format!(
        r#"
[entra]
authority_url = "{base}"
graph_url = "{base}"
extra_trust_roots = ["{ca}"]
token_app_client_id = "{client}"
"#,
        base = sim.base_url(),
        ca = ca.display(),
        client = info.token_app_client_id,
    );
    let text = common::base_config(dir.path(), &extra)?;
    let server = TestServer::start_with(dir, &text).await?;
    Ok(Env { sim, info, server })
}

impl Env {
    fn upn(&self, nick: &str) -> String {
        format!("{nick}@{}", self.info.tenant_domain)
    }

    /// A new invitation (operator); returns (token, invitation id).
    async fn invite(&self, valid_for: Option<Duration>) -> Result<(String, String)> {
        let mut c = self.server.invitations(Some(OPERATOR)).await?;
        let r = c
            .create_invitation(pb::CreateInvitationRequest {
                customer: "Contoso".into(),
                service_id: "dr-1".into(),
                profile: "direct-routing".into(),
                valid_for: valid_for.map(|d| prost_types::Duration {
                    seconds: d.as_secs() as i64,
                    nanos: d.subsec_nanos() as i32,
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        let id = r.invitation.context("invitation")?.id;
        Ok((r.token, id))
    }

    /// SignIn with `token` for `upn`; when the code arrives the person at the browser signs in
    /// as `as_nick` (or declines). Returns every event, or the terminal status.
    async fn sign_in(
        &self,
        token: &str,
        upn: &str,
        as_nick: Option<&str>,
        decline: bool,
    ) -> Result<Result<Vec<pb::SignInEvent>, tonic::Status>> {
        let mut c = self.server.onboarding(None).await?;
        let mut stream = match c
            .sign_in(pb::SignInRequest {
                invitation_token: token.into(),
                admin_upn: upn.into(),
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(status) => return Ok(Err(status)),
        };
        let mut events = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(60), stream.message()).await?;
            match next {
                Ok(Some(e)) => {
                    if let Some(SE::DeviceCode(code)) = &e.event {
                        ensure!(!code.onboarding_id.is_empty() && !code.message.is_empty());
                        if let Some(nick) = as_nick {
                            let who = self.upn(nick);
                            if decline {
                                self.sim.decline_device_login(&code.user_code, &who).await?;
                            } else {
                                self.sim
                                    .complete_device_login(&code.user_code, &who)
                                    .await?;
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

    /// A successful sign-in as `nick`; returns the SignedIn event.
    async fn signed_in(&self, token: &str, nick: &str) -> Result<pb::SignedIn> {
        let events = self
            .sign_in(token, &self.upn(nick), Some(nick), false)
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

    /// Provision with the invitation token; all events or the status.
    async fn provision(
        &self,
        token: &str,
        id: &str,
        name: &str,
    ) -> Result<Result<Vec<pb::ProvisionEvent>, tonic::Status>> {
        let mut c = self.server.onboarding(None).await?;
        let stream = c
            .provision(pb::ProvisionRequest {
                onboarding_id: id.into(),
                app_name: name.into(),
                idempotency_key: format!("key-{id}"),
                invitation_token: token.into(),
            })
            .await;
        match stream {
            Ok(s) => Ok(Ok(drain(s.into_inner()).await?)),
            Err(status) => Ok(Err(status)),
        }
    }
}

/// Reads a ProvisionEvent stream to its end.
async fn drain(mut s: tonic::Streaming<pb::ProvisionEvent>) -> Result<Vec<pb::ProvisionEvent>> {
    let mut out = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(120), s.message()).await?? {
        out.push(e);
    }
    Ok(out)
}

fn completed(events: &[pb::ProvisionEvent]) -> Result<pb::Completed> {
    match events.last().and_then(|e| e.event.clone()) {
        Some(PE::Completed(c)) => Ok(c),
        other => bail!("last event is not Completed: {other:?}\nall: {events:#?}"),
    }
}

fn apps_named<'a>(snap: &'a Value, name: &str) -> Vec<&'a Value> {
    snap["applications"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["props"]["displayName"] == name)
                .collect()
        })
        .unwrap_or_default()
}

fn sps_where<'a>(snap: &'a Value, key: &str, value: &str) -> Vec<&'a Value> {
    snap["service_principals"]
        .as_array()
        .map(|a| a.iter().filter(|x| x[key] == value).collect())
        .unwrap_or_default()
}

/// Every Entra change of `onboarding_id` is an intent followed by one outcome with the same
/// correlation id; returns action -> succeeded count.
fn change_pairs(entries: &[Value], onboarding_id: &str) -> Result<HashMap<String, usize>> {
    let mut open: HashMap<String, String> = HashMap::new();
    let mut done: HashMap<String, usize> = HashMap::new();
    for e in entries
        .iter()
        .filter(|e| e["onboarding_id"] == onboarding_id)
    {
        let action = e["action"].as_str().context("action")?.to_owned();
        if action.starts_with("onboarding.") || action.starts_with("invitation.") {
            continue;
        }
        let crid = e["correlation_id"]
            .as_str()
            .context("correlation_id")?
            .to_owned();
        match e["phase"].as_str() {
            Some("intent") => ensure!(open.insert(crid, action).is_none(), "intent twice"),
            Some(p @ ("succeeded" | "failed")) => {
                let a = open.remove(&crid).context("outcome without intent")?;
                ensure!(a == action, "outcome {action} for intent {a}");
                if p == "succeeded" {
                    *done.entry(action).or_default() += 1;
                }
            }
            other => bail!("bad phase {other:?}"),
        }
    }
    ensure!(open.is_empty(), "intents without outcome: {open:?}");
    Ok(done)
}

fn phases(entries: &[Value], action: &str, onboarding_id: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["action"] == action && e["onboarding_id"] == onboarding_id)
        .filter_map(|e| e["phase"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_admin_onboards_end_to_end() -> Result<()> {
    let env = start().await?;
    let (token, inv_id) = env.invite(None).await?;
    let signed = env.signed_in(&token, "globaladmin").await?;
    ensure!(signed.tenant_id == env.info.tenant_id, "{signed:?}");
    ensure!(signed.upn.eq_ignore_ascii_case(&env.upn("globaladmin")));
    ensure!(
        signed
            .roles_held
            .iter()
            .any(|r| r == "Global Administrator"),
        "{signed:?}"
    );
    ensure!(signed.roles_missing.is_empty(), "{signed:?}");
    let id = signed.onboarding_id.clone();

    let mut c = env.server.onboarding(None).await?;
    let plan = c
        .plan(pb::PlanRequest {
            onboarding_id: id.clone(),
            app_name: "Sbc-One".into(),
            invitation_token: token.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(!plan.blocked, "{plan:?}");
    ensure!(
        plan.changes
            .iter()
            .any(|c| c.action == "app_registration.create")
    );
    ensure!(
        apps_named(&env.sim.snapshot(), "Sbc-One").is_empty(),
        "the plan changed Entra"
    );

    let events = env.provision(&token, &id, "Sbc-One").await??;
    let done = completed(&events)?;
    ensure!(!done.secret.is_empty() && !done.client_id.is_empty() && !done.key_id.is_empty());
    ensure!(done.tenant_id == env.info.tenant_id);
    for step in ["app_registration", "service_principal", "client_secret"] {
        ensure!(
            events
                .iter()
                .any(|e| matches!(&e.event, Some(PE::Done(d)) if d.step == step)),
            "no Done for {step}"
        );
    }
    ensure!(
        events.windows(2).all(|w| w[0].index < w[1].index),
        "indexes not increasing"
    );

    // Entra: exactly one app and one SP for the name; the temporary token app is gone.
    let snap = env.sim.snapshot();
    let apps = apps_named(&snap, "Sbc-One");
    ensure!(apps.len() == 1, "{} apps", apps.len());
    ensure!(apps[0]["app_id"] == done.client_id.as_str());
    ensure!(sps_where(&snap, "app_id", &done.client_id).len() == 1);
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).is_empty(),
        "token app still there"
    );

    // Audit: intent+outcome pairs for every change, sign-in and redemption, no secret.
    let entries = env.server.entries()?;
    let pairs = change_pairs(&entries, &id)?;
    for (action, n) in [
        ("app_registration.create", 1),
        ("service_principal.create", 1),
        ("client_secret.add", 1),
        ("app_role_assignment.create", 3),
        ("directory_role_assignment.create", 1),
        ("temporary_app.delete", 1),
    ] {
        ensure!(
            pairs.get(action) == Some(&n),
            "{action}: {:?}",
            pairs.get(action)
        );
    }
    ensure!(phases(&entries, "onboarding.sign_in", &id) == ["intent", "succeeded"]);
    ensure!(phases(&entries, "invitation.redeem", &id) == ["intent", "succeeded"]);
    ensure!(phases(&entries, "onboarding.provision", &id) == ["intent", "succeeded"]);
    let actor = format!("invitation:{inv_id}");
    ensure!(
        entries
            .iter()
            .filter(|e| e["action"] == "onboarding.sign_in")
            .all(|e| e["actor"] == actor.as_str())
    );
    ensure!(
        !serde_json::to_string(&entries)?.contains(&done.secret),
        "secret in the audit log"
    );
    ensure!(
        !serde_json::to_string(&entries)?.contains(&token),
        "token in the audit log"
    );

    // Watch replays without the secret; Get and List agree.
    let replay = drain(
        c.watch(pb::WatchRequest {
            onboarding_id: id.clone(),
            from_event: 0,
            invitation_token: token.clone(),
        })
        .await?
        .into_inner(),
    )
    .await?;
    ensure!(completed(&replay)?.secret.is_empty(), "secret on replay");
    ensure!(replay.len() == events.len());
    let info = c
        .get_onboarding(pb::GetOnboardingRequest {
            onboarding_id: id.clone(),
            invitation_token: token.clone(),
        })
        .await?
        .into_inner();
    ensure!(info.state() == pb::OnboardingState::Completed, "{info:?}");
    ensure!(info.client_id == done.client_id && info.invitation_id == inv_id);
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let list = op
        .list_onboardings(pb::ListOnboardingsRequest::default())
        .await?
        .into_inner();
    ensure!(list.onboardings.len() == 1 && list.onboardings[0].onboarding_id == id);
    ensure!(phases(&env.server.entries()?, "onboarding.get", &id) == ["succeeded"]);

    // The invitation works once.
    let again = env
        .sign_in(&token, &env.upn("globaladmin"), None, false)
        .await?;
    match again {
        Err(s) => ensure!(
            s.code() == Code::FailedPrecondition && s.message().contains("already been used"),
            "{s:?}"
        ),
        Ok(e) => bail!("a used invitation signed in again: {e:?}"),
    }

    // The same name (any case) for another onboarding of the tenant is taken.
    let (token2, _) = env.invite(None).await?;
    let id2 = env.signed_in(&token2, "globaladmin").await?.onboarding_id;
    match env.provision(&token2, &id2, "SBC-ONE").await? {
        Err(s) => ensure!(s.code() == Code::AlreadyExists, "{s:?}"),
        Ok(e) => bail!("duplicate name provisioned: {e:?}"),
    }
    ensure!(apps_named(&env.sim.snapshot(), "SBC-ONE").is_empty());

    // Who may look: not anonymous, not an auditor or admin, not another onboarding's token.
    let get = |token: &str| pb::GetOnboardingRequest {
        onboarding_id: id.clone(),
        invitation_token: token.into(),
    };
    let status = c
        .get_onboarding(get(""))
        .await
        .err()
        .context("anonymous get")?;
    ensure!(status.code() == Code::Unauthenticated, "{status:?}");
    for bearer in [AUDITOR, ADMIN] {
        let mut other = env.server.onboarding(Some(bearer)).await?;
        let status = other.get_onboarding(get("")).await.err().context("get")?;
        ensure!(status.code() == Code::PermissionDenied, "{status:?}");
        let status = other
            .list_onboardings(pb::ListOnboardingsRequest::default())
            .await
            .err()
            .context("list")?;
        ensure!(status.code() == Code::PermissionDenied, "{status:?}");
    }
    let status = c
        .get_onboarding(get(&token2))
        .await
        .err()
        .context("other token")?;
    ensure!(status.code() == Code::PermissionDenied, "{status:?}");
    let status = c
        .cancel_onboarding(pb::CancelOnboardingRequest {
            onboarding_id: id.clone(),
            invitation_token: token2.clone(),
            ..Default::default()
        })
        .await
        .err()
        .context("cancel with another token")?;
    ensure!(status.code() == Code::PermissionDenied, "{status:?}");
    let status = c
        .get_onboarding(get("not-a-token"))
        .await
        .err()
        .context("bad token")?;
    ensure!(status.code() == Code::Unauthenticated, "{status:?}");
    // An operator may.
    op.get_onboarding(get("")).await?;
    env.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_failures_are_precise_and_keep_the_invitation() -> Result<()> {
    let env = start().await?;
    let (token, _) = env.invite(None).await?;
    let ga = env.upn("globaladmin");

    // Declined: PERMISSION_DENIED; the invitation is still usable.
    match env.sign_in(&token, &ga, Some("globaladmin"), true).await? {
        Err(s) => ensure!(
            s.code() == Code::PermissionDenied && s.message().contains("declined"),
            "{s:?}"
        ),
        Ok(e) => bail!("declined sign-in succeeded: {e:?}"),
    }
    // Someone else signs in: FAILED_PRECONDITION naming both.
    match env.sign_in(&token, &ga, Some("appadmin"), false).await? {
        Err(s) => ensure!(
            s.code() == Code::FailedPrecondition
                && s.message().contains("appadmin")
                && s.message().contains("globaladmin"),
            "{s:?}"
        ),
        Ok(e) => bail!("wrong user signed in: {e:?}"),
    }
    // No admin role at all: FAILED_PRECONDITION naming the role needed.
    match env
        .sign_in(&token, &env.upn("user"), Some("user"), false)
        .await?
    {
        Err(s) => ensure!(
            s.code() == Code::FailedPrecondition
                && s.message().contains("Application Administrator"),
            "{s:?}"
        ),
        Ok(e) => bail!("a user without roles signed in: {e:?}"),
    }
    // The code expires before anyone signs in: DEADLINE_EXCEEDED.
    env.sim.set_faults(Faults {
        device_code_interval_s: Some(1),
        device_code_ttl_s: Some(2),
        ..Faults::default()
    });
    match env.sign_in(&token, &ga, None, false).await? {
        Err(s) => ensure!(s.code() == Code::DeadlineExceeded, "{s:?}"),
        Ok(e) => bail!("an expired code signed in: {e:?}"),
    }
    env.sim.set_faults(Faults {
        device_code_interval_s: Some(1),
        ..Faults::default()
    });
    // Each failure was audited as a failed sign-in; none redeemed the invitation.
    let entries = env.server.entries()?;
    let failed = entries
        .iter()
        .filter(|e| e["action"] == "onboarding.sign_in" && e["phase"] == "failed")
        .count();
    ensure!(failed == 4, "{failed} failed sign-ins audited");
    ensure!(!entries.iter().any(|e| e["action"] == "invitation.redeem"));
    // After all that, the right admin still gets in with the same link.
    env.signed_in(&token, "globaladmin").await?;

    // An expired invitation never starts a sign-in.
    let (short, _) = env.invite(Some(Duration::from_secs(1))).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    match env.sign_in(&short, &ga, None, false).await? {
        Err(s) => ensure!(
            s.code() == Code::FailedPrecondition && s.message().contains("expired"),
            "{s:?}"
        ),
        Ok(e) => bail!("an expired invitation signed in: {e:?}"),
    }
    // A forged token is an invalid argument naming the field.
    match env.sign_in("forged", &ga, None, false).await? {
        Err(s) => ensure!(
            s.code() == Code::InvalidArgument && bad_fields(&s) == ["invitation_token"],
            "{s:?}"
        ),
        Ok(e) => bail!("a forged token signed in: {e:?}"),
    }
    env.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_admin_plan_shows_missing_rights_and_provision_is_refused() -> Result<()> {
    let env = start().await?;
    let (token, _) = env.invite(None).await?;
    let signed = env.signed_in(&token, "appadmin").await?;
    ensure!(
        signed
            .roles_missing
            .iter()
            .any(|r| r.contains("Privileged Role Administrator")),
        "{signed:?}"
    );
    let id = signed.onboarding_id;
    let mut c = env.server.onboarding(None).await?;
    let plan = c
        .plan(pb::PlanRequest {
            onboarding_id: id.clone(),
            app_name: "Sbc-Two".into(),
            invitation_token: token.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(plan.blocked, "{plan:?}");
    ensure!(
        plan.changes
            .iter()
            .any(|c| c.action == "directory_role_assignment.create" && !c.missing_roles.is_empty()),
        "{plan:?}"
    );
    ensure!(
        plan.changes
            .iter()
            .any(|c| c.action == "app_registration.create" && c.missing_roles.is_empty())
    );
    let before = env.server.app.audit().size();
    match env.provision(&token, &id, "Sbc-Two").await? {
        Err(s) => ensure!(
            s.code() == Code::FailedPrecondition
                && s.message().contains("Privileged Role Administrator"),
            "{s:?}"
        ),
        Ok(e) => bail!("provisioned without rights: {e:?}"),
    }
    let snap = env.sim.snapshot();
    ensure!(apps_named(&snap, "Sbc-Two").is_empty(), "an app was made");
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).len() == 1,
        "token app removed"
    );
    // Only the refused request itself was recorded (intent and failure), no Entra change.
    let entries = env.server.entries()?;
    let new: Vec<&str> = entries[before as usize..]
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    ensure!(
        new == ["onboarding.provision", "onboarding.provision"],
        "{new:?}"
    );
    env.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_rules_are_field_violations_on_app_name() -> Result<()> {
    let env = start().await?;
    let (token, _) = env.invite(None).await?;
    let id = env.signed_in(&token, "globaladmin").await?.onboarding_id;
    let mut c = env.server.onboarding(None).await?;
    for (name, rule) in [
        ("ab", "3 to 15 characters"),
        ("abcdefghijklmnop", "3 to 15 characters"),
        ("a.bc", "dot"),
        ("a bc", "blanks"),
        ("a/bc", "must not contain '/'"),
        ("Audit", "reserved"),
    ] {
        let plan = c
            .plan(pb::PlanRequest {
                onboarding_id: id.clone(),
                app_name: name.into(),
                invitation_token: token.clone(),
                ..Default::default()
            })
            .await
            .err()
            .context("plan accepted a bad name")?;
        let prov = match env.provision(&token, &id, name).await? {
            Err(s) => s,
            Ok(e) => bail!("{name}: provisioned: {e:?}"),
        };
        for s in [plan, prov] {
            ensure!(s.code() == Code::InvalidArgument, "{name}: {s:?}");
            ensure!(bad_fields(&s) == ["app_name"], "{name}: {s:?}");
            use tonic_types::StatusExt;
            let d = s
                .get_details_bad_request()
                .map(|b| b.field_violations[0].description.clone())
                .unwrap_or_default();
            ensure!(d.contains(rule), "{name}: {d:?} does not name {rule:?}");
        }
    }
    ensure!(env.sim.snapshot()["applications"].as_array().map(Vec::len) == Some(0));
    env.server.stop().await?;
    Ok(())
}
