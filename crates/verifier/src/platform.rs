//! `platform_status`: is the platform service deployed and OK? Either the gRPC health checking
//! protocol (`grpc.health.v1.Health/Check` with the service id as the service name) or an HTTPS
//! JSON probe (`GET` answering 200 with `{"status":"OK"}`). Unreachable is a FAIL naming the
//! address and the error.

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::input::{PlatformEndpoint, Probe};
use crate::report::{Check, Status, names};

/// Probes every endpoint; the check's status is the worst of them.
pub async fn check(endpoints: &[PlatformEndpoint], service_id: Option<&str>) -> Check {
    let name = names::PLATFORM_STATUS;
    if endpoints.is_empty() {
        let what = service_id
            .map(|s| format!("service {s}"))
            .unwrap_or_else(|| "this registration (no service id)".into());
        return Check::new(
            name,
            Status::Warn,
            format!("not checked: no platform endpoint is configured for {what}"),
        );
    }
    let mut worst = Status::Ok;
    let mut details = Vec::new();
    for e in endpoints {
        let (status, detail) = probe(e).await;
        worst = worst.max(status);
        details.push(detail);
    }
    Check::new(name, worst, details.join("; "))
}

/// One endpoint: (status, detail).
pub async fn probe(e: &PlatformEndpoint) -> (Status, String) {
    match &e.probe {
        Probe::GrpcHealth { url, service } => match grpc(e, url, service).await {
            Ok(ServingStatus::Serving) => (
                Status::Ok,
                format!("{url}: gRPC health of {service:?} is SERVING"),
            ),
            Ok(other) => (
                Status::Fail,
                format!(
                    "{url}: gRPC health of {service:?} is {}",
                    other.as_str_name()
                ),
            ),
            Err(msg) => (Status::Fail, format!("{url}: unreachable: {msg}")),
        },
        Probe::HttpJson { url } => match http(e, url).await {
            Ok(s) if s.eq_ignore_ascii_case("ok") || s.eq_ignore_ascii_case("serving") => {
                (Status::Ok, format!("{url}: status {s}"))
            }
            Ok(s) => (Status::Fail, format!("{url}: status {s}")),
            Err(msg) => (Status::Fail, format!("{url}: {msg}")),
        },
    }
}

async fn grpc(e: &PlatformEndpoint, url: &str, service: &str) -> Result<ServingStatus, String> {
    let mut ep = Endpoint::from_shared(url.to_owned())
        .map_err(|err| format!("not a valid URL: {err}"))?
        .connect_timeout(e.timeout)
        .timeout(e.timeout);
    if url.starts_with("https://") {
        onboard_core::tls::install_crypto_provider();
        let Some(ca) = &e.ca_pem else {
            return Err(
                "an https gRPC health endpoint needs a CA (`ca`) configured: system roots are not loaded for gRPC".into(),
            );
        };
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        ep = ep
            .tls_config(tls)
            .map_err(|err| format!("TLS set-up: {err}"))?;
    }
    let channel = tokio::time::timeout(e.timeout, ep.connect())
        .await
        .map_err(|_| format!("no connection within {:?}", e.timeout))?
        .map_err(|err| format!("connect: {}", chain(&err)))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|s| format!("health check answered {:?}: {}", s.code(), s.message()))?;
    Ok(ServingStatus::try_from(answer.into_inner().status).unwrap_or(ServingStatus::Unknown))
}

async fn http(e: &PlatformEndpoint, url: &str) -> Result<String, String> {
    let mut b = reqwest::Client::builder()
        .timeout(e.timeout)
        .connect_timeout(e.timeout);
    if let Some(ca) = &e.ca_pem {
        for c in reqwest::Certificate::from_pem_bundle(ca).map_err(|err| format!("CA: {err}"))? {
            b = b.add_root_certificate(c);
        }
    }
    let client = b.build().map_err(|err| format!("HTTP client: {err}"))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|err| format!("unreachable: {}", chain(&err)))?;
    let code = resp.status();
    if !code.is_success() {
        return Err(format!("answered HTTP {code}"));
    }
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|err| format!("answer is not JSON: {err}"))?;
    body.get("status")
        .and_then(|s| s.as_str())
        .map(str::to_owned)
        .ok_or_else(|| "answer has no string `status` field".to_owned())
}

/// An error with its sources, e.g. `transport error: tcp connect error: Connection refused`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
