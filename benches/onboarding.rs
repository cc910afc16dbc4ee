//! Onboarding benchmarks (issue 4), against `onboard serve` as a child process (release build)
//! and the Entra emulator in this process.
//!
//! - `latency`: each emulator call takes `BENCH_LATENCY_MS` (default 50). For `BENCH_RUNS`
//!   (default 5) onboardings one after another, the Provision wall time (call to Completed) is
//!   compared with the Graph calls it made × the latency, i.e. what running every call one
//!   after another would cost. Target: ratio ≤ 0.5.
//! - `memory`: `BENCH_ONBOARDINGS` (default 500) onboardings at once (sign-in waits, then
//!   provisioning) in one server; all must complete; the server's peak RSS (VmHWM) is reported
//!   next to its RSS right after start-up, measured in the same run. Target: ≤ 300 MiB.
//!
//! `cargo bench --bench onboarding` runs both; `BENCH_ONLY=latency|memory` runs one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use entra_sim::Faults;
use testkit::bench::{env_u64, median};
use testkit::onboard_binary;
use testkit::process::{ServerFiles, peak_rss_kib};
use testkit::sim::{calm, users::GLOBAL_ADMIN};
use testkit::wizard::{invite, onboard_timed, provision_stream, signed_in};

async fn latency() -> Result<()> {
    let latency_ms = env_u64("BENCH_LATENCY_MS", 50);
    let runs = env_u64("BENCH_RUNS", 5).max(1);
    let sim = testkit::sim::start(Faults {
        latency_ms,
        ..calm()
    })
    .await?;
    let files = ServerFiles::new(&sim)?;
    let server = onboard_binary!().serve(&files).await?;
    let ch = server.channel().await?;
    println!("latency: {latency_ms} ms per emulator call, {runs} onboardings one after another");
    println!(
        "{:>4} {:>12} {:>10} {:>14} {:>12} {:>7}",
        "run", "graph calls", "sts calls", "serial (ms)", "wall (ms)", "ratio"
    );
    let mut ratios = Vec::new();
    let mut walls = Vec::new();
    for run in 0..runs {
        let (token, _) =
            invite(ch.clone(), &format!("dr-lat-{run}"), "direct-routing", None).await?;
        let id = signed_in(ch.clone(), &sim, &token, GLOBAL_ADMIN)
            .await?
            .onboarding_id;
        let before = sim.request_counts();
        let t = tokio::time::Instant::now();
        let mut stream = provision_stream(ch.clone(), &token, &id, &format!("Lat-{run}")).await?;
        let mut completed = false;
        let trace = std::env::var("BENCH_TRACE").is_ok();
        while let Some(e) = stream.message().await? {
            if trace {
                println!(
                    "      {:>7.1} ms  {:?}",
                    t.elapsed().as_secs_f64() * 1000.0,
                    e.event
                );
            }
            completed |= matches!(
                e.event,
                Some(onboard_proto::v1::provision_event::Event::Completed(_))
            );
        }
        let wall = t.elapsed().as_secs_f64() * 1000.0;
        ensure!(completed, "run {run} did not complete");
        let after = sim.request_counts();
        let graph = after.graph - before.graph;
        let sts = after.sts - before.sts;
        let serial = (graph * latency_ms) as f64;
        let ratio = wall / serial;
        println!("{run:>4} {graph:>12} {sts:>10} {serial:>14.0} {wall:>12.1} {ratio:>7.3}");
        ratios.push(ratio);
        walls.push(wall);
    }
    println!(
        "latency: median wall {:.1} ms, median ratio {:.3} (target ≤ 0.5)",
        median(&walls),
        median(&ratios)
    );
    server.terminate()
}

async fn memory() -> Result<()> {
    let count = env_u64("BENCH_ONBOARDINGS", 500) as usize;
    let sim = Arc::new(
        testkit::sim::start(Faults {
            latency_ms: env_u64("BENCH_MEMORY_LATENCY_MS", 5),
            ..calm()
        })
        .await?,
    );
    // Hundreds sign in to the one emulated tenant at once: lift `[limits]`'s sign-in caps.
    let files = ServerFiles::with(&sim, |b| {
        Ok(b.limit("max_sign_ins_per_tenant", 100_000)
            .limit("max_sign_ins", 100_000))
    })?;
    let server = onboard_binary!().serve(&files).await?;
    let ch = server.channel().await?;
    // The idle server's footprint, the same-run baseline for the peak.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = peak_rss_kib(server.pid())?;
    let t = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let (ch, sim) = (ch.clone(), sim.clone());
        tasks.spawn(async move {
            onboard_timed(ch, &sim, &format!("dr-mem-{i}"), &format!("Mem-{i:04}")).await
        });
    }
    let mut sign_in = Vec::new();
    let mut provision = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let timings = r??;
        sign_in.push(timings.sign_in.as_secs_f64());
        provision.push(timings.provision.as_secs_f64());
    }
    let elapsed = t.elapsed();
    let peak = peak_rss_kib(server.pid())?;
    println!(
        "memory: {count} concurrent onboardings all completed in {:.1} s \
         (median sign-in {:.2} s, median provision {:.2} s)",
        elapsed.as_secs_f64(),
        median(&sign_in),
        median(&provision)
    );
    println!(
        "memory: server peak RSS {:.1} MiB (idle after start {:.1} MiB; target ≤ 300 MiB)",
        peak as f64 / 1024.0,
        idle as f64 / 1024.0
    );
    server.terminate()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    // `cargo bench` passes `--bench`; a `cargo test --benches` run passes nothing and should
    // stay quick, so it only checks that the harness starts.
    if !std::env::args().any(|a| a == "--bench") {
        println!("onboarding bench: run with `cargo bench --bench onboarding`");
        return Ok(());
    }
    if only.is_empty() || only == "latency" {
        latency().await?;
    }
    if only.is_empty() || only == "memory" {
        memory().await?;
    }
    Ok(())
}
