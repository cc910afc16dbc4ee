//! A platform service as the verifier probes it (gRPC health, or an HTTP status page), and the
//! verifier's input for an engine-level onboarding.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use entra_client::graph::roles::template::TEAMS_ADMINISTRATOR;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use verifier::{ExpectedRole, PlatformEndpoint, Probe, VerifyInput};

use crate::engine::Onboarded;
use crate::sim::TOKEN_APP;

/// A platform service answering gRPC health on `127.0.0.1:0`; stops when dropped.
pub struct Platform {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Changes what it reports.
    pub reporter: HealthReporter,
    /// Stops the server when dropped (or sent).
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Platform {
    /// Starts one reporting `service` as serving or not.
    pub async fn start(service: &str, serving: bool) -> Result<Self> {
        let (reporter, health) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        let p = Self {
            addr,
            reporter,
            _stop: stop,
        };
        p.set(service, serving).await;
        Ok(p)
    }

    /// Reports `service` as serving or not.
    pub async fn set(&self, service: &str, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status(service, status).await;
    }

    /// `http://ADDR`, the `grpc_health` URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The verifier's endpoint for health service `service` here.
    pub fn endpoint(&self, service: &str) -> PlatformEndpoint {
        grpc_endpoint(self.addr, service)
    }
}

/// A gRPC health endpoint at `addr` asking for `service`, with a 3 s budget.
pub fn grpc_endpoint(addr: SocketAddr, service: &str) -> PlatformEndpoint {
    PlatformEndpoint {
        probe: Probe::GrpcHealth {
            url: format!("http://{addr}"),
            service: service.into(),
        },
        ca_pem: None,
        timeout: Duration::from_secs(3),
    }
}

/// A status page on `127.0.0.1:0` answering `GET /status` with `{"status": <status>}`.
pub async fn status_page(status: &'static str) -> Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/status",
        axum::routing::get(
            move || async move { axum::Json(serde_json::json!({"status": status})) },
        ),
    );
    Ok(crate::http::serve(app).await?.0)
}

/// What the server would hand the verifier for `o` (profile `direct-routing`, service
/// `service_id`, the admin's token as reader), probing `platform`.
pub fn verify_input(
    o: &Onboarded,
    service_id: &str,
    platform: Vec<PlatformEndpoint>,
) -> VerifyInput {
    VerifyInput {
        tenant_id: o.tenant_id.clone(),
        client_id: o.client_id.clone(),
        app_object_id: None,
        sp_id: o.sp_id.clone(),
        service_id: Some(service_id.into()),
        profile: "direct-routing".into(),
        secret: o.secret.clone(),
        secret_key_id: Some(o.key_id.clone()),
        secret_expires: o.expires.as_deref().and_then(|e| {
            time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339).ok()
        }),
        // With self-rotation's permission: `direct-routing` rotates itself by default.
        graph_permissions: vec![
            "Organization.Read.All".into(),
            "User.Read.All".into(),
            "Application.ReadWrite.OwnedBy".into(),
        ],
        tenant_admin_permissions: vec!["application_access".into()],
        directory_roles: vec![ExpectedRole {
            name: "Teams Administrator".into(),
            template_id: TEAMS_ADMINISTRATOR.into(),
        }],
        horizon: Duration::from_secs(30 * 86_400),
        critical: Duration::from_secs(7 * 86_400),
        temporary_app_name: TOKEN_APP.into(),
        temporary_app_client_id: o.token_app_client_id.clone(),
        platform,
        reader_token: Some(o.admin_token.clone()),
        managed_secrets: None,
    }
}
