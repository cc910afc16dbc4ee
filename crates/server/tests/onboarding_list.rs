//! ListOnboardings over loopback gRPC: onboardings before their run (signing in and signed in,
//! held in the server's memory; cancelled before the run, durably) are listed beside the runs, each as GetOnboarding answers it,
//! filtered by state and tenant and paged in one oldest-first order.

use anyhow::{Result, bail, ensure};
use onboard_proto::v1 as pb;
use onboard_proto::v1::sign_in_event::Event as SE;
use testkit::server::OPERATOR;
use testkit::sim::users;
use testkit::sim_server::SimServer;

/// Every onboarding ListOnboardings answers for `state` and `tenant_id`, read `page_size` at a
/// time, with its page count.
async fn listed(
    env: &SimServer,
    state: pb::OnboardingState,
    tenant_id: &str,
    page_size: u32,
) -> Result<(Vec<pb::OnboardingInfo>, usize)> {
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let (mut all, mut pages, mut page_token) = (Vec::new(), 0, String::new());
    loop {
        let page = op
            .list_onboardings(pb::ListOnboardingsRequest {
                tenant_id: tenant_id.into(),
                state: state.into(),
                page_size,
                page_token,
            })
            .await?
            .into_inner();
        pages += 1;
        all.extend(page.onboardings);
        if page.next_page_token.is_empty() {
            return Ok((all, pages));
        }
        ensure!(pages < 20, "the pages never end");
        page_token = page.next_page_token;
    }
}

/// The ids and states of `infos`, in order.
fn rows(infos: &[pb::OnboardingInfo]) -> Vec<(String, pb::OnboardingState)> {
    infos
        .iter()
        .map(|i| (i.onboarding_id.clone(), i.state()))
        .collect()
}

/// One completed onboarding, one signed in and one whose admin is still signing in: the list
/// holds the three (oldest first, as Get answers each), a state filter picks each, a tenant
/// filter leaves out the one whose tenant is not known yet, and pages of one walk the same
/// order. Once the sign-in ends, the onboarding moves from SIGNING_IN to SIGNED_IN; cancelled
/// before its run, it is listed as CANCELLED, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboardings_before_their_run_are_listed_as_get_answers_them() -> Result<()> {
    let (env, done) = SimServer::with_onboarding("direct-routing", "Sbc-List1").await?;
    let (token, _) = env.invite(None).await?;
    let signed_in = env.signed_in(&token, users::GLOBAL_ADMIN).await?;
    let (token3, invitation3) = env.invite(None).await?;
    let upn = env.upn(users::GLOBAL_ADMIN);
    let mut sign_in = testkit::wizard::start_sign_in(env.server.channel().await?, &token3, &upn)
        .await
        .map_err(|s| anyhow::anyhow!("SignIn refused: {s:?}"))?;
    let Some(pb::SignInEvent {
        event: Some(SE::DeviceCode(code)),
    }) = sign_in.message().await?
    else {
        bail!("the sign-in did not begin with a device code");
    };
    let want = vec![
        (done.onboarding_id.clone(), pb::OnboardingState::Completed),
        (
            signed_in.onboarding_id.clone(),
            pb::OnboardingState::SignedIn,
        ),
        (code.onboarding_id.clone(), pb::OnboardingState::SigningIn),
    ];

    let (all, pages) = listed(&env, pb::OnboardingState::Unspecified, "", 0).await?;
    ensure!(rows(&all) == want && pages == 1, "{all:#?}");
    let channel = env.server.channel().await?;
    for info in &all {
        let got = testkit::wizard::get(channel.clone(), &info.onboarding_id).await?;
        ensure!(got == *info, "listed {info:#?}, Get answers {got:#?}");
    }
    let signing_in = &all[2];
    ensure!(
        signing_in.invitation_id == invitation3 && signing_in.tenant_id.is_empty(),
        "{signing_in:#?}"
    );
    ensure!(all[1].tenant_id == signed_in.tenant_id && !all[1].tenant_id.is_empty());

    let (paged, pages) = listed(&env, pb::OnboardingState::Unspecified, "", 1).await?;
    ensure!(
        rows(&paged) == want && pages == 3,
        "{pages} pages: {paged:#?}"
    );
    for (i, state) in [
        pb::OnboardingState::Completed,
        pb::OnboardingState::SignedIn,
        pb::OnboardingState::SigningIn,
    ]
    .into_iter()
    .enumerate()
    {
        let (only, _) = listed(&env, state, "", 0).await?;
        ensure!(
            rows(&only) == want[i..=i],
            "{state:?}: {:?} want {want:?}",
            rows(&only)
        );
    }
    let (tenant, _) = listed(&env, pb::OnboardingState::Unspecified, &all[1].tenant_id, 0).await?;
    ensure!(rows(&tenant) == want[..2], "{tenant:#?}");
    // Tenant ids compare without regard to case, as in Entra.
    let upper = all[1].tenant_id.to_ascii_uppercase();
    ensure!(
        upper != all[1].tenant_id,
        "the tenant id has no letter to test with"
    );
    let (tenant, _) = listed(&env, pb::OnboardingState::Unspecified, &upper, 0).await?;
    ensure!(rows(&tenant) == want[..2], "{upper}: {tenant:#?}");
    let (other, _) = listed(&env, pb::OnboardingState::Unspecified, "other-tenant", 0).await?;
    ensure!(other.is_empty(), "{other:#?}");

    env.sim.complete_device_login(&code.user_code, &upn).await?;
    while let Some(e) = sign_in.message().await? {
        if matches!(e.event, Some(SE::SignedIn(_))) {
            break;
        }
    }
    let (now, _) = listed(&env, pb::OnboardingState::SignedIn, "", 0).await?;
    let ids: Vec<_> = now.iter().map(|i| i.onboarding_id.as_str()).collect();
    ensure!(
        ids == [
            signed_in.onboarding_id.as_str(),
            code.onboarding_id.as_str()
        ],
        "{now:#?}"
    );
    let (none, _) = listed(&env, pb::OnboardingState::SigningIn, "", 0).await?;
    ensure!(none.is_empty(), "{none:#?}");

    // Cancelled before its run: listed as CANCELLED, as Get answers it, also after a restart
    // (the mark is durable; the other signed-in onboarding's sign-in is not).
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    op.cancel_onboarding(pb::CancelOnboardingRequest {
        onboarding_id: signed_in.onboarding_id.clone(),
        reason: "list test".into(),
        ..Default::default()
    })
    .await?;
    let env = env.restart().await?;
    let (cancelled, _) = listed(&env, pb::OnboardingState::Cancelled, "", 0).await?;
    ensure!(
        rows(&cancelled)
            == [(
                signed_in.onboarding_id.clone(),
                pb::OnboardingState::Cancelled
            )],
        "{cancelled:#?}"
    );
    let got = testkit::wizard::get(env.server.channel().await?, &signed_in.onboarding_id).await?;
    ensure!(
        got == cancelled[0],
        "listed {cancelled:#?}, Get answers {got:#?}"
    );
    let (all, _) = listed(&env, pb::OnboardingState::Unspecified, "", 0).await?;
    let ids: Vec<_> = all.iter().map(|i| i.onboarding_id.as_str()).collect();
    ensure!(
        ids == [
            done.onboarding_id.as_str(),
            signed_in.onboarding_id.as_str()
        ],
        "the sign-in lost in the restart is not listed: {all:#?}"
    );
    env.stop().await
}
