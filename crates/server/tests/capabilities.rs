//! The capability table of `crates/server/src/onboarding/capability.rs` (also in
//! `proto/onboard/v1/onboarding.proto` and ARCHITECTURE.md), every cell over loopback gRPC:
//! what the invitation token unlocks in each state of its onboarding, and that revoking a used
//! invitation cuts its holder off at once, open streams included.
//!
//! "Allowed" means the call was not refused for lack of capability (PERMISSION_DENIED); an
//! allowed call may still fail for its own reasons (Plan while the admin is still signing in is
//! FAILED_PRECONDITION).

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use onboard_proto::v1::sign_in_event::Event as SE;
use testkit::audit::phases;
use testkit::server::OPERATOR;
use testkit::server_helpers::{Refusal, Refused, code_of};
use testkit::sim_server::SimServer;
use testkit::wizard::{Browser, device_code, next_sign_in_event};
use tonic::{Code, Status};

/// Seconds a customer may still Watch a finished onboarding: short, for the test, and long
/// enough for the in-grace calls that follow the finish on a busy machine.
const GRACE: u64 = 6;

const PLAN: &str = "Plan";
const PROVISION: &str = "Provision";
const RECONNECT: &str = "Provision (reconnect)";
const WATCH: &str = "Watch";
const GET: &str = "GetOnboarding";
const CANCEL: &str = "CancelOnboarding";

/// The cells of a finished onboarding within the grace: look only.
const LOOK_ONLY: [(&str, bool); 5] = [
    (PLAN, false),
    (PROVISION, false),
    (CANCEL, false),
    (WATCH, true),
    (GET, true),
];

async fn start() -> Result<SimServer> {
    SimServer::start_with(|b| Ok(b.limit("customer_watch_grace_secs", GRACE))).await
}

/// The status code of `rpc` on onboarding `id` with invitation `token` (Ok when answered).
async fn call(env: &SimServer, rpc: &str, token: &str, id: &str, name: &str) -> Result<Code> {
    let mut c = env.server.onboarding(None).await?;
    let (id, token) = (id.to_owned(), token.to_owned());
    let code = match rpc {
        PLAN => {
            let r = pb::PlanRequest {
                onboarding_id: id,
                app_name: name.into(),
                invitation_token: token,
                ..Default::default()
            };
            code_of(c.plan(r).await)
        }
        // A new Provision (its own idempotency key), and the wizard's reconnect (the key of
        // `testkit::wizard`'s Provision), which only follows the run and counts as Watch.
        PROVISION | RECONNECT => {
            let idempotency_key = if rpc == RECONNECT {
                format!("key-{id}")
            } else {
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                format!("cell-{id}-{n}")
            };
            let r = pb::ProvisionRequest {
                onboarding_id: id,
                app_name: name.into(),
                idempotency_key,
                invitation_token: token,
                seal_to: None,
            };
            code_of(c.provision(r).await)
        }
        WATCH => {
            let r = pb::WatchRequest {
                onboarding_id: id,
                from_event: 1,
                invitation_token: token,
            };
            code_of(c.watch(r).await)
        }
        GET => {
            let r = pb::GetOnboardingRequest {
                onboarding_id: id,
                invitation_token: token,
            };
            code_of(c.get_onboarding(r).await)
        }
        CANCEL => {
            let r = pb::CancelOnboardingRequest {
                onboarding_id: id,
                reason: "customer".into(),
                invitation_token: token,
            };
            code_of(c.cancel_onboarding(r).await)
        }
        other => bail!("no rpc {other}"),
    };
    Ok(code)
}

/// Checks each `(rpc, allowed)` in `cells` for the state named `state`.
async fn expect(
    env: &SimServer,
    state: &str,
    token: &str,
    id: &str,
    cells: &[(&str, bool)],
) -> Result<()> {
    for (rpc, allowed) in cells {
        let code = call(env, rpc, token, id, "Cap-App").await?;
        ensure!(
            (code != Code::PermissionDenied) == *allowed,
            "{state}: {rpc} with the token answered {code:?}; expected {}",
            if *allowed {
                "allowed"
            } else {
                "PERMISSION_DENIED"
            }
        );
    }
    Ok(())
}

/// Checks `cells` for an onboarding that finished as `state` within the grace, then that each
/// is refused once the grace is over; with its customer's (invitation token, onboarding id).
async fn expect_in_grace_then_none(
    env: &SimServer,
    state: &str,
    (token, id): (&str, &str),
    cells: &[(&str, bool)],
) -> Result<()> {
    expect(env, &format!("{state}, in grace"), token, id, cells).await?;
    tokio::time::sleep(Duration::from_secs(GRACE + 1)).await;
    let after: Vec<_> = cells.iter().map(|&(rpc, _)| (rpc, false)).collect();
    expect(env, &format!("{state}, after grace"), token, id, &after).await
}

/// A new invitation signed in as the Global Administrator: (token, onboarding id).
async fn signed_in(env: &SimServer) -> Result<(String, String)> {
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    Ok((token, id))
}

/// The onboarding's state as the operator sees it.
async fn state(env: &SimServer, id: &str) -> Result<pb::OnboardingState> {
    Ok(testkit::wizard::get(env.server.channel().await?, id)
        .await?
        .state())
}

async fn wait_for(env: &SimServer, id: &str, want: pb::OnboardingState) -> Result<()> {
    let what = format!("{id} to reach {want:?}");
    testkit::wait::until(&what, Duration::from_secs(60), async || {
        let now = state(env, id).await?;
        Ok(testkit::wait::settled(now == want, (), now))
    })
    .await
}

/// Slow enough that a run (six stages, a dozen calls: 12 s or more) outlasts the capability
/// checks made while it runs (about 6 s, made at once), even on a loaded machine.
fn slow() -> Faults {
    Faults {
        latency_ms: 1500,
        device_code_interval_s: Some(1),
        ..Faults::default()
    }
}

fn calm() -> Faults {
    Faults {
        device_code_interval_s: Some(1),
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_provisioning_cancelling_and_cancelled() -> Result<()> {
    let env = start().await?;
    // Signed in, no run yet: every customer action.
    let (token, id) = signed_in(&env).await?;
    expect(
        &env,
        "signed in",
        &token,
        &id,
        &[(PLAN, true), (WATCH, true), (GET, true)],
    )
    .await?;
    // SignIn again with the used invitation: refused (the invitation is used).
    env.sign_in(&token, &env.upn("globaladmin"), Browser::Idle)
        .await?
        .refused(Code::FailedPrecondition, &[])?;
    expect(&env, "signed in", &token, &id, &[(CANCEL, true)]).await?;

    // Provisioning (Graph slowed down so the run lasts).
    let (token, id) = signed_in(&env).await?;
    env.sim.set_faults(slow());
    expect(&env, "signed in", &token, &id, &[(PROVISION, true)]).await?;
    wait_for(&env, &id, pb::OnboardingState::Provisioning).await?;
    // At once: Plan and a new Provision each read the tenant (four stages of slow calls), and
    // the run must still be going when the cancel below begins.
    let (a, b) = tokio::join!(
        expect(
            &env,
            "provisioning",
            &token,
            &id,
            &[(PLAN, true), (GET, true)]
        ),
        expect(
            &env,
            "provisioning",
            &token,
            &id,
            &[(PROVISION, true), (WATCH, true)]
        ),
    );
    a.and(b)?;
    // Cancelling: the customer's cancel runs in the background while the cells are checked.
    // (Its own channel: under 1.5 s per Graph call the cancel, which answers once the undo is
    // done, may outlast the kit's 10 s call timeout.)
    let cancel = {
        let ch =
            testkit::server::connect(&env.server.url(), Some(Duration::from_secs(120))).await?;
        let (token, id) = (token.clone(), id.clone());
        tokio::spawn(async move {
            onboard_proto::v1::onboarding_client::OnboardingClient::new(ch)
                .cancel_onboarding(pb::CancelOnboardingRequest {
                    onboarding_id: id,
                    reason: "changed my mind".into(),
                    invitation_token: token,
                })
                .await
        })
    };
    // (The API shows a cancelling onboarding as provisioning; the engine knows.)
    let mut cancelling = false;
    for _ in 0..3000 {
        if env.server.app.engine().get(&id)?.map(|o| o.status)
            == Some(provision::Status::Cancelling)
        {
            cancelling = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !cancelling {
        let r = cancel.await?;
        let status = env.server.app.engine().get(&id)?.map(|o| o.status);
        bail!("{id} never seen cancelling; the cancel answered {r:?}; now {status:?}");
    }
    expect(
        &env,
        "cancelling",
        &token,
        &id,
        &[
            (PLAN, false),
            (PROVISION, false),
            (WATCH, true),
            (GET, true),
            (CANCEL, true),
        ],
    )
    .await?;
    // The cells are checked: the undo may now run at full speed.
    env.sim.set_faults(calm());
    cancel.await??;
    wait_for(&env, &id, pb::OnboardingState::Cancelled).await?;
    // Cancelled, within the grace: look only.
    expect_in_grace_then_none(&env, "cancelled", (&token, &id), &LOOK_ONLY).await?;
    env.server.stop().await
}

/// A signed-in onboarding has no hand-off link yet (FAILED_PRECONDITION, not NOT_FOUND), and
/// once cancelled before its run it stays cancelled: Get answers CANCELLED, a second Cancel the
/// same, Watch and Plan FAILED_PRECONDITION (the token: PERMISSION_DENIED, as for any
/// cancelled onboarding), and its invitation cannot sign in to it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_before_its_run_stays_cancelled() -> Result<()> {
    let env = start().await?;
    let (token, id) = signed_in(&env).await?;
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let link = |token: &str| pb::IssueHandOffLinkRequest {
        onboarding_id: id.clone(),
        invitation_token: token.to_owned(),
    };
    for t in [token.as_str(), ""] {
        op.issue_hand_off_link(link(t))
            .await
            .refused(Code::FailedPrecondition, &["not waiting"])?;
    }
    let cancel = pb::CancelOnboardingRequest {
        onboarding_id: id.clone(),
        reason: "not yet".into(),
        invitation_token: String::new(),
    };
    let first = op.cancel_onboarding(cancel.clone()).await?.into_inner();
    ensure!(first.state() == pb::OnboardingState::Cancelled, "{first:?}");
    ensure!(state(&env, &id).await? == pb::OnboardingState::Cancelled);
    let again = op.cancel_onboarding(cancel).await?.into_inner();
    ensure!(again.state() == pb::OnboardingState::Cancelled, "{again:?}");
    // Each request is on the log as an intent and its outcome, the repeated one too.
    let requests = phases(&env.server.entries()?, "onboarding.cancel_request", &id);
    ensure!(
        requests == ["intent", "succeeded", "intent", "succeeded"],
        "{requests:?}"
    );
    let watch = pb::WatchRequest {
        onboarding_id: id.clone(),
        from_event: 1,
        invitation_token: String::new(),
    };
    op.watch(watch)
        .await
        .refused(Code::FailedPrecondition, &["cancelled"])?;
    let plan = pb::PlanRequest {
        onboarding_id: id.clone(),
        app_name: "Cap-App".into(),
        ..Default::default()
    };
    op.plan(plan)
        .await
        .refused(Code::FailedPrecondition, &["cancelled"])?;
    // The customer: look only, within the grace.
    expect(
        &env,
        "cancelled before its run",
        &token,
        &id,
        &LOOK_ONLY[..3],
    )
    .await?;
    ensure!(call(&env, GET, &token, &id, "Cap-App").await? == Code::Ok);
    // Signing in again with the used invitation: refused, the onboarding is over.
    env.sign_in(&token, &env.upn("globaladmin"), Browser::Idle)
        .await?
        .refused(Code::FailedPrecondition, &[])?;
    ensure!(state(&env, &id).await? == pb::OnboardingState::Cancelled);
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_completed() -> Result<()> {
    let env = start().await?;
    // Failed (the tenant refuses passwords): every customer action; cancel last.
    let (token, id) = signed_in(&env).await?;
    env.sim.set_faults(Faults {
        forbid_passwords: true,
        ..calm()
    });
    let _ = env.provision(&token, &id, "Cap-Failed").await?;
    wait_for(&env, &id, pb::OnboardingState::Failed).await?;
    expect(
        &env,
        "failed",
        &token,
        &id,
        &[(PLAN, true), (WATCH, true), (GET, true), (PROVISION, true)],
    )
    .await?;
    wait_for(&env, &id, pb::OnboardingState::Failed).await?;
    expect(&env, "failed", &token, &id, &[(CANCEL, true)]).await?;
    env.sim.set_faults(calm());

    // Completed, within the grace: Watch and Get (and the wizard's reconnect); never Cancel.
    let o = env.onboarded("direct-routing", "Cap-Done").await?;
    let (token, id) = (o.token.clone(), o.onboarding_id.clone());
    let cells = [LOOK_ONLY.as_slice(), &[(RECONNECT, true)]].concat();
    expect_in_grace_then_none(&env, "completed", (&token, &id), &cells).await?;
    // Undoing it is an operator's action, with a reason.
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let mut req = pb::CancelOnboardingRequest {
        onboarding_id: id.clone(),
        ..Default::default()
    };
    op.cancel_onboarding(req.clone())
        .refused(Code::InvalidArgument, &[])
        .await?;
    req.reason = "contract ended".into();
    let done = op.cancel_onboarding(req).await?.into_inner();
    ensure!(done.state() == pb::OnboardingState::Cancelled, "{done:?}");
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_used_invitation_cuts_its_holder_off_at_once() -> Result<()> {
    let env = start().await?;
    let (token, invitation_id) = env.invite(None).await?;
    let id = env.signed_in(&token, "globaladmin").await?.onboarding_id;
    env.sim.set_faults(slow());
    // The customer follows the run.
    let mut stream =
        testkit::wizard::provision_stream(env.server.channel().await?, &token, &id, "Cap-Revoked")
            .await?;
    stream.message().await?.context("first event")?;
    let revoked = env.revoke(&invitation_id, "wrong customer").await?;
    ensure!(revoked.state() == pb::InvitationState::Revoked);
    // The open stream ends with PERMISSION_DENIED (after what was already buffered).
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Code::Ok,
                Err(s) => return s.code(),
            }
        }
    })
    .await
    .context("the stream did not end")?;
    ensure!(
        ended == Code::PermissionDenied,
        "the stream ended with {ended:?}"
    );
    // Every call with the token is refused; the run itself goes on for the operator.
    let cells = [
        (PLAN, false),
        (PROVISION, false),
        (WATCH, false),
        (GET, false),
        (CANCEL, false),
    ];
    expect(&env, "revoked", &token, &id, &cells).await?;
    env.sim.set_faults(calm());
    let info =
        testkit::wizard::wait_settled(env.server.channel().await?, &id, Duration::from_secs(120))
            .await?;
    ensure!(info.state() == pb::OnboardingState::Completed, "{info:?}");
    env.server.stop().await
}

/// A Watch opened with `token` on `id`: its stream, read to the end in a task.
async fn watch_to_end(
    env: &SimServer,
    token: &str,
    id: &str,
) -> Result<tokio::task::JoinHandle<Result<Result<Vec<pb::ProvisionEvent>, Status>>>> {
    let mut stream = env
        .server
        .onboarding(None)
        .await?
        .watch(pb::WatchRequest {
            onboarding_id: id.into(),
            from_event: 0,
            invitation_token: token.into(),
        })
        .await?
        .into_inner();
    Ok(tokio::spawn(async move {
        let mut events = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(120), stream.message()).await? {
                Ok(Some(e)) => events.push(e),
                Ok(None) => return Ok(Ok(events)),
                Err(status) => return Ok(Err(status)),
            }
        }
    }))
}

/// While the device code is out, the DeviceCode event's onboarding id serves Watch and Get
/// (onboarding.proto): Get answers SIGNING_IN, a change waits for SignedIn, and a Watch opened
/// then follows the run, once there is one, to its end. A Watch of a sign-in the admin declines
/// ends with FAILED_PRECONDITION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_signing_in_get_answers_and_watch_waits_for_the_run() -> Result<()> {
    let env = start().await?;
    env.sim.set_faults(calm());
    let upn = env.upn("globaladmin");
    let (token, invitation_id) = env.invite(None).await?;
    let (mut sign_in, code) = device_code(env.server.channel().await?, &token, &upn).await?;
    let id = code.onboarding_id.clone();
    for caller in [token.as_str(), ""] {
        let mut c = env
            .server
            .onboarding((caller.is_empty()).then_some(OPERATOR))
            .await?;
        let info = c
            .get_onboarding(pb::GetOnboardingRequest {
                onboarding_id: id.clone(),
                invitation_token: caller.into(),
            })
            .await?
            .into_inner();
        ensure!(
            info.state() == pb::OnboardingState::SigningIn && info.invitation_id == invitation_id,
            "{info:?}"
        );
    }
    for rpc in [PLAN, PROVISION, CANCEL] {
        let code = call(&env, rpc, &token, &id, "Cap-App").await?;
        ensure!(
            code == Code::FailedPrecondition,
            "{rpc} while signing in: {code:?}"
        );
    }
    let watch = watch_to_end(&env, &token, &id).await?;
    env.sim.complete_device_login(&code.user_code, &upn).await?;
    loop {
        match next_sign_in_event(&mut sign_in).await? {
            Some(SE::SignedIn(s)) => {
                ensure!(s.onboarding_id == id);
                break;
            }
            Some(_) => {}
            None => bail!("the sign-in ended without SignedIn"),
        }
    }
    ensure!(state(&env, &id).await? == pb::OnboardingState::SignedIn);
    let run = env.provision(&token, &id, "Cap-Watch").await?;
    let run = run.map_err(|s| anyhow::anyhow!("Provision refused: {s:?}"))?;
    let watched = watch
        .await??
        .map_err(|s| anyhow::anyhow!("the Watch ended: {s:?}"))?;
    ensure!(
        testkit::wizard::completed(&watched).is_ok() && watched.len() == run.len(),
        "the Watch saw {} events, the run {}: {watched:#?}",
        watched.len(),
        run.len()
    );

    // Declined: the Watch opened during the sign-in ends with FAILED_PRECONDITION.
    let (token, _) = env.invite(None).await?;
    let (mut sign_in, code) = device_code(env.server.channel().await?, &token, &upn).await?;
    let watch = watch_to_end(&env, &token, &code.onboarding_id).await?;
    env.sim.decline_device_login(&code.user_code, &upn).await?;
    while next_sign_in_event(&mut sign_in)
        .await
        .is_ok_and(|e| e.is_some())
    {}
    match watch.await?? {
        Err(s) if s.code() == Code::FailedPrecondition => {}
        other => bail!("the Watch of a declined sign-in ended with {other:?}"),
    }
    let gone = testkit::wizard::get(env.server.channel().await?, &code.onboarding_id).await;
    let gone = gone
        .err()
        .and_then(|e| e.downcast_ref::<Status>().map(Status::code));
    ensure!(
        gone == Some(Code::NotFound),
        "Get after the declined sign-in: {gone:?}"
    );
    env.server.stop().await
}
