//! The Grafana dashboard and the Prometheus alerts reference only the metrics the service
//! exports (the names in docs/operations.md#metrics), and every alert has a runbook. CI also
//! runs `promtool check rules` and `promtool test rules tests/monitoring/alerts_test.yaml`.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
// Every metric the service exports (`METRICS`, as agreed for issue 12, histograms without
// suffixes) and the histograms among them: one list in the test kit, which tests/telemetry.rs
// also checks against a live server's /metrics.
use testkit::metrics::{HISTOGRAMS, METRICS};

fn repo(path: &str) -> Result<String> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
}

/// Identifiers in a PromQL expression that name our or the process collector's metrics.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    // Label values and strings are quoted; skip them.
    let mut quoted = false;
    for c in expr.chars().chain([' ']) {
        if c == '"' {
            quoted = !quoted;
            cur.clear();
            continue;
        }
        if !quoted && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            cur.push(c);
            continue;
        }
        if cur.starts_with("onboard_") || cur.starts_with("process_") {
            out.push(std::mem::take(&mut cur));
        }
        cur.clear();
    }
    out
}

/// True when `name` is an exported metric or a histogram's series.
fn known(name: &str) -> bool {
    METRICS.contains(&name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| HISTOGRAMS.contains(&base))
        })
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_parses_and_uses_only_exported_metrics() -> Result<()> {
    let dash: Value = serde_json::from_str(&repo("deploy/monitoring/grafana-dashboard.json")?)?;
    ensure!(dash["uid"] == "onboard-overview" && dash["title"] == "Onboard");
    let panels = dash["panels"].as_array().context("panels")?;
    let mut ids = BTreeSet::new();
    for p in panels {
        ensure!(
            ids.insert(p["id"].as_u64().context("panel id")?),
            "duplicate id {p}"
        );
        if p["type"] != "row" {
            ensure!(
                p["datasource"]["uid"] == "${datasource}",
                "panel {} has no datasource variable",
                p["title"]
            );
            ensure!(
                p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "panel {} has no query",
                p["title"]
            );
        }
    }
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    ensure!(all.len() >= 20, "only {} queries", all.len());
    let mut used = BTreeSet::new();
    for e in &all {
        for name in metric_names(e) {
            ensure!(
                known(&name),
                "the dashboard queries unknown metric {name} in {e}"
            );
            used.insert(name);
        }
    }
    // Every onboard metric is on the dashboard somewhere.
    for m in METRICS.iter().filter(|m| m.starts_with("onboard_")) {
        ensure!(
            used.iter()
                .any(|u| u == m || u.starts_with(&format!("{m}_"))),
            "{m} is on no panel"
        );
    }
    Ok(())
}

#[test]
fn every_alert_uses_exported_metrics_and_has_a_runbook() -> Result<()> {
    let rules = repo("deploy/monitoring/alerts.yaml")?;
    let docs = repo("docs/operations.md")?;
    // (alert, the anchor of its runbook)
    let mut alerts: Vec<(String, Option<String>)> = Vec::new();
    for line in rules.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert: ") {
            alerts.push((name.to_owned(), None));
        }
        if let Some(url) = t.strip_prefix("runbook_url: ") {
            let anchor = url.rsplit('#').next().unwrap_or_default().to_owned();
            let last = alerts
                .last_mut()
                .context("a runbook_url before any alert")?;
            last.1 = Some(anchor);
        }
        if t.starts_with('#') {
            continue;
        }
        for name in metric_names(t) {
            ensure!(known(&name), "alerts.yaml uses unknown metric {name}: {t}");
        }
    }
    ensure!(alerts.len() >= 7, "{alerts:?}");
    for (alert, anchor) in &alerts {
        let anchor = anchor
            .as_ref()
            .with_context(|| format!("{alert} has no runbook_url"))?;
        // GitHub's anchor of a `### Name` heading is the lower-cased name.
        let section = docs
            .split("\n### ")
            .skip(1)
            .find(|s| {
                s.lines()
                    .next()
                    .is_some_and(|h| h.trim().to_ascii_lowercase() == *anchor)
            })
            .with_context(|| format!("no runbook heading for {alert} (#{anchor})"))?;
        ensure!(
            section.contains(alert.as_str()),
            "the runbook #{anchor} does not mention {alert}"
        );
        for part in ["**Meaning**", "**Confirm**", "**Act**"] {
            ensure!(
                section.contains(part),
                "the runbook of {alert} lacks {part}"
            );
        }
    }
    Ok(())
}

#[test]
fn metric_names_are_found_outside_quotes_only() {
    assert_eq!(
        metric_names(r#"sum(rate(onboard_x_total{a="onboard_y"}[5m])) / process_open_fds"#),
        vec!["onboard_x_total", "process_open_fds"]
    );
    assert!(known("onboard_step_duration_seconds_bucket"));
    assert!(!known("onboard_steps_total"));
}
