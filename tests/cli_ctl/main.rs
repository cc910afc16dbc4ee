//! `onboard ctl …` run as an operator would, against `onboard serve` started as a child process
//! with the Entra emulator: every command's output and exit code, and `--output json` parsed
//! back (independently of the CLI) and compared with the gRPC answer for the same question.

mod audit;
mod day_two;
mod invitations;
mod mtls;
mod onboardings;
mod sealed;

use std::future::Future;

use anyhow::{Context, Result, ensure};
use prost::Message;
use testkit::process::{Run, ServerFiles, ServerProc, output_ok, parse_json};

/// `onboard ARGS` with `env` and `stdin` (see `testkit::process::Onboard::run`).
async fn onboard(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Result<Run> {
    testkit::onboard_binary!().run(args, env, stdin).await
}

/// `onboard ctl ARGS` against `server` with `token`.
async fn ctl(server: &ServerProc, token: &str, args: &[&str]) -> Result<Run> {
    testkit::onboard_binary!().ctl(server, token, args).await
}

/// `onboard ctl ARGS` against `server` with `token`, checked to succeed, and its `--output json`
/// answer parsed back as the protobuf message `full_name` (independently of the CLI).
async fn ctl_json<M: Message + Default>(
    server: &ServerProc,
    token: &str,
    args: &[&str],
    full_name: &str,
) -> Result<(Run, M)> {
    let r = ctl(server, token, args).await?;
    ensure!(r.code == Some(0), "{r}");
    let m = parse_json(&r.stdout, full_name).with_context(|| r.to_string())?;
    Ok((r, m))
}

/// Checks `r` succeeded and its `--output json` answer, parsed back as the protobuf message
/// `full_name` (independently of the CLI), is the gRPC `answer` to the same question; that
/// answer.
async fn same_as_grpc<M: Message + Default + PartialEq>(
    r: &Run,
    full_name: &str,
    answer: impl Future<Output = Result<tonic::Response<M>, tonic::Status>>,
) -> Result<M> {
    ensure!(r.code == Some(0), "{r}");
    let printed: M = parse_json(&r.stdout, full_name).with_context(|| r.to_string())?;
    let want = answer.await?.into_inner();
    ensure!(printed == want, "{r}");
    Ok(want)
}

/// The lines of a successful `--output json` stream `r`, each parsed back as `full_name`.
fn json_lines<M: Message + Default>(r: &Run, full_name: &str) -> Result<Vec<M>> {
    ensure!(r.code == Some(0), "{r}");
    r.stdout.lines().map(|l| parse_json(l, full_name)).collect()
}

/// `secrets rotate` of the day-two registration's `dr-1` secret, one second of overlap.
const ROTATE_DR_1: [&str; 6] = [
    "secrets",
    "rotate",
    "--service-id",
    "dr-1",
    "--overlap",
    "1s",
];

/// `onboard serve` on the emulator holding a completed direct-routing onboarding of service
/// `dr-1` (app `name`) and a day-two sign-in, as every day-two command needs.
struct DayTwo {
    /// The emulator.
    sim: entra_sim::Sim,
    /// The server's files (its directory holds what a test writes).
    files: ServerFiles,
    /// The server.
    server: ServerProc,
    /// The onboarding's Completed event.
    done: onboard_proto::v1::Completed,
}

impl DayTwo {
    async fn start(name: &str) -> Result<Self> {
        let sim = testkit::sim::start(testkit::sim::calm()).await?;
        let (files, server) = testkit::onboard_binary!().start(&sim).await?;
        let ch = server.channel().await?;
        let done = testkit::wizard::onboard(ch.clone(), &sim, "dr-1", "direct-routing", name)
            .await?
            .done;
        // Day-two changes act as a freshly signed-in admin.
        testkit::wizard::day_two_sign_in(ch, &sim, "dr-1").await?;
        Ok(Self {
            sim,
            files,
            server,
            done,
        })
    }

    /// `onboard ctl ARGS --tenant T --client C` (the onboarded registration) as the operator.
    async fn ctl(&self, args: &[&str]) -> Result<Run> {
        let tenant = self.sim.info().tenant_id;
        let reg = ["--tenant", &tenant, "--client", &self.done.client_id];
        let all: Vec<&str> = args.iter().chain(reg.iter()).copied().collect();
        ctl(&self.server, testkit::config::OPERATOR, &all).await
    }
}

/// `invitations create --customer CUSTOMER --service-id SERVICE`, then `more`.
fn create_invitation<'a>(customer: &'a str, service: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "invitations",
        "create",
        "--customer",
        customer,
        "--service-id",
        service,
    ];
    args.extend_from_slice(more);
    args
}

/// Checks `r` failed with exit `code` and its standard error says `says`.
fn refused(r: &Run, code: i32, says: &str) -> Result<()> {
    ensure!(r.code == Some(code) && r.stderr.contains(says), "{r}");
    Ok(())
}

/// Checks `r` succeeded and a line of its standard output is one `wanted`.
fn has_line(r: &Run, wanted: impl Fn(&str) -> bool) -> Result<()> {
    ensure!(r.code == Some(0) && r.stdout.lines().any(wanted), "{r}");
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
            output_ok(
                std::process::Command::new("bash").arg("-n").arg(&f),
                "bash -n",
            )?;
        }
    }
    let r = onboard(&["completions", "tcsh"], &[], None).await?;
    ensure!(r.code == Some(2), "{r}");
    Ok(())
}

/// `onboard … | head`: once the reader has gone, a command ends as a Unix tool killed by
/// SIGPIPE does (status 141, nothing on standard error), not with a panic and a backtrace.
#[tokio::test]
async fn a_reader_that_has_gone_ends_a_command_quietly() -> Result<()> {
    for args in [&["completions", "bash"][..], &["token-app", "manifest"]] {
        let r = testkit::onboard_binary!()
            .run_reader_gone(args, &[])
            .await?;
        ensure!(r.code == Some(141) && r.stderr.is_empty(), "{args:?}: {r}");
    }
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
