//! `[telemetry]` end to end, with `onboard serve` as a child process against the emulator:
//!
//! - `/metrics` (parsed by Prometheus's Python client, not string matching) moves as an
//!   onboarding does: RPCs counted by code, the onboarding completed, audit appends and entries
//!   grown by the same amount, Microsoft calls (and a throttled one's retry) counted, step
//!   durations observed; every name of `testkit::metrics::METRICS` (the dashboard's and the
//!   alerts' names) is exported, histograms with their buckets, each with its `# HELP` text;
//! - with `log_format = "json"`, every log line is one JSON object; there is one line per RPC
//!   (service, method, code, duration, caller, onboarding id) and per Microsoft call
//!   (operation, status, `request-id`, `client-request-id`); neither the client secret nor the
//!   admin's access token of the run is in any log line or in `/metrics`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use entra_sim::Faults;
use secrecy::ExposeSecret;
use serde_json::Value;
use testkit::metrics::{Exposition, HISTOGRAMS, METRICS, scrape, scrape_parsed};
use testkit::onboard_binary;
use testkit::process::{ServerFiles, ServerProc};
use testkit::wizard::onboard;

/// Some Graph calls answer 429 (once per operation at most, with `Retry-After: 1`), so the
/// retry and throttle series move too.
fn throttling() -> Faults {
    Faults {
        throttle_rate: 0.3,
        throttle_retry_after_s: 1,
        max_faults_per_operation: Some(1),
        ..testkit::sim::calm()
    }
}

fn metrics_addr(server: &ServerProc) -> Result<std::net::SocketAddr> {
    server
        .metrics
        .context("no `onboard metrics on ADDR` line with [telemetry] metrics_listen set")
}

/// Scrapes until `ready` holds (the import of a completed onboarding as a managed registration
/// runs in the background), for at most 30 s.
async fn scrape_until(
    server: &ServerProc,
    ready: impl Fn(&Exposition) -> bool,
) -> Result<Exposition> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape_parsed(metrics_addr(server)?).await?;
        if ready(&m) || Instant::now() > deadline {
            return Ok(m);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_as_an_onboarding_does() -> Result<()> {
    let sim = testkit::sim::start(throttling()).await?;
    let files = ServerFiles::with(&sim, |b| Ok(b.telemetry("text")))?;
    let server = onboard_binary!().serve(&files).await?;
    let before = scrape_parsed(metrics_addr(&server)?).await?;
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_cpu_seconds_total",
    ] {
        ensure!(before.has(name), "{name} missing before any call");
    }
    ensure!(before.sum("process_resident_memory_bytes", &[]) > 1e6);
    ensure!(before.sum("onboard_tokio_workers", &[]) >= 1.0);
    ensure!(before.sum("onboard_tokio_tasks_alive", &[]) >= 1.0);
    ensure!(
        before
            .samples
            .iter()
            .any(|s| s.name == "onboard_onboardings"
                && s.labels.get("state").map(String::as_str) == Some("awaiting_admin")),
        "no series of onboardings waiting for a privileged admin"
    );
    let entries_before = before.sum("onboard_audit_entries", &[]);
    let appends_before = before.sum("onboard_audit_appends_total", &[]);
    ensure!(before.sum("onboard_onboardings", &[("state", "completed")]) == 0.0);

    let ch = server.channel().await?;
    let done = onboard(ch, &sim, "dr-1", "direct-routing", "Telemetry-App").await?;
    let after = scrape_until(&server, |m| {
        m.has("onboard_secret_earliest_expiry_timestamp_seconds")
    })
    .await?;
    let log = server.log_tail();

    // RPCs by service, method and code; the Provision stream is closed again.
    let rpc = |m: &Exposition, method: &str, code: &str| {
        m.sum(
            "onboard_grpc_requests_total",
            &[
                ("service", "onboard.v1.Onboarding"),
                ("method", method),
                ("code", code),
            ],
        )
    };
    ensure!(
        rpc(&after, "Provision", "OK") >= 1.0,
        "Provision not counted\n{log}"
    );
    ensure!(rpc(&after, "SignIn", "OK") >= 1.0, "SignIn not counted");
    ensure!(
        after.sum(
            "onboard_grpc_request_duration_seconds_count",
            &[("method", "CreateInvitation")]
        ) >= 1.0
    );
    ensure!(
        after.sum("onboard_grpc_streams_open", &[("method", "Provision")]) == 0.0,
        "a finished stream is still counted as open"
    );
    // No label value outside the served RPCs.
    for s in after
        .samples
        .iter()
        .filter(|s| s.name.starts_with("onboard_grpc_"))
    {
        let service = s.labels.get("service").map_or("", String::as_str);
        ensure!(
            service.starts_with("onboard.v1.") || service.starts_with("grpc."),
            "unexpected service label {s:?}"
        );
    }

    // The onboarding, its sign-in and its steps.
    ensure!(after.sum("onboard_onboardings", &[("state", "completed")]) == 1.0);
    ensure!(after.sum("onboard_onboardings", &[("state", "provisioning")]) == 0.0);
    ensure!(after.sum("onboard_signins_total", &[("outcome", "completed")]) == 1.0);
    ensure!(after.sum("onboard_signins_pending", &[]) == 0.0);
    ensure!(
        after.sum(
            "onboard_step_duration_seconds_count",
            &[("step", "app_registration")]
        ) == 1.0
    );

    // The audit log: appends and the tree size grew together; batches observed.
    let appended = after.sum("onboard_audit_appends_total", &[]) - appends_before;
    ensure!(appended >= 5.0, "only {appended} appends counted");
    ensure!(after.sum("onboard_audit_entries", &[]) == entries_before + appended);
    ensure!(after.sum("onboard_audit_batch_size_count", &[]) >= 1.0);
    ensure!(after.sum("onboard_audit_append_failures_total", &[]) == 0.0);
    let age = after.sum("onboard_audit_checkpoint_age_seconds", &[]);
    ensure!((0.0..60.0).contains(&age), "checkpoint age {age}");

    // Microsoft calls by operation and status; the throttled ones retried after Retry-After.
    let entra = after.sum("onboard_entra_requests_total", &[]);
    ensure!(entra >= 10.0, "only {entra} Microsoft calls counted");
    let throttled = after.sum("onboard_entra_throttled_total", &[]);
    let graph_429 = after.sum("onboard_entra_requests_total", &[("status", "429")]);
    ensure!(
        throttled >= 1.0 && throttled == graph_429,
        "{throttled} vs {graph_429}"
    );
    ensure!(after.sum("onboard_entra_retries_total", &[("reason", "throttled")]) >= throttled);
    ensure!(after.sum("onboard_entra_retry_after_seconds_total", &[]) >= throttled);
    for s in after
        .samples
        .iter()
        .filter(|s| s.name == "onboard_entra_requests_total")
    {
        let op = s.labels.get("operation").map_or("", String::as_str);
        ensure!(
            !op.is_empty()
                && op
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "operation label is not a fixed call-site name: {s:?}"
        );
    }

    // The registration's secret expiry, as a Unix time in the future.
    let reg = [("client_id", done.done.client_id.as_str())];
    let expiry = after.sum("onboard_secret_earliest_expiry_timestamp_seconds", &reg);
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    ensure!(expiry > now, "expiry {expiry} not after now {now}");

    // Every name the dashboard and alerts use is exported, with the right type.
    for name in METRICS {
        let series = if HISTOGRAMS.contains(name) {
            ensure!(
                after.kind_of(name) == Some("histogram"),
                "{name} is not a histogram"
            );
            format!("{name}_bucket")
        } else {
            (*name).to_owned()
        };
        ensure!(after.has(&series), "{series} is not exported");
        // And says what it is (`# HELP`), as Prometheus and Grafana show it.
        ensure!(
            after.help_of(&series).is_some_and(|h| h.len() > 10),
            "{name} has no HELP text"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_logs_have_one_line_per_call_and_no_secret() -> Result<()> {
    let sim = testkit::sim::start(testkit::sim::calm()).await?;
    let files = ServerFiles::with(&sim, |b| Ok(b.telemetry("json")))?;
    // No RUST_LOG: the configuration's level (`info` by default) applies.
    let server = onboard_binary!().serve_logging(&files, None).await?;
    let ch = server.channel().await?;
    let done = onboard(ch, &sim, "dr-1", "direct-routing", "Json-Log-App").await?;
    let secret = done.done.secret.clone();
    ensure!(secret.len() > 8);
    let exposition = scrape(metrics_addr(&server)?).await?;
    server.terminate()?;

    // The admin's access token of this run, as the stopped server stored it (sealed).
    let config = onboard_server::Config::load(&files.config)?;
    let app = tokio::task::spawn_blocking(move || onboard_server::App::open(config)).await??;
    let token = app
        .engine()
        .admin_session(&done.onboarding_id)?
        .context("no stored admin token")?;
    let token = token.expose_secret().to_owned();
    let closing = app.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    ensure!(token.len() > 20);

    let text = std::fs::read_to_string(&files.log)?;
    let mut lines = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("a log line is not JSON: {line}"))?;
        ensure!(v.is_object() && v["level"].is_string(), "{line}");
        lines.push(v);
    }
    let field = |v: &Value, k: &str| v["fields"][k].clone();
    let rpc_line = |method: &str| {
        lines
            .iter()
            .find(|v| field(v, "message") == "rpc" && field(v, "method") == method)
            .with_context(|| format!("no per-RPC line for {method}"))
    };
    let provision = rpc_line("Provision")?;
    ensure!(field(provision, "service") == "onboard.v1.Onboarding");
    ensure!(field(provision, "code") == "OK", "{provision}");
    ensure!(field(provision, "duration_ms").is_u64());
    ensure!(field(provision, "onboarding_id") == done.onboarding_id.as_str());
    ensure!(
        field(provision, "caller") == format!("invitation:{}", done.invitation_id).as_str(),
        "{provision}"
    );
    let sign_in = rpc_line("SignIn")?;
    ensure!(
        field(sign_in, "onboarding_id") == done.onboarding_id.as_str(),
        "{sign_in}"
    );
    let claim = rpc_line("ClaimSecret")?;
    ensure!(
        field(claim, "caller") == testkit::config::OPERATOR_IDENTITY,
        "{claim}"
    );
    let graph = lines
        .iter()
        .find(|v| {
            field(v, "message") == "microsoft call"
                && field(v, "operation") == "create_service_principal"
        })
        .or_else(|| {
            lines
                .iter()
                .find(|v| field(v, "message") == "microsoft call" && field(v, "status") == 201)
        })
        .context("no per-call line for a Graph create")?;
    for k in ["request_id", "client_request_id"] {
        ensure!(
            field(graph, k).as_str().is_some_and(|s| !s.is_empty()),
            "{k} missing in {graph}"
        );
    }
    ensure!(field(graph, "status").is_u64() && field(graph, "duration_ms").is_u64());

    for (what, value) in [("client secret", secret.as_str()), ("access token", &token)] {
        ensure!(!text.contains(value), "the {what} is in the log");
        ensure!(!exposition.contains(value), "the {what} is in /metrics");
    }
    Ok(())
}

/// `serve` refuses a telemetry setting it cannot honour, before it opens anything, naming the
/// key and the way out: an OTLP endpoint in a build without the `otel` feature; a `log_level`
/// that is no log filter, as `config check` does (instead of logging at `info` without a word;
/// RUST_LOG, when set, still overrides the key).
#[tokio::test]
async fn serve_refuses_telemetry_it_cannot_honour() -> Result<()> {
    let sim = testkit::sim::start(testkit::sim::calm()).await?;
    type Edit = fn(testkit::config::ServerConfigBuilder) -> testkit::config::ServerConfigBuilder;
    let mut cases: Vec<(Edit, [&str; 2])> = vec![(
        |b| b.raw("telemetry", "log_level", "onboard=loud".into()),
        ["telemetry.log_level", "\"onboard=loud\""],
    )];
    if !cfg!(feature = "otel") {
        cases.push((
            |b| b.otlp_endpoint("http://127.0.0.1:4317"),
            ["telemetry.otlp_endpoint", "--features otel"],
        ));
    }
    for (edit, says) in cases {
        let files = ServerFiles::with(&sim, |b| Ok(edit(b)))?;
        let config = files.config.to_string_lossy().into_owned();
        let run = onboard_binary!()
            .run(&["serve", "--config", &config], &[], None)
            .await?;
        ensure!(run.code == Some(1), "{run}");
        ensure!(says.iter().all(|s| run.stderr.contains(s)), "{run}");
        ensure!(!run.stdout.contains("serving on"), "{run}");
    }
    Ok(())
}
