//! The Onboarding service end to end over real loopback sockets: a gRPC client, the server,
//! and the HTTPS Entra emulator (`entra_sim::Sim`) the server's Entra client trusts through
//! `entra.extra_trust_roots`. The happy path, the audit trail, and who may look.

use anyhow::{Context, Result, bail, ensure};
use onboard_proto::v1 as pb;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use pb::provision_event::Event as PE;
use testkit::audit::{assert_direct_routing_changes, change_pairs, phases};
use testkit::server::{ADMIN, AUDITOR, Authed, OPERATOR, bad_fields};
use testkit::server_helpers::{Refusal, Refused, plan};
use testkit::sim::TOKEN_APP;
use testkit::sim_server::SimServer;
use testkit::snapshot::{apps_named, sps_where};
use testkit::wizard::{Browser, completed, drain};
use tonic::Code;

/// Every event of onboarding `id` from `from_event` on, watched with `token` (empty: as `c`'s
/// role).
async fn watched(
    c: &mut OnboardingClient<Authed>,
    id: &str,
    from_event: u64,
    token: &str,
) -> Result<Vec<pb::ProvisionEvent>> {
    let req = pb::WatchRequest {
        onboarding_id: id.into(),
        from_event,
        invitation_token: token.into(),
    };
    drain(c.watch(req).await?.into_inner()).await
}

/// An operator's CancelOnboarding of `id`, which must answer CANCELLED.
async fn cancelled_by_operator(env: &SimServer, id: &str, reason: &str) -> Result<()> {
    let cancelled = env.cancel(id, reason).await?;
    ensure!(
        cancelled.state() == pb::OnboardingState::Cancelled,
        "{cancelled:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_admin_onboards_end_to_end() -> Result<()> {
    let env = SimServer::start().await?;
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
    let get = |token: &str| pb::GetOnboardingRequest {
        onboarding_id: id.clone(),
        invitation_token: token.into(),
    };
    // An onboarding begins with its sign-in: SIGNED_IN already names the instant every later
    // state answers as `created_at`.
    let signed_in = c.get_onboarding(get(&token)).await?.into_inner();
    ensure!(
        signed_in.state() == pb::OnboardingState::SignedIn,
        "{signed_in:?}"
    );
    ensure!(signed_in.created_at.is_some(), "{signed_in:?}");
    let plan = plan(&env.server, &token, &id, "Sbc-One").await??;
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
    let mut done = completed(&events)?;
    // The wizard (an invitation-token caller) never gets the secret; the platform claims it.
    ensure!(done.secret.is_empty() && !done.client_id.is_empty() && !done.key_id.is_empty());
    let claimed = testkit::wizard::claim(env.server.channel().await?, &id).await?;
    ensure!(claimed.key_id == done.key_id && !claimed.secret.is_empty());
    done.secret = claimed.secret;
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
    // The first secret lives `[credentials] secret_lifetime_days` (180 by default), as day-two
    // ones do, not Graph's two years.
    let ends: Vec<i64> = testkit::snapshot::passwords(&snap, &done.client_id)
        .iter()
        .filter_map(|p| p["end_unix"].as_i64())
        .collect();
    let want = time::OffsetDateTime::now_utc().unix_timestamp() + 180 * 86_400;
    ensure!(
        ends.len() == 1 && (ends[0] - want).abs() < 3_600,
        "secret ends {ends:?}, want about {want}"
    );
    ensure!(sps_where(&snap, "app_id", &done.client_id).len() == 1);
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).is_empty(),
        "token app still there"
    );

    // Audit: intent+outcome pairs for every change, sign-in and redemption, no secret.
    let entries = env.server.entries()?;
    assert_direct_routing_changes(&entries, &id)?;
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
    let replay = watched(&mut c, &id, 0, &token).await?;
    ensure!(completed(&replay)?.secret.is_empty(), "secret on replay");
    ensure!(replay.len() == events.len());
    let tail = watched(&mut c, &id, 5, &token).await?;
    ensure!(tail.first().map(|e| e.index) == Some(5), "{tail:?}");
    // Provision again with the same idempotency key (a reconnect) follows the same run: no new
    // app, no secret again.
    let repeat = env.provision(&token, &id, "Sbc-One").await??;
    ensure!(completed(&repeat)?.secret.is_empty() && repeat.len() == events.len());
    ensure!(apps_named(&env.sim.snapshot(), "Sbc-One").len() == 1);
    let info = c.get_onboarding(get(&token)).await?.into_inner();
    ensure!(info.state() == pb::OnboardingState::Completed, "{info:?}");
    ensure!(
        info.created_at == signed_in.created_at,
        "created_at moved from {:?} to {:?}",
        signed_in.created_at,
        info.created_at
    );
    ensure!(info.client_id == done.client_id && info.invitation_id == inv_id);
    let last = events.last().map(|e| e.index).unwrap_or(0);
    ensure!(
        info.events == last,
        "events {} but the stream ended at {last}",
        info.events
    );
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let list = op
        .list_onboardings(pb::ListOnboardingsRequest::default())
        .await?
        .into_inner();
    ensure!(list.onboardings.len() == 1 && list.onboardings[0].onboarding_id == id);
    ensure!(list.onboardings[0].created_at == signed_in.created_at);
    ensure!(phases(&env.server.entries()?, "onboarding.get", &id) == ["succeeded", "succeeded"]);

    // The invitation works once.
    let again = env
        .sign_in(&token, &env.upn("globaladmin"), Browser::Idle)
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
    // Plan says so already, so the wizard tells the admin while they type; both name the field
    // and the rule, as for every name rule.
    let planned = testkit::server_helpers::plan(&env.server, &token2, &id2, "sbc-one")
        .await?
        .refused(Code::AlreadyExists, &["sbc-one"])?;
    let provisioned = env
        .provision(&token2, &id2, "SBC-ONE")
        .await?
        .refused(Code::AlreadyExists, &[])?;
    for s in [planned, provisioned] {
        ensure!(bad_fields(&s) == ["app_name"], "{s:?}");
    }
    ensure!(apps_named(&env.sim.snapshot(), "SBC-ONE").is_empty());

    // Who may look: not anonymous, not an auditor or admin, not another onboarding's token.
    c.get_onboarding(get(""))
        .await
        .refused(Code::Unauthenticated, &[])?;
    for bearer in [AUDITOR, ADMIN] {
        let mut other = env.server.onboarding(Some(bearer)).await?;
        other
            .get_onboarding(get(""))
            .await
            .refused(Code::PermissionDenied, &[])?;
        other
            .list_onboardings(pb::ListOnboardingsRequest::default())
            .await
            .refused(Code::PermissionDenied, &[])?;
    }
    c.get_onboarding(get(&token2))
        .await
        .refused(Code::PermissionDenied, &[])?;
    c.cancel_onboarding(pb::CancelOnboardingRequest {
        onboarding_id: id.clone(),
        invitation_token: token2.clone(),
        ..Default::default()
    })
    .await
    .refused(Code::PermissionDenied, &[])?;
    c.get_onboarding(get("not-a-token"))
        .await
        .refused(Code::Unauthenticated, &[])?;
    // An operator may.
    op.get_onboarding(get("")).await?;

    // The invitation's holder may not undo a completed onboarding (capability table); an
    // operator may, with a reason, and that undoes what was made, audited.
    c.cancel_onboarding(pb::CancelOnboardingRequest {
        onboarding_id: id.clone(),
        reason: "test".into(),
        invitation_token: token.clone(),
    })
    .await
    .refused(Code::PermissionDenied, &[])?;
    cancelled_by_operator(&env, &id, "test").await?;
    ensure!(
        apps_named(&env.sim.snapshot(), "Sbc-One").is_empty(),
        "app not removed"
    );
    let entries = env.server.entries()?;
    ensure!(phases(&entries, "onboarding.cancel_request", &id) == ["intent", "succeeded"]);
    ensure!(phases(&entries, "onboarding.cancel", &id) == ["intent", "succeeded"]);
    env.stop().await
}

/// A cancel stops a run: the operator's Provision stream that started it goes on with the
/// undo's events and ends with Cancelled, instead of an OK end without a final event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provision_stream_cut_by_a_cancel_ends_with_cancelled() -> Result<()> {
    let env = SimServer::start().await?;
    let (_token, id) = env.invited_and_signed_in("globaladmin").await?;
    // Slow Graph down so the cancel lands in the middle of the run.
    env.sim.set_faults(entra_sim::Faults {
        latency_ms: 150,
        device_code_interval_s: Some(1),
        ..Default::default()
    });
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let mut stream = op
        .provision(pb::ProvisionRequest {
            onboarding_id: id.clone(),
            app_name: "Sbc-Cut".into(),
            idempotency_key: "cut".into(),
            invitation_token: String::new(),
            seal_to: None,
        })
        .await?
        .into_inner();
    let mut events = Vec::new();
    while !events
        .iter()
        .any(|e: &pb::ProvisionEvent| matches!(&e.event, Some(PE::Done(d)) if d.step == "app_registration"))
    {
        events.push(stream.message().await?.context("stream ended before the app was made")?);
    }
    cancelled_by_operator(&env, &id, "stop").await?;
    events.extend(drain(stream).await?);
    ensure!(
        matches!(
            events.last().and_then(|e| e.event.as_ref()),
            Some(PE::Cancelled(_))
        ),
        "the Provision stream did not end with Cancelled: {events:#?}"
    );
    // Gap-free: the stream's indexes are 1, 2, 3, ... across the switch to stored events.
    ensure!(
        events.iter().zip(1..).all(|(e, i)| e.index == i),
        "{:?}",
        events.iter().map(|e| e.index).collect::<Vec<_>>()
    );
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_provision_resumes_and_watch_sees_it_finish() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    // Slow Graph down so the restart lands in the middle of the run.
    env.sim.set_faults(entra_sim::Faults {
        latency_ms: 150,
        device_code_interval_s: Some(1),
        ..Default::default()
    });
    let mut c = env.server.onboarding(None).await?;
    let mut stream = c
        .provision(pb::ProvisionRequest {
            onboarding_id: id.clone(),
            app_name: "Sbc-Restart".into(),
            idempotency_key: "k".into(),
            invitation_token: token.clone(),
            seal_to: None,
        })
        .await?
        .into_inner();
    loop {
        let e = stream.message().await?.context("stream ended early")?;
        if matches!(&e.event, Some(PE::Done(d)) if d.step == "client_secret") {
            break;
        }
        ensure!(
            !matches!(e.event, Some(PE::Completed(_))),
            "finished too soon"
        );
    }
    let env = env.restart().await?;
    // The stream of the stopped server ended (with an error or not), never with Completed.
    drop(stream);

    // The wizard's reconnect (the same idempotency key) after the restart follows the resumed
    // run, as before it (the key is kept durably, not only with the lost session).
    let mut c = env.server.onboarding(None).await?;
    let reconnect = pb::ProvisionRequest {
        onboarding_id: id.clone(),
        app_name: "Sbc-Restart".into(),
        idempotency_key: "k".into(),
        invitation_token: token.clone(),
        seal_to: None,
    };
    let followed = drain(c.provision(reconnect).await?.into_inner()).await?;
    ensure!(
        completed(&followed)?.secret.is_empty(),
        "secret to the wizard"
    );

    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let events = watched(&mut op, &id, 0, "").await?;
    let done = completed(&events)?;
    ensure!(done.secret.is_empty(), "secret on Watch");
    let snap = env.sim.snapshot();
    let apps = apps_named(&snap, "Sbc-Restart");
    ensure!(apps.len() == 1, "{} apps", apps.len());
    ensure!(
        apps[0]["passwords"].as_array().map(Vec::len) == Some(1),
        "not one secret"
    );
    ensure!(sps_where(&snap, "app_id", &done.client_id).len() == 1);
    ensure!(sps_where(&snap, "display_name", TOKEN_APP).is_empty());
    let entries = env.server.entries()?;
    change_pairs(&entries, &id)?;
    // The rest was done by the resumed run (actor `system`), not by the first server.
    ensure!(
        entries
            .iter()
            .any(|e| e["onboarding_id"] == id.as_str() && e["actor"] == "system"),
        "nothing was resumed"
    );
    let info = op
        .get_onboarding(pb::GetOnboardingRequest {
            onboarding_id: id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(info.state() == pb::OnboardingState::Completed, "{info:?}");
    // An operator's Provision of it without the key (no sign-in is held since the restart)
    // is refused for the onboarding's state, not sent to a SignIn that would refuse it too.
    let again = pb::ProvisionRequest {
        onboarding_id: id.clone(),
        app_name: "Sbc-Restart".into(),
        ..Default::default()
    };
    op.provision(again)
        .refused(
            Code::FailedPrecondition,
            &["is completed", "cannot be provisioned again"],
        )
        .await?;
    // The invitation no longer unlocks Plan once the onboarding completed (capability table;
    // before that change: FAILED_PRECONDITION for the session lost in the restart).
    let after = plan(&env.server, &token, &id, "Sbc-Other").await?;
    after.refused(Code::PermissionDenied, &[])?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_sign_in_and_provision_lets_the_same_invitation_sign_in_again()
-> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    // Sign-ins live in memory: a restart loses this one before any run began.
    let env = env.restart().await?;
    // Provision, Plan and Watch say so with the SIGN_IN_AGAIN violation programs (and the
    // wizard, which offers the new sign-in) read.
    let sign_in_again = |s: &tonic::Status| {
        tonic_types::StatusExt::get_details_precondition_failure(s)
            .is_some_and(|p| p.violations.iter().any(|v| v.r#type == "SIGN_IN_AGAIN"))
    };
    let lost = env
        .provision(&token, &id, "Sbc-Again")
        .await?
        .refused(Code::FailedPrecondition, &["sign in"])?;
    ensure!(sign_in_again(&lost), "{lost:?}");
    let planned = plan(&env.server, &token, &id, "Sbc-Again")
        .await?
        .refused(Code::FailedPrecondition, &["sign in"])?;
    ensure!(sign_in_again(&planned), "{planned:?}");
    // Watch, like GetOnboarding and Plan, says what it takes, not that there is no such thing.
    let watch = env
        .server
        .onboarding(None)
        .await?
        .watch(pb::WatchRequest {
            onboarding_id: id.clone(),
            from_event: 0,
            invitation_token: token.clone(),
        })
        .await
        .err()
        .context("a Watch of an onboarding without a sign-in or a run was accepted")?;
    ensure!(
        watch.code() == Code::FailedPrecondition
            && watch.message().contains("sign in again")
            && sign_in_again(&watch),
        "{watch:?}"
    );
    // The used invitation signs in again, for the same onboarding, and it completes.
    let again = env.signed_in(&token, "globaladmin").await?;
    ensure!(again.onboarding_id == id, "{again:?}");
    let events = env.provision(&token, &id, "Sbc-Again").await?;
    completed(&events.map_err(|s| anyhow::anyhow!("provision: {s:?}"))?)?;
    // With a run under way (here, finished), the invitation is spent as before.
    let e = testkit::wizard::start_sign_in(
        env.server.channel().await?,
        &token,
        &env.upn("globaladmin"),
    )
    .await
    .err()
    .context("a used invitation signed in a second time")?;
    ensure!(
        e.code() == Code::FailedPrecondition && e.message().contains("already been used"),
        "{e:?}"
    );
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_page_token_survives_its_onboarding_leaving_the_filter() -> Result<()> {
    let (env, first) = SimServer::with_onboarding("direct-routing", "Sbc-Page1").await?;
    let second = env.onboarded("direct-routing", "Sbc-Page2").await?;
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let completed = |page_token: String| pb::ListOnboardingsRequest {
        state: pb::OnboardingState::Completed.into(),
        page_size: 1,
        page_token,
        ..Default::default()
    };
    let page = op
        .list_onboardings(completed(String::new()))
        .await?
        .into_inner();
    ensure!(
        page.onboardings.len() == 1 && page.onboardings[0].onboarding_id == first.onboarding_id
    );
    // The onboarding the token names is undone: it is no longer COMPLETED.
    op.cancel_onboarding(pb::CancelOnboardingRequest {
        onboarding_id: first.onboarding_id.clone(),
        reason: "page token test".into(),
        ..Default::default()
    })
    .await?;
    let next = op
        .list_onboardings(completed(page.next_page_token.clone()))
        .await?
        .into_inner();
    let ids: Vec<_> = next
        .onboardings
        .iter()
        .map(|o| o.onboarding_id.clone())
        .collect();
    ensure!(ids == [second.onboarding_id.clone()], "{ids:?}");
    // The token continues only the request it came from: not another state filter.
    let mut failed = completed(page.next_page_token.clone());
    failed.state = pb::OnboardingState::Failed.into();
    op.list_onboardings(failed)
        .await
        .refused(Code::InvalidArgument, &["page_token"])?;
    op.list_onboardings(completed("garbage".into()))
        .await
        .refused(Code::InvalidArgument, &["page_token"])?;
    env.stop().await
}
