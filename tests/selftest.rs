//! `onboard selftest --live` against the emulator, configured only through the environment
//! variables docs/live-test.md documents, so the live smoke path (a real `onboard serve`,
//! invite → sign-in → plan → provision → verify → rotate → cancel, request ids) cannot rot.
//! The test plays the admin at the browser: it completes the printed device code, or, with
//! `ONBOARD_LIVE_SIGN_IN=browser` in a tenant whose Conditional Access blocks device codes,
//! answers Microsoft's sign-in page at the printed URL and follows its redirect back to the
//! selftest's server on 127.0.0.1.

use std::time::Duration;

use anyhow::{Result, ensure};
use entra_sim::Faults;
use testkit::onboard_binary;
use testkit::process::{Interactive, Run};
use testkit::sim::{authorize, calm, start, upn};

/// How the test signs in: the selftest's `ONBOARD_LIVE_SIGN_IN`.
#[derive(Clone, Copy, PartialEq)]
enum SignIn {
    DeviceCode,
    Browser,
}

/// Runs `onboard selftest --live` against the emulator, signs in the Global Administrator the
/// way `how` says, and returns the finished run after checking every step passed.
async fn smoke_path(how: SignIn) -> Result<Run> {
    let faults = match how {
        SignIn::DeviceCode => calm(),
        // The tenant's Conditional Access blocks the device code flow.
        SignIn::Browser => Faults {
            block_device_code: true,
            ..calm()
        },
    };
    let sim = start(faults).await?;
    // Listed once without a port: Microsoft ignores a loopback reply address's port, and the
    // selftest's server takes a free one.
    sim.set_token_app_redirect_uris(vec!["http://127.0.0.1/wizard/signed-in".into()]);
    let info = sim.info();
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("entra-sim-ca.pem");
    std::fs::write(&ca, sim.ca_pem())?;
    let run_dir = dir.path().join("run");
    let admin = upn(&info, "globaladmin");
    let base = sim.base_url();
    let sign_in = match how {
        SignIn::DeviceCode => "device-code",
        SignIn::Browser => "browser",
    };
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
        ("ONBOARD_LIVE_SIGN_IN", sign_in),
        // The invitation names the tenant: the sign-in is at it, as for a guest admin.
        ("ONBOARD_LIVE_TENANT", info.tenant_id.as_str()),
    ];
    let mut run = onboard_binary!().spawn(&["selftest", "--live"], &env)?;
    match how {
        SignIn::DeviceCode => {
            let code = run.after("user code:", Duration::from_secs(120)).await?;
            sim.complete_device_login(&code, &admin).await?;
        }
        SignIn::Browser => come_back_from_microsoft(&mut run, &sim).await?,
    }
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
    Ok(run)
}

/// The admin's browser: Microsoft's page at the printed authorization URL, then its redirect
/// to the selftest's server (plain http on 127.0.0.1, the port the server took).
async fn come_back_from_microsoft(run: &mut Interactive, sim: &entra_sim::Sim) -> Result<()> {
    let url = run
        .after("authorization url:", Duration::from_secs(120))
        .await?;
    let back = authorize(sim, &url, "globaladmin", true).await?;
    ensure!(
        back.starts_with("http://127.0.0.1:") && back.contains("/wizard/signed-in?"),
        "Microsoft sent the browser to {back}"
    );
    let page = reqwest::get(&back).await?;
    let status = page.status();
    let text = page.text().await?;
    ensure!(
        status == 200 && text.contains("Microsoft sent you back to Onboard"),
        "{status}: {text}"
    );
    Ok(())
}

#[tokio::test]
async fn the_live_smoke_path_runs_against_the_emulator() -> Result<()> {
    let run = smoke_path(SignIn::DeviceCode).await?;
    assert!(!run.stdout.contains("authorization url:"), "{run}");
    Ok(())
}

/// A tenant that blocks device codes: the same path with the browser sign-in, whose reply
/// address the token app lists once, without the port.
#[tokio::test]
async fn the_live_smoke_path_signs_in_with_the_browser_where_device_codes_are_blocked() -> Result<()>
{
    let run = smoke_path(SignIn::Browser).await?;
    assert!(!run.stdout.contains("user code:"), "{run}");
    let listed = "the token app must list http://127.0.0.1/wizard/signed-in";
    assert!(run.stdout.contains(listed), "{run}");
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
