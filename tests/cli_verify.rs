//! `onboard verify` run as an operator would, against a server started here (with the Entra
//! emulator, a real onboarding and a platform service answering gRPC health): the table and
//! exit codes 0 (no FAIL), 1 (a FAIL) and 2 (the call failed, with the gRPC status).

// The server crate's test harness (server + emulator + onboarding helpers), reused as is.
#[path = "../crates/server/tests/common/mod.rs"]
mod common;

use std::process::Output;

use anyhow::{Result, ensure};
use common::sim;

async fn onboard_verify(args: &[&str], token: Option<&str>) -> Result<Output> {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_onboard"));
    c.arg("verify").args(args).env_remove("ONBOARD_TOKEN");
    if let Some(t) = token {
        c.env("ONBOARD_TOKEN", t);
    }
    Ok(c.output().await?)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_prints_the_table_and_exits_by_the_worst_status() -> Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("dr-1", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let platform = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let env = sim::start_with(&format!(
        "[[platform.services]]\nid = \"dr-1\"\ngrpc_health = \"http://{platform}\"\n"
    ))
    .await?;
    let (token, _) = env.invite(None).await?;
    let id = env.signed_in(&token, "globaladmin").await?.onboarding_id;
    let done = sim::completed(&env.provision(&token, &id, "Sbc-One").await??)?;
    let server = format!("http://{}", env.server.addr);

    // All OK: exit 0, every check in the table, by service id (token from the environment).
    let o = onboard_verify(
        &["--server", &server, "--service-id", "dr-1"],
        Some(common::OPERATOR),
    )
    .await?;
    let t = text(&o);
    println!("{t}");
    ensure!(o.status.code() == Some(0), "{t}");
    for name in [
        "platform_status",
        "client_credentials",
        "tenant_admin_api_token",
        "token_roles",
        "directory_roles",
        "secret_expiry",
        "temporary_app_removed",
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
    reporter
        .set_service_status("dr-1", tonic_health::ServingStatus::NotServing)
        .await;
    let o = onboard_verify(
        &[
            "--server",
            &server,
            "--client-id",
            &done.client_id,
            "--token",
            common::OPERATOR,
        ],
        None,
    )
    .await?;
    let t = text(&o);
    ensure!(o.status.code() == Some(1), "{t}");
    ensure!(
        t.contains("overall: FAIL") && t.contains("NOT_SERVING"),
        "{t}"
    );

    // Call errors: exit 2 with the status.
    let o = onboard_verify(
        &["--server", &server, "--service-id", "dr-9"],
        Some(common::OPERATOR),
    )
    .await?;
    let t = text(&o);
    ensure!(
        o.status.code() == Some(2) && t.contains("NotFound") && t.contains("dr-9"),
        "{t}"
    );
    let o = onboard_verify(
        &["--server", &server, "--service-id", "dr-1"],
        Some(common::AUDITOR),
    )
    .await?;
    let t = text(&o);
    ensure!(
        o.status.code() == Some(2) && t.contains("PermissionDenied"),
        "{t}"
    );
    let o = onboard_verify(&["--server", &server, "--service-id", "dr-1"], None).await?;
    let t = text(&o);
    ensure!(
        o.status.code() == Some(2) && t.contains("Unauthenticated"),
        "{t}"
    );
    // Neither target: a usage error.
    let o = onboard_verify(&["--server", &server], Some(common::OPERATOR)).await?;
    ensure!(o.status.code() == Some(2), "{}", text(&o));
    Ok(())
}
