//! `onboard serve` is SIGKILLed at random points while it provisions, restarted on the same
//! data directory, and must finish every onboarding with no duplicate object in the emulator
//! and an audit log that exports and verifies.
//!
//! Rounds: `ONBOARD_KILL_ROUNDS` (default 6); seed: `ONBOARD_KILL_SEED` (default: the clock,
//! printed so a failure can be replayed).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use testkit::child::replay_plan;
use testkit::onboard_binary;
use testkit::process::{ServerFiles, log_tail};
use testkit::sim::{TOKEN_APP, calm, users::GLOBAL_ADMIN};
use testkit::snapshot::{no_duplicates, sps_where};
use testkit::wizard::{invite, provision_stream, signed_in, wait_settled};

/// Where a round's first kill lands.
#[derive(Debug)]
enum KillAt {
    /// After this many Provision events reached the wizard.
    Events(u64),
    /// This long after Provision was called (may land in the middle of a Graph call).
    Delay(Duration),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_provision_resumes_without_duplicates() -> Result<()> {
    let (rounds, mut rng) = replay_plan("ONBOARD_KILL", 6);
    let seed = rng.seed;

    // Each Graph call takes 25 ms, so a run lasts long enough for kills to land inside it.
    let sim = testkit::sim::start(Faults {
        latency_ms: 25,
        seed: Some(seed),
        ..calm()
    })
    .await?;
    let onboard = onboard_binary!();
    let files = ServerFiles::new(&sim)?;
    let log = files.log.clone();
    let mut server = onboard.serve(&files).await?;
    let mut names = Vec::new();
    let mut kills = 0;

    for round in 0..rounds {
        let ch = server.channel().await?;
        let token = invite(
            ch.clone(),
            &format!("dr-kill-{round}"),
            "direct-routing",
            None,
        )
        .await?
        .0;
        let id = signed_in(ch.clone(), &sim, &token, GLOBAL_ADMIN)
            .await?
            .onboarding_id;
        let name = format!("Kill-{round}");
        let at = if rng.below(2) == 0 {
            KillAt::Events(1 + rng.below(20))
        } else {
            KillAt::Delay(Duration::from_millis(rng.below(500)))
        };
        let mut stream = provision_stream(ch.clone(), &token, &id, &name).await?;
        let started = tokio::time::Instant::now();
        let mut seen = 0u64;
        let mut finished = false;
        loop {
            let wait = match at {
                KillAt::Events(n) if seen >= n => break,
                KillAt::Delay(d) => match d.checked_sub(started.elapsed()) {
                    Some(left) => left,
                    None => break,
                },
                KillAt::Events(_) => Duration::from_secs(60),
            };
            match tokio::time::timeout(wait, stream.message()).await {
                Err(_) => break,
                Ok(Ok(Some(_))) => seen += 1,
                Ok(Ok(None)) => {
                    finished = true;
                    break;
                }
                Ok(Err(status)) => bail!("round {round}: Provision failed: {status:?}"),
            }
        }
        println!("round {round}: {at:?}, killed after {seen} events (finished first: {finished})");
        drop(stream);
        server.kill9()?;
        kills += 1;
        server = onboard.serve(&files).await?;
        // Every third round, kill the restarted server again while it resumes.
        if round % 3 == 2 {
            tokio::time::sleep(Duration::from_millis(50 + rng.below(400))).await;
            server.kill9()?;
            kills += 1;
            server = onboard.serve(&files).await?;
        }
        let info = wait_settled(server.channel().await?, &id, Duration::from_secs(120))
            .await
            .with_context(|| server_log(&log))?;
        ensure!(
            info.state() == pb::OnboardingState::Completed,
            "round {round}: {info:?}\n{}",
            server_log(&log)
        );
        names.push(name);
    }

    let snap = sim.snapshot();
    for name in &names {
        no_duplicates(&snap, name)
            .map(drop)
            .with_context(|| format!("app {name}"))?;
    }
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).is_empty(),
        "the temporary app is still there"
    );
    server.terminate()?;
    onboard.export_and_verify(&files)?;
    println!("{rounds} onboardings completed after {kills} SIGKILLs; the audit log verifies");
    Ok(())
}

fn server_log(path: &Path) -> String {
    format!("server log (last lines):\n{}", log_tail(path))
}
