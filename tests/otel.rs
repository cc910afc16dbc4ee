//! OpenTelemetry traces end to end (`cargo test --features otel --test otel`): `onboard serve`
//! as a child process with `[telemetry] otlp_endpoint` pointed at a stand-in OTLP/gRPC
//! collector (`testkit::otlp`). One onboarding,
//! then a graceful stop (which sends the last batch):
//!
//! - the Provision call is one trace: its `rpc` span, the `onboarding` run, a `step` span per
//!   step and a `microsoft` span per call to Microsoft (operation, status, `request-id`);
//! - the audit entries of the run carry that trace's id (`trace_id`), so an auditor goes from an
//!   entry to its trace;
//! - neither the client secret, nor the admin's access token, nor the invitation token is in
//!   any span's name or attribute.

#![cfg(feature = "otel")]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use secrecy::ExposeSecret;
use testkit::onboard_binary;
use testkit::otlp::{Seen, collector};
use testkit::process::ServerFiles;
use testkit::wizard::onboard;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_onboarding_is_one_trace_and_its_audit_entries_name_it() -> Result<()> {
    let (endpoint, spans) = collector().await?;
    let sim = testkit::sim::start(testkit::sim::calm()).await?;
    let files = ServerFiles::with(&sim, |b| Ok(b.otlp_endpoint(&endpoint)))?;
    let server = onboard_binary!().serve(&files).await?;
    let done = onboard(
        server.channel().await?,
        &sim,
        "dr-1",
        "direct-routing",
        "Traced-App",
    )
    .await?;
    let secret = done.done.secret.clone();
    ensure!(secret.len() > 8);
    // A graceful stop sends the last batch.
    server.terminate()?;

    // The spans arrive in batches; the stop flushed the last one.
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let seen = spans
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        let has_steps = seen.iter().any(|s| s.name == "temporary_app_removal");
        if has_steps || Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let provision = seen
        .iter()
        .find(|s| s.name == "onboard.v1.Onboarding/Provision")
        .with_context(|| format!("no Provision span among {} spans", seen.len()))?;
    ensure!(
        provision.attr("rpc.system") == Some("grpc"),
        "{provision:?}"
    );
    ensure!(
        provision.attr("onboarding_id") == Some(done.onboarding_id.as_str()),
        "{provision:?}"
    );
    let trace = provision.trace_id.clone();
    let in_trace: Vec<&Seen> = seen.iter().filter(|s| s.trace_id == trace).collect();
    let names: BTreeSet<&str> = in_trace.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "onboarding",
        "app_registration",
        "service_principal",
        "client_secret",
        "verify_authentication",
        "temporary_app_removal",
    ] {
        ensure!(
            names.contains(want),
            "no {want} span in the Provision trace: {names:?}"
        );
    }
    let graph = in_trace
        .iter()
        .find(|s| s.attr("operation") == Some("create_service_principal"))
        .context("no span of the Graph call that creates the service principal")?;
    ensure!(
        graph.attr("http.response.status_code") == Some("201"),
        "{graph:?}"
    );
    ensure!(
        graph.attr("request_id").is_some_and(|r| !r.is_empty()),
        "{graph:?}"
    );

    // The run's audit entries carry the trace id; every trace id in the log is well formed.
    let config = onboard_server::Config::load(&files.config)?;
    let app = tokio::task::spawn_blocking(move || onboard_server::App::open(config)).await??;
    let token = app
        .engine()
        .admin_session(&done.onboarding_id)?
        .context("no stored admin token")?
        .expose_secret()
        .to_owned();
    let entries = testkit::audit::typed_entries(app.audit())?;
    let closing = app.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    testkit::audit::check_schema(&entries)?;
    let created = entries
        .iter()
        .find(|e| {
            e["action"] == "service_principal.create"
                && e["phase"] == "succeeded"
                && e["onboarding_id"] == done.onboarding_id.as_str()
        })
        .context("no service_principal.create entry")?;
    ensure!(
        created["trace_id"] == trace.as_str(),
        "the entry's trace_id {} is not the Provision trace {trace}",
        created["trace_id"]
    );

    // No secret, token or invitation token in any span.
    for (what, value) in [
        ("client secret", secret.as_str()),
        ("access token", token.as_str()),
        ("invitation token", done.token.as_str()),
    ] {
        ensure!(value.len() > 8, "{what} too short to search for");
        for s in &seen {
            ensure!(!s.name.contains(value), "the {what} is in a span name");
            for (k, v) in &s.attributes {
                ensure!(!v.contains(value), "the {what} is in span attribute {k}");
            }
        }
    }
    Ok(())
}
