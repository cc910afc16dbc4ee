//! Wizard benchmarks (issue 10), against `onboard serve` as a child process (release build) and
//! the Entra emulator in this process.
//!
//! - `weight`: the bytes a browser loads for the page (HTML, script, style, icon), fetched from
//!   the running server. Budget: < 100 KB uncompressed.
//! - `first_step`: in headless Chromium, the time from clicking "Start Provisioning" to the
//!   first step shown on the page (measured in the page with `performance.now()`), with every
//!   emulator call taking `BENCH_LATENCY_MS` (default 50); `BENCH_RUNS` (default 5) runs.
//! - `idle_wizards`: `BENCH_WIZARDS` (default 500) wizards open at the device-code step (each
//!   an open sign-in stream of the wizard's API, polling the emulator at Entra's 5 s interval);
//!   the server's RSS then, next to its RSS idle after start-up, measured in the same run.
//!
//! `cargo bench --bench wizard` runs all; `BENCH_ONLY=weight|first_step|idle_wizards` runs one.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::SlowEntra;
use entra_sim::Faults;
use testkit::bench::{env_u64, median};
use testkit::browser::Chrome;
use testkit::onboard_binary;
use testkit::process::{ServerFiles, ServerProc, rss_kib};
use testkit::sim::{calm, upn, users::GLOBAL_ADMIN};
use testkit::wizard::invite;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of the server.
fn authority(server: &ServerProc) -> String {
    server.url().trim_start_matches("http://").to_owned()
}

/// A plain HTTP/1.1 GET; the body.
async fn get(server: &ServerProc, path: &str) -> Result<Vec<u8>> {
    let mut s = TcpStream::connect(authority(server)).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).await?;
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no header end")?;
    ensure!(all.starts_with(b"HTTP/1.1 200"), "GET {path} failed");
    Ok(all[at + 4..].to_vec())
}

async fn weight(server: &ServerProc) -> Result<()> {
    let mut total = 0;
    for path in std::iter::once("/activate".to_owned()).chain(onboard_server::wizard::asset_paths())
    {
        let n = get(server, &path).await?.len();
        println!("weight: {path:<18} {n:>7} bytes");
        total += n;
    }
    println!("weight: whole page {total} bytes uncompressed (budget < 102400)");
    ensure!(total < 100 * 1024);
    Ok(())
}

async fn first_step() -> Result<()> {
    let slow = SlowEntra::start(onboard_binary!()).await?;
    let (latency_ms, runs, sim, server) = (slow.latency_ms, slow.runs, &slow.sim, &slow.server);
    let chrome = Chrome::start().await?;
    let mut ms = Vec::new();
    for run in 0..runs {
        let (token, _) = invite(
            slow.ch.clone(),
            &format!("dr-web-{run}"),
            "direct-routing",
            None,
        )
        .await?;
        chrome
            .client
            .goto(&format!("{}/activate#token={token}", server.url()))
            .await?;
        chrome.wait_screen("s-landing").await?;
        chrome.click("btn-create").await?;
        let who = upn(&sim.info(), GLOBAL_ADMIN);
        chrome.type_into("upn", &who).await?;
        chrome.click("btn-auth").await?;
        chrome.wait_screen("s-code").await?;
        chrome
            .wait_js(
                "document.getElementById('code').textContent.length > 0",
                "the code",
            )
            .await?;
        let code = chrome.text("#code").await?;
        sim.complete_device_login(&code, &who).await?;
        chrome.wait_screen("s-connected").await?;
        chrome.click("btn-next").await?;
        chrome
            .type_into("app-name", &format!("Web-{run:03}"))
            .await?;
        chrome
            .wait_js(
                "!document.getElementById('btn-provision').disabled",
                "a plan",
            )
            .await?;
        let took = chrome
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const steps = document.getElementById('steps');
                 const t0 = performance.now();
                 new MutationObserver((_, o) => { if (steps.children.length) {
                   o.disconnect(); done(performance.now() - t0); } })
                   .observe(steps, {childList: true});
                 document.getElementById('btn-provision').click();",
                vec![],
            )
            .await?
            .as_f64()
            .context("no time")?;
        println!("first_step: run {run}: {took:.0} ms from the click to the first step shown");
        ms.push(took);
        chrome
            .wait_screen_for("s-done", Duration::from_secs(120))
            .await?;
    }
    println!(
        "first_step: median {:.0} ms at {latency_ms} ms per emulator call ({runs} runs)",
        median(&ms)
    );
    chrome.close().await?;
    slow.server.terminate()
}

/// Opens the wizard's sign-in stream and reads until the device code arrives; the open socket.
async fn wizard_at_code(server: &ServerProc, token: &str, who: &str) -> Result<TcpStream> {
    let mut s = TcpStream::connect(authority(server)).await?;
    let body = format!("{{\"upn\":\"{who}\"}}");
    s.write_all(
        format!(
            "POST /wizard/api/signin HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             x-invitation-token: {token}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: device_code") {
        let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await??;
        ensure!(n > 0, "stream closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(s)
}

async fn idle_wizards() -> Result<()> {
    let count = env_u64("BENCH_WIZARDS", 500) as usize;
    let sim = testkit::sim::start(Faults {
        device_code_interval_s: Some(5),
        ..calm()
    })
    .await?;
    // All the wizards sign in to one tenant from one address: the sign-in caps of `[limits]`
    // (200 in all, 20 per admin domain by default) are raised to let them.
    let cap = count as u64 + 10;
    let files = ServerFiles::with(&sim, |b| {
        Ok(b.limit("max_sign_ins", cap)
            .limit("max_sign_ins_per_tenant", cap))
    })?;
    let server = onboard_binary!().serve(&files).await?;
    let ch = server.channel().await?;
    let mut tokens = Vec::with_capacity(count);
    for i in 0..count {
        tokens.push(
            invite(ch.clone(), &format!("dr-idle-{i}"), "direct-routing", None)
                .await?
                .0,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(server.pid())?;
    let who = upn(&sim.info(), GLOBAL_ADMIN);
    let t = tokio::time::Instant::now();
    let mut open = Vec::with_capacity(count);
    for token in &tokens {
        open.push(wizard_at_code(&server, token, &who).await?);
    }
    let opened = t.elapsed();
    // Let a few polling rounds (5 s interval) run with all of them waiting.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let waiting = rss_kib(server.pid())?;
    println!(
        "idle_wizards: {count} wizards at the device-code step (opened in {:.1} s): server RSS \
         {:.1} MiB, idle {:.1} MiB (same run), {:.1} KiB per waiting wizard",
        opened.as_secs_f64(),
        waiting as f64 / 1024.0,
        idle as f64 / 1024.0,
        (waiting.saturating_sub(idle)) as f64 / count as f64
    );
    drop(open);
    server.terminate()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let Some(only) = testkit::bench::full_run_only("wizard") else {
        return Ok(());
    };
    if only.runs("weight") {
        let sim = testkit::sim::start(calm()).await?;
        let (_files, server) = onboard_binary!().start(&sim).await?;
        weight(&server).await?;
        server.terminate()?;
    }
    if only.runs("first_step") {
        first_step().await?;
    }
    if only.runs("idle_wizards") {
        idle_wizards().await?;
    }
    Ok(())
}
