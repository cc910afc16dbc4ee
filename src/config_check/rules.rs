//! Checks without files: URLs, the listen address, callers and the token app.

use std::net::IpAddr;

use onboard_server::Config;
use url::{Host, Url};

use super::Findings;

/// Top-level domains reserved for tests and documentation (RFC 2606, RFC 6761): `http` to
/// them is clearly not production.
const TEST_TLDS: &[&str] = &["test", "example", "invalid", "localhost"];

/// True for loopback addresses, `localhost` and reserved test domains.
fn is_test_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
                || TEST_TLDS
                    .iter()
                    .any(|t| d.ends_with(&format!(".{t}")) || d == *t)
        }
        None => false,
    }
}

/// A URL the service calls or hands out: well-formed, with a host, `https` unless the host is
/// clearly a test one; `no_fragment` for URLs that get a fragment appended.
pub(super) fn check_url(f: &mut Findings, key: &str, value: &str, no_fragment: bool) {
    let url = match Url::parse(value) {
        Ok(u) => u,
        Err(e) => {
            f.error(key, format!("{value:?} is not a URL: {e}"));
            return;
        }
    };
    // Said without any user name or password it carries (this output lands in CI logs).
    let value = crate::audit_fetch::shown(value);
    if url.host().is_none() {
        f.error(key, format!("{value:?} has no host"));
        return;
    }
    match url.scheme() {
        "https" => {}
        "http" if is_test_host(&url) => {}
        "http" => f.error(
            key,
            format!(
                "{value:?} is plain http to a non-test host: use https (http is accepted only for loopback, localhost and .test/.example/.invalid hosts)"
            ),
        ),
        other => f.error(key, format!("{value:?}: scheme {other:?}, want https")),
    }
    if no_fragment && url.fragment().is_some() {
        f.error(
            key,
            format!("{value:?} has a fragment; the activation link appends #token=…"),
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        f.error(
            key,
            format!("{value:?} carries credentials; put none in URLs"),
        );
    }
}

/// Every URL in the configuration.
pub fn check_urls(config: &Config, f: &mut Findings) {
    check_url(f, "entra.authority_url", &config.entra.authority_url, false);
    check_url(f, "entra.graph_url", &config.entra.graph_url, false);
    check_url(
        f,
        "invitations.activation_base_url",
        &config.invitations.activation_base_url,
        true,
    );
    if onboard_server::wizard::sign_in_redirect_uri(&config.invitations.activation_base_url)
        .is_none()
    {
        f.warn(
            "invitations.activation_base_url",
            "not https (nor http on localhost or 127.0.0.1): Microsoft cannot send a browser \
             sign-in back to it, so admins whose tenant blocks device codes cannot sign in \
             (docs/microsoft.md §27)",
        );
    }
    for s in &config.platform.services {
        if let Some(u) = &s.grpc_health {
            let key = format!("platform.services[{}].grpc_health", s.id);
            check_url(f, &key, u, false);
            if u.starts_with("https://") && s.ca.is_none() {
                f.error(
                    &key,
                    "an https gRPC health endpoint needs `ca` (the CA that signs its certificate)",
                );
            }
        }
        if let Some(u) = &s.http_probe {
            check_url(
                f,
                &format!("platform.services[{}].http_probe", s.id),
                u,
                false,
            );
        }
    }
}

/// `[telemetry]`: an OTLP endpoint this build can use, and a log level that is a filter.
pub fn check_telemetry(config: &Config, f: &mut Findings) {
    let t = &config.telemetry;
    if let Some(url) = &t.otlp_endpoint {
        let ok = url
            .split_once("://")
            .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty());
        if !ok {
            f.error(
                "telemetry.otlp_endpoint",
                format!("{url:?} is not an http(s) URL of an OTLP/gRPC collector (e.g. http://otel-collector:4317)"),
            );
        } else if !cfg!(feature = "otel") {
            f.error(
                "telemetry.otlp_endpoint",
                "this build has no OpenTelemetry export; build with `--features otel`".to_owned(),
            );
        }
    }
    if let Err(why) = log_filter(&t.log_level) {
        f.error("telemetry.log_level", why);
    }
}

/// Each listener on a port of its own: an error on the later of two keys sharing one (port 0 is
/// any free port, never shared).
pub fn check_ports(config: &Config, f: &mut Findings) {
    let listeners = [
        Some(("server.listen", config.server.listen)),
        config
            .audit_http
            .as_ref()
            .map(|h| ("audit_http.listen", h.listen)),
        config
            .telemetry
            .metrics_listen
            .map(|m| ("telemetry.metrics_listen", m)),
        config
            .server
            .health_listen
            .map(|h| ("server.health_listen", h)),
    ];
    let listeners: Vec<_> = listeners.into_iter().flatten().collect();
    for (i, (key, addr)) in listeners.iter().enumerate() {
        let earlier = listeners[..i].iter().find(|(_, a)| a.port() == addr.port());
        if let Some((taken_by, _)) = earlier
            && addr.port() != 0
        {
            f.error(*key, format!("port {} is {taken_by}'s too", addr.port()));
        }
    }
}

/// `server.listen`: an unprivileged port, and TLS when not on loopback.
pub fn check_listen(config: &Config, f: &mut Findings) {
    let addr = config.server.listen;
    let tls = config.tls.cert.is_some();
    if addr.port() != 0 && addr.port() < 1024 {
        f.warn(
            "server.listen",
            format!(
                "port {} is privileged: the service needs CAP_NET_BIND_SERVICE (the shipped systemd unit and Kubernetes manifests drop every capability)",
                addr.port()
            ),
        );
    }
    let loopback = match addr.ip() {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback(),
    };
    if !tls && !loopback {
        f.warn(
            "server.listen",
            format!(
                "{addr} without [tls]: plaintext gRPC and bearer tokens in clear on the network; set tls.cert and tls.key (and tls.client_ca for mTLS)"
            ),
        );
    }
}

/// Who can call: someone must, and each rule must be usable.
pub fn check_auth(config: &Config, f: &mut Findings) {
    let auth = &config.auth;
    if auth.callers.is_empty() && auth.tokens.is_empty() {
        f.error(
            "auth",
            "no [[auth.callers]] and no [[auth.tokens]]: nobody can call the service",
        );
    }
    if !auth.callers.is_empty() && config.tls.client_ca.is_none() {
        f.warn(
            "auth.callers",
            "callers are matched against client certificates, but tls.client_ca is unset (no mTLS), so none will match",
        );
    }
    for t in &auth.tokens {
        if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            f.error(
                format!("auth.tokens[{}]", t.identity),
                "sha256 must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)",
            );
        }
    }
    if !auth.tokens.is_empty() && config.tls.client_ca.is_some() {
        f.warn(
            "auth.tokens",
            "tls.client_ca is set (mTLS), so callers are identified by their client certificate only and these bearer tokens are never accepted; name the callers in [[auth.callers]] and remove the tokens",
        );
    }
    if !auth.tokens.is_empty() && config.tls.cert.is_none() {
        f.warn(
            "auth.tokens",
            "bearer tokens over plaintext: fine on loopback for local use, not across a network",
        );
    }
}

/// The provider's public client app that the admin's device code sign-in uses (the rule is
/// `provision::token_app::client_id_problem`, which `onboard serve` also logs at start-up).
pub fn check_token_app(config: &Config, f: &mut Findings) {
    if let Some(problem) =
        provision::token_app::client_id_problem(&config.entra.token_app_client_id)
    {
        f.error("entra.token_app_client_id", problem);
    }
}

/// `telemetry.log_level` as a log filter, or why it is none: the one rule `config check` and
/// `serve` apply.
pub(crate) fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
        format!("{level:?} is not a log filter (e.g. info, or info,onboard_server=debug): {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_only_for_test_hosts() {
        let mut f = Findings::default();
        for ok in [
            "https://graph.microsoft.com",
            "http://127.0.0.1:8443",
            "http://[::1]:1",
            "http://localhost:9",
            "http://sim.test/x",
            "http://wizard.example/activate",
        ] {
            check_url(&mut f, "k", ok, true);
        }
        assert!(f.0.is_empty(), "{:?}", f.0);
        check_url(&mut f, "k", "http://graph.microsoft.com", false);
        check_url(&mut f, "k", "ftp://x.example.net", false);
        check_url(&mut f, "k", "https://w.example.net/a#x", true);
        check_url(&mut f, "k", "not a url", false);
        check_url(&mut f, "k", "https://u:pass-SECRET@w.example.net/", false);
        check_url(
            &mut f,
            "k",
            "http://u:pass-SECRET@graph.microsoft.com/",
            false,
        );
        assert_eq!(f.0.len(), 7, "{:?}", f.0);
        // The credentials themselves are never repeated.
        assert!(
            f.0.iter().all(|x| !x.to_string().contains("SECRET")),
            "{:?}",
            f.0
        );
    }
}
