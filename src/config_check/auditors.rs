//! `[audit_http]`, `[publish]`, `[witnessing]` and `[[witness]]`: who can read the live tiles
//! API and over what, whether the publication target can be opened, and whether the witnesses
//! are reachable by URL rules and the cosignature store can be written. The rules between the
//! sections (quorum, store outside the data directory, distinct ports) are the loader's, so a
//! file that breaks them never gets here.

use std::net::IpAddr;
use std::path::Path;

use audit_remote::Target;
use onboard_server::Config;

use super::Findings;
use super::files::{check_certs, inside};
use super::rules::check_url;

/// Seconds per day.
const DAY: i64 = 86_400;

/// Every check on the auditor-facing sections.
pub fn check_auditors(config: &Config, warn_days: u32, now: i64, f: &mut Findings) {
    check_tiles_api(config, warn_days, now, f);
    check_publish(config, f);
    check_witnessing(config, f);
}

fn check_tiles_api(config: &Config, warn_days: u32, now: i64, f: &mut Findings) {
    let Some(h) = &config.audit_http else {
        return;
    };
    if let Err(e) = h.build() {
        f.error("audit_http", e.to_string());
    }
    let certs = [
        (&h.tls_cert, "audit_http.tls_cert"),
        (&h.client_ca, "audit_http.client_ca"),
    ];
    for (path, key) in certs {
        if let Some(path) = path {
            check_certs(path, key, now, i64::from(warn_days) * DAY, f);
        }
    }
    let loopback = match h.listen.ip() {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback(),
    };
    match h.access {
        audit_http::AccessKind::Open => f.warn(
            "audit_http.access",
            "open: anyone who reaches the listener reads every entry (entries may hold personal data such as UPNs); make sure that is the decision",
        ),
        audit_http::AccessKind::Bearer if h.tls_cert.is_none() && !loopback => f.warn(
            "audit_http.access",
            "bearer tokens over plain HTTP on a non-loopback address: set tls_cert and tls_key",
        ),
        _ => {}
    }
}

fn check_publish(config: &Config, f: &mut Findings) {
    let Some(p) = &config.publish else {
        return;
    };
    // Opening a target only parses it and reads credentials from the environment; a local
    // directory must already exist here (the service creates it, but config check only reads).
    match Target::parse(&p.target, false) {
        Ok(_) => {}
        Err(e) => f.error("publish.target", e.to_string()),
    }
    if p.target.starts_with("s3://") && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        f.warn(
            "publish.target",
            "no AWS_ACCESS_KEY_ID in this environment: the service needs credentials from its own environment or an instance role",
        );
    }
}

fn check_witnessing(config: &Config, f: &mut Findings) {
    for (i, w) in config.witnesses.iter().enumerate() {
        check_url(f, &format!("witness[{i}].url"), &w.url, false);
    }
    let Some(section) = &config.witnessing else {
        return;
    };
    let store = &section.store;
    let dir = store.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        f.error(
            "witnessing.store",
            format!(
                "{}: its directory does not exist; the cosignature store could not be written",
                store.display()
            ),
        );
    }
    if inside(store, &config.storage.data_dir) {
        f.error(
            "witnessing.store",
            "inside storage.data_dir (after resolving links): keep it where a restored data directory does not restore it too",
        );
    }
}
