//! `grpc.health.v1.Health`, aware of the shutdown.
//!
//! tonic-health answers `Check` and `Watch` from its reporter; on its own, a `Watch` stream
//! never ends, and gRPC's client-side health checking keeps one open on every connection.
//! Graceful shutdown waits for open calls, so one such client would hold the process past
//! SIGTERM until it is killed, the audit log not closed cleanly. Here, when shutdown begins,
//! every service (and the server, `""`) turns NOT_SERVING, so watchers and load balancers stop
//! sending new calls, and each `Watch` stream ends right after telling its watcher.
//!
//! The audit log refuses every change once a write to it has failed, until the process
//! restarts: then too every service turns NOT_SERVING (readiness takes the pod out), and so
//! does [`LIVENESS`], the name the liveness probe asks, so that the kubelet restarts the pod. A
//! graceful stop leaves [`LIVENESS`] SERVING: a drain is never mistaken for a hang.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use onboard_core::shutdown::Shutdown;
use onboard_proto::v1::admin_server::AdminServer;
use onboard_proto::v1::audit_server::AuditServer;
use onboard_proto::v1::credentials_server::CredentialsServer;
use onboard_proto::v1::invitations_server::InvitationsServer;
use onboard_proto::v1::onboarding_server::OnboardingServer;
use onboard_proto::v1::verification_server::VerificationServer;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// The names of the services this server reports on, besides the server itself (`""`).
const SERVICES: [&str; 6] = [
    <AuditServer<crate::audit::AuditService> as NamedService>::NAME,
    <AdminServer<crate::backup::AdminService> as NamedService>::NAME,
    <InvitationsServer<crate::invitations::InvitationsService> as NamedService>::NAME,
    <OnboardingServer<crate::onboarding::OnboardingService> as NamedService>::NAME,
    <VerificationServer<crate::verification::VerificationService> as NamedService>::NAME,
    <CredentialsServer<crate::credentials::CredentialsService> as NamedService>::NAME,
];

/// The health service name the liveness probe asks (`grpc: {port: 8081, service: liveness}`):
/// NOT_SERVING only once the audit log has failed.
pub const LIVENESS: &str = "liveness";

/// How often the audit log's state is looked at.
const AUDIT_CHECK: Duration = Duration::from_secs(1);

/// The statuses every health service of this process answers from.
pub(crate) struct Statuses {
    /// Holds the statuses; each service made by [`Statuses::service`] reads them.
    reporter: HealthReporter,
    /// Turns `true` once shutdown has begun and every status is NOT_SERVING.
    down: watch::Receiver<bool>,
}

impl Statuses {
    /// Every service SERVING until `shutdown` begins, then NOT_SERVING; every service and
    /// [`LIVENESS`] NOT_SERVING once `audit_failed` reports a failure (looked at every second
    /// until shutdown begins).
    pub(crate) async fn new(
        shutdown: Shutdown,
        audit_failed: impl Fn() -> Option<String> + Send + 'static,
    ) -> Self {
        let reporter = HealthReporter::new();
        set_all(&reporter, ServingStatus::Serving).await;
        reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        let (down_tx, down) = watch::channel(false);
        let setter = reporter.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            shutdown.recv().await;
            set_all(&setter, ServingStatus::NotServing).await;
            // Only now: a stream that ends on this has its NOT_SERVING ready to send first.
            let _ = down_tx.send(true);
        });
        let setter = reporter.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(AUDIT_CHECK);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.recv() => return,
                }
                if let Some(why) = audit_failed() {
                    tracing::error!(
                        error = %why,
                        "the audit log refuses every change until the server restarts: health NOT_SERVING"
                    );
                    set_all(&setter, ServingStatus::NotServing).await;
                    setter
                        .set_service_status(LIVENESS, ServingStatus::NotServing)
                        .await;
                    return;
                }
            }
        });
        Self { reporter, down }
    }

    /// A health service answering from these statuses (one for the API listener, one for the
    /// plaintext health listener).
    pub(crate) fn service(&self) -> HealthServer<ShutdownAware> {
        HealthServer::new(ShutdownAware {
            inner: HealthService::from_health_reporter(self.reporter.clone()),
            down: self.down.clone(),
        })
    }
}

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICES {
        reporter.set_service_status(name, status).await;
    }
}

/// tonic-health's service, with `Watch` streams that end at shutdown.
pub(crate) struct ShutdownAware {
    /// Answers from the reporter's statuses.
    inner: HealthService,
    /// Turns `true` once shutdown has begun and every status is NOT_SERVING: ends the
    /// `Watch` streams.
    down: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Health for ShutdownAware {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchUntilShutdown;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let inner = self.inner.watch(request).await?.into_inner();
        let mut down = self.down.clone();
        Ok(Response::new(WatchUntilShutdown {
            inner,
            // Also ends if the task that sets it is gone (the runtime is stopping).
            stopped: Box::pin(async move {
                let _ = down.wait_for(|d| *d).await;
            }),
        }))
    }
}

/// A `Watch` stream that, once shutdown has begun, sends what is pending (NOT_SERVING) and
/// ends.
pub(crate) struct WatchUntilShutdown {
    /// tonic-health's stream of status changes.
    inner: tonic_health::server::WatchStream,
    /// Completes once the shutdown's NOT_SERVING is set.
    stopped: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl Stream for WatchUntilShutdown {
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // The status first: the NOT_SERVING that shutdown sets goes out before the end.
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        match self.stopped.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use onboard_core::shutdown::ShutdownController;
    use tonic_health::pb::health_check_response::ServingStatus as Wire;

    use super::*;

    async fn status(s: &Statuses, service: &str) -> Wire {
        let req = Request::new(HealthCheckRequest {
            service: service.into(),
        });
        let svc = ShutdownAware {
            inner: HealthService::from_health_reporter(s.reporter.clone()),
            down: s.down.clone(),
        };
        match svc.check(req).await {
            Ok(r) => r.into_inner().status(),
            Err(e) => panic!("check {service:?}: {e}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_audit_log_turns_every_status_and_liveness_not_serving() {
        let controller = ShutdownController::default();
        let failed = Arc::new(AtomicBool::new(false));
        let f = failed.clone();
        let s = Statuses::new(controller.handle(), move || {
            f.load(Ordering::SeqCst).then(|| "disk gone".to_owned())
        })
        .await;
        tokio::time::sleep(AUDIT_CHECK * 2).await;
        for name in ["", SERVICES[0], LIVENESS] {
            assert_eq!(status(&s, name).await, Wire::Serving, "{name}");
        }
        failed.store(true, Ordering::SeqCst);
        tokio::time::sleep(AUDIT_CHECK * 2).await;
        for name in ["", SERVICES[3], LIVENESS] {
            assert_eq!(status(&s, name).await, Wire::NotServing, "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_graceful_stop_leaves_liveness_serving() {
        let controller = ShutdownController::default();
        let s = Statuses::new(controller.handle(), || None).await;
        controller.begin();
        tokio::time::sleep(AUDIT_CHECK * 2).await;
        assert_eq!(status(&s, "").await, Wire::NotServing);
        assert_eq!(status(&s, LIVENESS).await, Wire::Serving);
    }
}
