//! `onboard ctl onboardings list|get|watch|cancel`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use pb::provision_event::Event as PE;

use testkit::config::OPERATOR;
use testkit::onboard_binary;
use testkit::server::with_token;
use testkit::sim::{calm, users};
use testkit::wizard::{invite, onboard, signed_in};

use crate::{ctl, ctl_json, has_line, json_lines, refused, same_as_grpc, succeeded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboardings_are_watched_listed_shown_and_cancelled() -> Result<()> {
    // Replication lag makes the service principal step retry, so watch has retries to show.
    let sim = testkit::sim::start(Faults {
        replication_lag_ms: 1500,
        ..calm()
    })
    .await?;
    let (_files, server) = onboard_binary!().start(&sim).await?;
    let ch = server.channel().await?;
    let made = onboard(ch.clone(), &sim, "dr-1", "direct-routing", "Ctl-Watch").await?;
    let (id, done) = (made.onboarding_id, made.done);
    let mut grpc = OnboardingClient::new(with_token(ch.clone(), Some(OPERATOR)));

    // watch replays the finished onboarding: steps, retries with reason and wait, the end.
    let r = ctl(&server, OPERATOR, &["onboardings", "watch", &id]).await?;
    ensure!(r.code == Some(0), "{r}\n{}", server.log_tail());
    has_line(&r, |l| l.contains(" started   app_registration"))?;
    let retry = r
        .stdout
        .lines()
        .find(|l| l.contains(" retrying  "))
        .with_context(|| format!("no retry line in\n{r}"))?;
    ensure!(
        retry.contains("retrying in ") && retry.contains("(attempt 2): "),
        "{retry}"
    );
    ensure!(
        r.stdout
            .lines()
            .last()
            .is_some_and(|l| l.contains(" completed tenant ") && l.contains(&done.client_id)),
        "{r}"
    );
    ensure!(!r.stdout.contains(&done.secret) && !r.stderr.contains(&done.secret));

    // watch --output json: one ProvisionEvent per line, as the gRPC Watch replays them.
    let r = ctl(
        &server,
        OPERATOR,
        &["onboardings", "watch", &id, "-o", "json"],
    )
    .await?;
    let lines: Vec<pb::ProvisionEvent> = json_lines(&r, "onboard.v1.ProvisionEvent")?;
    let mut want = Vec::new();
    let mut stream = grpc
        .watch(pb::WatchRequest {
            onboarding_id: id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(30), stream.message()).await?? {
        let end = matches!(
            e.event,
            Some(PE::Completed(_) | PE::Failed(_) | PE::Cancelled(_))
        );
        want.push(e);
        if end {
            break;
        }
    }
    ensure!(lines == want, "json:\n{}", r.stdout);
    ensure!(lines.len() > 5);

    // list and get.
    let r = ctl(&server, OPERATOR, &["onboardings", "list"]).await?;
    has_line(&r, |l| l.starts_with(&id) && l.contains("completed"))?;
    let list = ["onboardings", "list", "-o", "json", "--state", "completed"];
    let r = ctl(&server, OPERATOR, &list).await?;
    let req = pb::ListOnboardingsRequest {
        state: pb::OnboardingState::Completed.into(),
        ..Default::default()
    };
    let listed = same_as_grpc(
        &r,
        "onboard.v1.ListOnboardingsResponse",
        grpc.list_onboardings(req),
    )
    .await?;
    ensure!(listed.onboardings.len() == 1, "{r}");
    let (r, got) = ctl_json::<pb::OnboardingInfo>(
        &server,
        OPERATOR,
        &["onboardings", "get", &id, "-o", "json"],
        "onboard.v1.OnboardingInfo",
    )
    .await?;
    ensure!(
        got == listed.onboardings[0] && got.client_id == done.client_id,
        "{r}"
    );
    let r = ctl(&server, OPERATOR, &["onboardings", "get", &id]).await?;
    ensure!(r.stdout.contains("state:      completed"), "{r}");

    // A signed-in onboarding (nothing made yet) is cancelled.
    let token2 = invite(ch.clone(), "dr-2", "direct-routing", None).await?.0;
    let id2 = signed_in(ch.clone(), &sim, &token2, users::GLOBAL_ADMIN)
        .await?
        .onboarding_id;
    let r = ctl(
        &server,
        OPERATOR,
        &[
            "onboardings",
            "cancel",
            &id2,
            "--reason",
            "customer withdrew",
        ],
    )
    .await?;
    succeeded(&r, "state:      cancelled")?;
    // The completed one is cancelled too (its app removed); watching it now ends with the
    // cancellation and exit 1.
    let r = ctl(
        &server,
        OPERATOR,
        &["onboardings", "cancel", &id, "--reason", "test"],
    )
    .await?;
    succeeded(&r, "state:      cancelled")?;
    let r = ctl(&server, OPERATOR, &["onboardings", "watch", &id]).await?;
    ensure!(
        r.code == Some(1)
            && r.stdout
                .lines()
                .last()
                .is_some_and(|l| l.contains(" cancelled ")),
        "{r}"
    );
    // A malformed id is a usage error naming the field; a well-formed one nothing has, not
    // found.
    let r = ctl(
        &server,
        OPERATOR,
        &["onboardings", "get", "no-such-onboarding"],
    )
    .await?;
    refused(&r, 2, "INVALID_ARGUMENT")?;
    ensure!(r.stderr.contains("onboarding_id"), "{r}");
    let absent = "0190b3d2-0000-7000-8000-0000000000a1";
    let r = ctl(&server, OPERATOR, &["onboardings", "get", absent]).await?;
    refused(&r, 1, "NOT_FOUND")?;
    Ok(())
}
