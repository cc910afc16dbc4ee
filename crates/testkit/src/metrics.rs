//! A running server's `/metrics`, scraped over loopback and parsed by Prometheus's own Python
//! client (`prometheus_client.parser.text_string_to_metric_families`), so tests check the
//! exposition as Prometheus reads it instead of matching strings. Python 3 with
//! `prometheus_client` is required (`.ci/run` installs it); without it the test fails and says
//! so.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// Every metric the service exports, as agreed for issue 12 (histograms without suffixes).
pub const METRICS: &[&str] = &[
    "onboard_grpc_requests_total",
    "onboard_grpc_request_duration_seconds",
    "onboard_grpc_streams_open",
    "onboard_onboardings",
    "onboard_step_duration_seconds",
    "onboard_entra_retries_total",
    "onboard_signins_pending",
    "onboard_signins_total",
    "onboard_entra_requests_total",
    "onboard_entra_request_duration_seconds",
    "onboard_entra_throttled_total",
    "onboard_entra_retry_after_seconds_total",
    "onboard_audit_appends_total",
    "onboard_audit_appends_requested_total",
    "onboard_audit_append_failures_total",
    "onboard_audit_append_duration_seconds",
    "onboard_audit_batch_size",
    "onboard_audit_entries",
    "onboard_audit_checkpoint_age_seconds",
    "onboard_secret_earliest_expiry_timestamp_seconds",
    "onboard_rotations_total",
    "onboard_rotations_stored",
    "onboard_drift_open",
    // The standard process collector.
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_cpu_seconds_total",
];

/// The histograms, whose `_bucket`, `_sum` and `_count` series queries use.
pub const HISTOGRAMS: &[&str] = &[
    "onboard_grpc_request_duration_seconds",
    "onboard_step_duration_seconds",
    "onboard_entra_request_duration_seconds",
    "onboard_audit_append_duration_seconds",
    "onboard_audit_batch_size",
];

/// The parser, run by `python3 -c`: one JSON array of samples on standard output (values that
/// are not finite as strings, since JSON has no NaN or infinity).
const PARSER: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        v = s.value
        out.append({"family": fam.name, "type": fam.type, "help": fam.documentation,
                    "name": s.name, "labels": s.labels,
                    "value": v if math.isfinite(v) else str(v)})
print(json.dumps(out))
"#;

/// One sample as the parser reports it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The family (a counter's name without `_total`, a histogram's without suffixes).
    pub family: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `unknown`.
    pub kind: String,
    /// The family's `# HELP` text (empty without one).
    pub help: String,
    /// The series name (e.g. `…_bucket`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (NaN and infinities included).
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone)]
pub struct Exposition {
    /// Every sample, in the order written.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Whether a series called `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// The sum of the series called `name` whose labels include all of `labels` (0 if none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The `# HELP` text of the family of series `name`, if it has samples.
    pub fn help_of(&self, name: &str) -> Option<&str> {
        self.samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.help.as_str())
    }

    /// The family type of `name`'s family, if it has samples.
    pub fn kind_of(&self, family: &str) -> Option<&str> {
        self.samples
            .iter()
            .find(|s| s.family == family)
            .map(|s| s.kind.as_str())
    }
}

/// `GET http://ADDR/metrics`: the body, after checking the status and the content type.
pub async fn scrape(addr: SocketAddr) -> Result<String> {
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .context("scraping /metrics")?;
    ensure!(
        resp.status().is_success(),
        "/metrics answered {}",
        resp.status()
    );
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(ct.starts_with("text/plain"), "/metrics content type {ct:?}");
    Ok(resp.text().await?)
}

/// Scrapes and parses.
pub async fn scrape_parsed(addr: SocketAddr) -> Result<Exposition> {
    let text = scrape(addr).await?;
    tokio::task::spawn_blocking(move || parse(&text)).await?
}

/// Parses `text` with `prometheus_client`; a parse error is an error here.
pub fn parse(text: &str) -> Result<Exposition> {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("python3 is required to parse the Prometheus exposition (prometheus_client)")?;
    child
        .stdin
        .take()
        .context("python3 stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named 'prometheus_client'") {
        bail!(
            "Python's prometheus_client is required: python3 -m pip install prometheus_client (.ci/run installs it)"
        );
    }
    ensure!(
        out.status.success(),
        "prometheus_client could not parse the exposition: {err}\n--- exposition\n{text}"
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    let mut samples = Vec::with_capacity(rows.len());
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let value = match &r["value"] {
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            Value::String(t) => t.parse().unwrap_or(f64::NAN),
            _ => f64::NAN,
        };
        let labels = r["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        samples.push(Sample {
            family: s("family"),
            kind: s("type"),
            help: s("help"),
            name: s("name"),
            labels,
            value,
        });
    }
    Ok(Exposition { samples })
}
