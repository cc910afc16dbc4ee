//! `onboard selftest --live` against the emulator, configured only through the environment
//! variables docs/live-test.md documents, so the live smoke path (a real `onboard serve`,
//! invite → sign-in → plan → provision → verify → rotate → cancel, request ids) cannot rot.
//! The test plays the admin at the browser: it completes the printed device code.

use std::time::Duration;

use anyhow::Result;
use testkit::onboard_binary;
use testkit::sim::{calm, start, upn};

#[tokio::test]
async fn the_live_smoke_path_runs_against_the_emulator() -> Result<()> {
    let sim = start(calm()).await?;
    let info = sim.info();
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("entra-sim-ca.pem");
    std::fs::write(&ca, sim.ca_pem())?;
    let run_dir = dir.path().join("run");
    let admin = upn(&info, "globaladmin");
    let base = sim.base_url();
    let env = [
        ("ONBOARD_LIVE_UPN", admin.as_str()),
        (
            "ONBOARD_LIVE_TOKEN_APP_ID",
            info.token_app_client_id.as_str(),
        ),
        ("ONBOARD_LIVE_APP_NAME", "Smoke-1"),
        ("ONBOARD_LIVE_AUTHORITY_URL", base.as_str()),
        ("ONBOARD_LIVE_GRAPH_URL", base.as_str()),
        ("ONBOARD_LIVE_TRUST_ROOT", ca.to_str().unwrap_or_default()),
        ("ONBOARD_LIVE_DIR", run_dir.to_str().unwrap_or_default()),
    ];
    let mut run = onboard_binary!().spawn(&["selftest", "--live"], &env)?;
    let code = run.after("user code:", Duration::from_secs(120)).await?;
    sim.complete_device_login(&code, &admin).await?;
    let run = run.finish(Duration::from_secs(300)).await?;
    assert_eq!(run.code, Some(0), "{run}");
    for (n, step) in [
        "invite",
        "sign-in",
        "plan",
        "provision",
        "verify",
        "rotate",
        "cancel",
    ]
    .iter()
    .enumerate()
    {
        let want = format!("[{}/7] {step} OK", n + 1);
        assert!(run.stdout.contains(&want), "{want}: {run}");
    }
    assert!(run.stdout.contains("remove_old"), "{run}");
    assert!(run.stdout.contains("ONBOARDING_STATE_CANCELLED"), "{run}");
    // Every Graph change is listed with the request id the emulator sent back.
    let ids: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains(".create") && l.contains("succeeded"))
        .collect();
    assert!(!ids.is_empty(), "{run}");
    for l in &ids {
        let rid = l.split_whitespace().nth(3).unwrap_or("-");
        assert!(rid.len() == 36 && rid != "-", "no request id in {l:?}");
    }
    assert!(run_dir.join("server.log").exists());
    assert!(run.stdout.contains("selftest passed"), "{run}");
    Ok(())
}

#[tokio::test]
async fn without_live_it_explains_and_runs_nothing() -> Result<()> {
    let run = onboard_binary!()
        .run(
            &["selftest"],
            &[
                ("ONBOARD_LIVE_UPN", "a@b.example"),
                (
                    "ONBOARD_LIVE_TOKEN_APP_ID",
                    "1f2e3d4c-0000-4000-8000-00000000abcd",
                ),
                ("ONBOARD_LIVE_APP_NAME", "Smoke-1"),
            ],
            None,
        )
        .await?;
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stdout.contains("--live"), "{run}");
    Ok(())
}
