//! `onboard verify` run as an operator would, against a server started here (with the Entra
//! emulator, a real onboarding and a platform service answering gRPC health): the table and
//! exit codes 0 (no FAIL), 1 (a FAIL) and 2 (the call failed, with the gRPC status).

use anyhow::{Result, ensure};
use testkit::config::{AUDITOR, OPERATOR, PlatformService};
use testkit::platform::Platform;
use testkit::process::Run;
use testkit::sim::users::GLOBAL_ADMIN;
use testkit::sim_server::SimServer;
use testkit::wizard::completed;

/// `onboard verify ARGS`, with `token` as `ONBOARD_TOKEN` when given.
async fn onboard_verify(args: &[&str], token: Option<&str>) -> Result<Run> {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let env: Vec<(&str, &str)> = token.map(|t| ("ONBOARD_TOKEN", t)).into_iter().collect();
    testkit::onboard_binary!().run(&all, &env, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_prints_the_table_and_exits_by_the_worst_status() -> Result<()> {
    let platform = Platform::start("dr-1", true).await?;
    let mut service = PlatformService::grpc("dr-1", &platform.url());
    service.timeout_ms = None;
    let env = SimServer::start_with(|b| Ok(b.platform_service(service))).await?;
    let (token, id) = env.invited_and_signed_in(GLOBAL_ADMIN).await?;
    let done = completed(&env.provision(&token, &id, "Sbc-One").await??)?;
    let server = format!("http://{}", env.server.addr);

    // All OK: exit 0, every check in the table, by service id (token from the environment).
    let o = onboard_verify(
        &["--server", &server, "--service-id", "dr-1"],
        Some(OPERATOR),
    )
    .await?;
    let t = o.to_string();
    println!("{t}");
    ensure!(o.code == Some(0), "{t}");
    for name in [
        "platform_status",
        "client_credentials",
        "tenant_admin_api_token",
        "token_roles",
        "directory_roles",
        "secret_expiry",
        "temporary_app_removed",
        "app_credentials",
    ] {
        ensure!(
            t.lines()
                .any(|l| l.starts_with(name) && l.contains("  OK  ")),
            "{name} not OK in\n{t}"
        );
    }
    ensure!(t.contains("CHECK") && t.contains("overall: OK"), "{t}");
    ensure!(t.contains(&done.client_id), "{t}");

    // The platform stops serving: FAIL, exit 1 (by client id, token as a flag).
    platform.set("dr-1", false).await;
    let o = onboard_verify(
        &[
            "--server",
            &server,
            "--client-id",
            &done.client_id,
            "--token",
            OPERATOR,
        ],
        None,
    )
    .await?;
    let t = o.to_string();
    ensure!(o.code == Some(1), "{t}");
    ensure!(
        t.contains("overall: FAIL") && t.contains("NOT_SERVING"),
        "{t}"
    );

    // Call errors: exit 2 with the status.
    let refusals: [(&str, Option<&str>, &[&str]); 3] = [
        ("dr-9", Some(OPERATOR), &["Verify: NOT_FOUND", "dr-9"]),
        ("dr-1", Some(AUDITOR), &["Verify: PERMISSION_DENIED"]),
        ("dr-1", None, &["Verify: UNAUTHENTICATED"]),
    ];
    for (service, token, says) in refusals {
        let o = onboard_verify(&["--server", &server, "--service-id", service], token).await?;
        let t = o.to_string();
        ensure!(
            o.code == Some(2) && says.iter().all(|s| t.contains(s)),
            "{t}"
        );
    }
    // Neither target: a usage error.
    let o = onboard_verify(&["--server", &server], Some(OPERATOR)).await?;
    ensure!(o.code == Some(2), "{o}");
    Ok(())
}
