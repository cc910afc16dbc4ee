//! `onboard ctl …` run as an operator would, against `onboard serve` started as a child process
//! with the Entra emulator: every command's output and exit code, and `--output json` parsed
//! back (independently of the CLI) and compared with the gRPC answer for the same question.

mod audit;
mod day_two;
mod invitations;
mod mtls;
mod onboardings;

use anyhow::{Result, ensure};
use testkit::process::{Run, ServerProc};

/// `onboard ARGS` with `env` and `stdin` (see `testkit::process::Onboard::run`).
async fn onboard(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Result<Run> {
    testkit::onboard_binary!().run(args, env, stdin).await
}

/// `onboard ctl ARGS` against `server` with `token`.
async fn ctl(server: &ServerProc, token: &str, args: &[&str]) -> Result<Run> {
    testkit::onboard_binary!().ctl(server, token, args).await
}

/// Checks `r` failed with exit `code` and its standard error says `says`.
fn refused(r: &Run, code: i32, says: &str) -> Result<()> {
    ensure!(r.code == Some(code) && r.stderr.contains(says), "{r}");
    Ok(())
}

/// Checks `r` succeeded and its standard output says `says`.
fn succeeded(r: &Run, says: &str) -> Result<()> {
    ensure!(r.code == Some(0) && r.stdout.contains(says), "{r}");
    Ok(())
}

#[tokio::test]
async fn completions_are_generated_for_each_shell_and_bash_parses_them() -> Result<()> {
    for shell in ["bash", "zsh", "fish"] {
        let r = onboard(&["completions", shell], &[], None).await?;
        ensure!(r.code == Some(0), "{shell}: {r}");
        for word in ["ctl", "invitations", "onboardings", "secrets", "audit"] {
            ensure!(r.stdout.contains(word), "{shell} completion lacks {word}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir()?;
            let f = dir.path().join("onboard.bash");
            std::fs::write(&f, &r.stdout)?;
            let syntax = std::process::Command::new("bash")
                .arg("-n")
                .arg(&f)
                .output()?;
            ensure!(
                syntax.status.success(),
                "{}",
                String::from_utf8_lossy(&syntax.stderr)
            );
        }
    }
    let r = onboard(&["completions", "tcsh"], &[], None).await?;
    ensure!(r.code == Some(2), "{r}");
    Ok(())
}

#[tokio::test]
async fn usage_and_connection_errors_have_their_exit_codes() -> Result<()> {
    // No address anywhere: usage.
    let r = onboard(&["ctl", "invitations", "list"], &[], None).await?;
    refused(&r, 2, "ONBOARD_ADDR")?;
    // A bad flag: clap's usage error.
    let r = onboard(&["ctl", "invitations", "list", "--no-such-flag"], &[], None).await?;
    ensure!(r.code == Some(2), "{r}");
    // Nobody listens: unreachable.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let addr = format!("http://127.0.0.1:{port}");
    let r = onboard(
        &["ctl", "--addr", &addr, "invitations", "list"],
        &[("ONBOARD_TOKEN", "x")],
        None,
    )
    .await?;
    refused(&r, 3, "cannot reach")?;
    // https without a CA: usage, before any connection.
    let r = onboard(
        &["ctl", "--addr", "onboard.test:8443", "audit", "checkpoint"],
        &[],
        None,
    )
    .await?;
    refused(&r, 2, "--ca")?;
    // The help documents the exit codes.
    let r = onboard(&["ctl", "--help"], &[], None).await?;
    ensure!(
        r.code == Some(0) && r.stdout.contains("Exit codes:") && r.stdout.contains("4  permission"),
        "{r}"
    );
    Ok(())
}
