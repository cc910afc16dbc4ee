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
//! - `telemetry` (only when asked, with `--features otel`): Provision with every telemetry
//!   switch off vs all on (metrics, JSON logs, traces to a local OTLP collector), same run.
//!
//! `cargo bench --bench onboarding` runs the first two; `BENCH_ONLY=latency|memory|telemetry`
//! runs one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use common::SlowEntra;
use entra_sim::Faults;
use testkit::bench::{env_u64, median};
use testkit::metrics::scrape_parsed;
use testkit::onboard_binary;
use testkit::process::{ServerFiles, peak_rss_kib};
use testkit::sim::{calm, users::GLOBAL_ADMIN};
use testkit::wizard::{invite, onboard_timed, provision_stream, signed_in};

async fn latency() -> Result<()> {
    let slow = SlowEntra::start(onboard_binary!()).await?;
    let (latency_ms, runs) = (slow.latency_ms, slow.runs);
    println!("latency: {latency_ms} ms per emulator call, {runs} onboardings one after another");
    println!(
        "{:>4} {:>12} {:>10} {:>14} {:>12} {:>7}",
        "run", "graph calls", "sts calls", "serial (ms)", "wall (ms)", "ratio"
    );
    let mut ratios = Vec::new();
    let mut walls = Vec::new();
    for run in 0..runs {
        let t = timed_provision(&slow.ch, &slow.sim, "Lat", run).await?;
        let serial = (t.graph * latency_ms) as f64;
        let ratio = t.wall_ms / serial;
        println!(
            "{run:>4} {:>12} {:>10} {serial:>14.0} {:>12.1} {ratio:>7.3}",
            t.graph, t.sts, t.wall_ms
        );
        ratios.push(ratio);
        walls.push(t.wall_ms);
    }
    println!(
        "latency: median wall {:.1} ms, median ratio {:.3} (target ≤ 0.5)",
        median(&walls),
        median(&ratios)
    );
    slow.server.terminate()
}

/// One Provision, timed.
struct Timed {
    /// From the Provision call to its Completed event.
    wall_ms: f64,
    /// Graph requests the emulator answered meanwhile.
    graph: u64,
    /// Identity-platform requests meanwhile.
    sts: u64,
}

/// An invitation for service `dr-<tag>-<run>`, the Global Administrator's sign-in, then
/// Provision of the app `<Tag>-<run>` timed from the call to Completed (`BENCH_TRACE=1` prints
/// each event's arrival).
async fn timed_provision(
    ch: &tonic::transport::Channel,
    sim: &entra_sim::Sim,
    tag: &str,
    run: u64,
) -> Result<Timed> {
    let service = format!("dr-{}-{run}", tag.to_lowercase());
    let name = format!("{tag}-{run}");
    let (service, name) = (service.as_str(), name.as_str());
    let (token, _) = invite(ch.clone(), service, "direct-routing", None).await?;
    let id = signed_in(ch.clone(), sim, &token, GLOBAL_ADMIN)
        .await?
        .onboarding_id;
    let before = sim.request_counts();
    let t = tokio::time::Instant::now();
    let mut stream = provision_stream(ch.clone(), &token, &id, name).await?;
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
    let wall_ms = t.elapsed().as_secs_f64() * 1000.0;
    ensure!(completed, "{name} did not complete");
    let after = sim.request_counts();
    Ok(Timed {
        wall_ms,
        graph: after.graph - before.graph,
        sts: after.sts - before.sts,
    })
}

/// `telemetry` (issue 12): the Provision wall time of a server with every telemetry switch off
/// (no metrics listener, text logs at `warn`) against one with all on (metrics, JSON logs at
/// `info`, traces to a local OTLP/gRPC collector), both in this run, alternating, against the
/// same emulator (`BENCH_LATENCY_MS`, default 50). Target: all on ≤ 1.05 × all off. Needs the
/// `otel` feature (`cargo bench --features otel --bench onboarding`).
#[cfg(feature = "otel")]
async fn telemetry() -> Result<()> {
    let (latency_ms, runs, sim) = common::slow_sim(7).await?;
    let off_files = ServerFiles::new(&sim)?;
    let off = onboard_binary!().serve(&off_files).await?;
    let (endpoint, spans) = testkit::otlp::collector().await?;
    let on_files = ServerFiles::with(&sim, |b| Ok(b.telemetry("json").otlp_endpoint(&endpoint)))?;
    // No RUST_LOG: the configuration's level (`info`) applies.
    let on = onboard_binary!().serve_logging(&on_files, None).await?;
    let (off_ch, on_ch) = (off.channel().await?, on.channel().await?);
    println!("telemetry: {latency_ms} ms per emulator call, {runs} rounds (off, then on)");
    let (mut offs, mut ons) = (Vec::new(), Vec::new());
    for round in 0..runs {
        let a = timed_provision(&off_ch, &sim, "Off", round).await?;
        let b = timed_provision(&on_ch, &sim, "On", round).await?;
        println!(
            "{round:>4} off {:>8.1} ms ({} graph)   on {:>8.1} ms ({} graph)   on/off {:.3}",
            a.wall_ms,
            a.graph,
            b.wall_ms,
            b.graph,
            b.wall_ms / a.wall_ms
        );
        offs.push(a.wall_ms);
        ons.push(b.wall_ms);
    }
    let (off_m, on_m) = (median(&offs), median(&ons));
    off.terminate()?;
    on.terminate()?;
    let exported = spans.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len();
    println!(
        "telemetry: median wall off {off_m:.1} ms, on {on_m:.1} ms: ratio {:.3} (target ≤ 1.05); \
         {exported} spans exported",
        on_m / off_m
    );
    Ok(())
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
    // `/metrics` on (issue 12: the series move as the 500 onboardings do).
    let files = ServerFiles::with(&sim, |b| {
        Ok(b.limit("max_sign_ins_per_tenant", 100_000)
            .limit("max_sign_ins", 100_000)
            .telemetry("text"))
    })?;
    let server = onboard_binary!().serve(&files).await?;
    let ch = server.channel().await?;
    let metrics = server
        .metrics
        .ok_or_else(|| anyhow::anyhow!("no metrics listener"))?;
    // The idle server's footprint, the same-run baseline for the peak.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = peak_rss_kib(server.pid())?;
    // A scrape a second while they run: (seconds, provisioning, completed).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let watching = tokio::spawn(async move {
        let mut seen = Vec::new();
        let t = tokio::time::Instant::now();
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(m) = scrape_parsed(metrics).await {
                let state = |s: &str| m.sum("onboard_onboardings", &[("state", s)]);
                seen.push((
                    t.elapsed().as_secs_f64(),
                    state("provisioning"),
                    state("completed"),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        seen
    });
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
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for (at, running, done) in watching.await? {
        println!("memory: /metrics at {at:>5.1} s: {running:>4} provisioning, {done:>4} completed");
    }
    let after = scrape_parsed(metrics).await?;
    let completed = after.sum("onboard_onboardings", &[("state", "completed")]);
    let provisions = after.sum(
        "onboard_grpc_requests_total",
        &[("method", "Provision"), ("code", "OK")],
    );
    ensure!(
        completed == count as f64
            && after.sum("onboard_onboardings", &[("state", "provisioning")]) == 0.0
            && provisions >= count as f64
            && after.sum("onboard_signins_total", &[("outcome", "completed")]) == count as f64,
        "/metrics after the run: {completed} completed, {provisions} Provision calls OK"
    );
    println!(
        "memory: /metrics after: {completed} completed, 0 provisioning, {provisions} Provision \
         calls OK, {} audit appends",
        after.sum("onboard_audit_appends_total", &[])
    );
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
    // A `cargo test --benches` run should stay quick, so it only checks that the harness starts.
    let Some(only) = testkit::bench::full_run_only("onboarding") else {
        return Ok(());
    };
    if only.runs("latency") {
        latency().await?;
    }
    if only.runs("memory") {
        memory().await?;
    }
    if only.named("telemetry") {
        #[cfg(feature = "otel")]
        telemetry().await?;
        #[cfg(not(feature = "otel"))]
        anyhow::bail!(
            "BENCH_ONLY=telemetry needs `cargo bench --features otel --bench onboarding`"
        );
    }
    Ok(())
}
