//! Serving: TLS set-up, health, reflection, and the entry points [`serve`] and
//! [`run_from_config`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use onboard_proto::v1::admin_server::AdminServer;
use onboard_proto::v1::audit_server::AuditServer;
use onboard_proto::v1::credentials_server::CredentialsServer;
use onboard_proto::v1::invitations_server::InvitationsServer;
use onboard_proto::v1::onboarding_server::OnboardingServer;
use onboard_proto::v1::verification_server::VerificationServer;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use zeroize::Zeroizing;

use crate::App;
use crate::audit::AuditService;
use crate::backup::AdminService;
use crate::config::Config;
use crate::credentials::{CredentialsService, spawn_background};
use crate::error::{Result, ServerError};
use crate::invitations::InvitationsService;
use crate::onboarding::OnboardingService;
use crate::verification::VerificationService;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves every service on an already-bound `listener` until `shutdown` completes (then lets
/// in-flight calls finish). TLS is on when the configuration names a certificate, mTLS when it
/// also names a client CA.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve_with_health(listener, None, app, shutdown).await
}

/// [`serve`], and on `health` (`[server] health_listen`, already bound) plaintext gRPC serving
/// `grpc.health.v1` only: SERVING while the API serves, NOT_SERVING from the start of a graceful
/// stop until the stop is done, so a probe takes the process out of rotation before it drains.
pub async fn serve_with_health(
    listener: TcpListener,
    health: Option<TcpListener>,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let lim = app.config().limits.clone();
    let secs = Duration::from_secs;
    // Transport limits (`[limits]`, see `crate::limits`). HTTP/1.1 too: browsers reach the
    // wizard over plain HTTP/1.1 (over TLS they negotiate h2).
    let mut builder = Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(lim.max_streams_per_connection)
        .http2_keepalive_interval(Some(secs(lim.keepalive_interval_secs)))
        .http2_keepalive_timeout(Some(secs(lim.keepalive_timeout_secs)))
        .tcp_keepalive(Some(secs(lim.keepalive_interval_secs)))
        .max_connection_age(secs(lim.max_connection_age_secs));
    // No `.timeout(..)`: tonic answers its expiry CANCELLED; the guard layer applies
    // `limits.request_timeout_secs` and answers DEADLINE_EXCEEDED.
    if let Some(tls) = tls_config(app.config())? {
        builder = builder.tls_config(tls)?;
    }
    // Outermost: the metrics layer also counts what the guard layer refuses.
    let mut builder =
        builder
            .layer(crate::telemetry::MetricsLayer)
            .layer(crate::guard_layer::GuardLayer::new(
                app.guards().clone(),
                app.shutdown(),
            ));
    let max = lim.max_message_bytes;

    // NOT_SERVING once shutdown begins (its Watch streams end then), or once the audit log
    // has failed (`crate::health`).
    let audit = app.audit().clone();
    let statuses = crate::health::Statuses::new(app.shutdown(), move || audit.failure()).await;

    // Reflection in both versions: v1, and v1alpha for the tools that ask only for it (older
    // grpcurl, grpc_cli, Postman, Evans), from the same descriptors.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(onboard_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let fail = |e| ServerError::Internal(format!("reflection: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(fail)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(fail)?;

    // Release 0.1's records get their MACs (audited) before anything reads them; the audit
    // anchor is kept current while serving (`crate::integrity`).
    crate::integrity::migrate_records(&app).await?;
    // Keys generated into the state store that the configuration now names files for go.
    crate::generated_keys::move_out(&app).await?;
    crate::integrity::spawn_anchor(&app);
    // Onboardings a previous process left running (or cancelling) continue from their last
    // confirmed step.
    let resumed = app.engine().resume_all().await?;
    if !resumed.is_empty() {
        tracing::info!(count = resumed.len(), "resumed onboardings");
    }
    // Onboardings waiting for a privileged admin are undone when their wait expires.
    crate::onboarding::hand_off::spawn_expiry(&app);
    // Scheduled verification: every managed registration, drift recorded (and repaired per
    // profile); stops when shutdown begins.
    if let Some(secs) = app.config().verification.interval_secs {
        tracing::info!(every_s = secs, "scheduled verification on");
        app.drift()
            .clone()
            .spawn(Duration::from_secs(secs), &app.shutdown());
    }
    // Completed onboardings become managed registrations; cut-short rotations finish.
    spawn_background(&app);
    app.mark_started();
    let signal = app.clone();
    let shutdown = async move {
        shutdown.await;
        // Graceful shutdown waits for open calls; Follow streams never end on their own.
        signal.begin_shutdown();
    };
    // One Onboarding service for gRPC and the wizard: its signed-in sessions are shared.
    let onboarding = OnboardingService::new(app.clone());
    let mut grpc = Routes::builder();
    grpc.add_service(statuses.service())
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AdminServer::new(AdminService::new(app.clone())))
        .add_service(
            AuditServer::new(AuditService::new(app.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            InvitationsServer::new(InvitationsService::new(app.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            OnboardingServer::new(onboarding.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            CredentialsServer::new(CredentialsService::new(app.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            VerificationServer::new(VerificationService::new(app.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    // The wizard's page and API on the same listener and TLS (`crate::wizard`).
    let routes = grpc
        .routes()
        .into_axum_router()
        .merge(crate::wizard::router(app.clone(), onboarding));
    let probes = health.map(|l| spawn_health(l, &statuses));
    let serving = builder
        .add_routes(Routes::from(routes))
        // TCP_NODELAY: a stream's small messages (each step as it happens) go out at once
        // instead of waiting for the peer's delayed ACK.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        );
    // Graceful shutdown waits for every open call; a client that keeps one open (a stream of
    // its own, a stalled upload) gets the grace, then its connection is dropped, so SIGTERM
    // always ends in a clean close of the audit log.
    let drain = app.shutdown();
    let served = tokio::select! {
        served = serving => served,
        () = drain.expired() => {
            tracing::warn!(
                grace_s = drain.grace().as_secs(),
                "calls still open after the shutdown grace; their connections are dropped"
            );
            Ok(())
        }
    };
    // Also when serving failed: onboarding runs and rotations start no new Entra change (calls
    // in flight finish and are audited; records stay `running` for the next start), scheduled
    // verification stops (a run in progress finishes first), all within the grace.
    app.finish_shutdown().await;
    if let Some(probes) = probes {
        probes.stop().await;
    }
    served?;
    Ok(())
}

/// The plaintext health listener's server, running until [`Probes::stop`]. Not a task of the
/// app's `Shutdown`, which starts the drain: it must go on answering NOT_SERVING through the
/// drain, so it stops after `App::finish_shutdown`.
struct Probes {
    /// Dropped to stop it.
    stop: tokio::sync::oneshot::Sender<()>,
    /// Its task.
    task: tokio::task::JoinHandle<()>,
}

/// Serves `statuses` over plaintext gRPC on `listener` until the returned [`Probes`] stop.
fn spawn_health(listener: TcpListener, statuses: &crate::health::Statuses) -> Probes {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = Server::builder()
        .add_service(statuses.service())
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = stopped.await;
        });
    let task = tokio::spawn(async move {
        if let Err(e) = serving.await {
            tracing::error!(error = %e, "the health listener stopped");
        }
    });
    Probes { stop, task }
}

impl Probes {
    /// Stops the listener; its Watch streams have ended with the shutdown, and a probe's call
    /// is short, so this waits a second at most.
    async fn stop(self) {
        drop(self.stop);
        if tokio::time::timeout(Duration::from_secs(1), self.task)
            .await
            .is_err()
        {
            tracing::warn!("the health listener did not stop within a second; left to the exit");
        }
    }
}

/// The TLS settings the configuration asks for, if any.
fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
        return Ok(None);
    };
    onboard_core::tls::install_crypto_provider();
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert_pem.as_slice(), key_pem.as_slice()))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(ca) = &config.tls.client_ca {
        // Verified when presented, not required at the handshake: the customer's browser (the
        // wizard, on this listener) has no client certificate. Every operator, auditor and
        // admin call still needs one (`auth::Authenticator`).
        tls = tls
            .client_ca_root(Certificate::from_pem(read(ca)?.as_slice()))
            .client_auth_optional(true);
    }
    Ok(Some(tls))
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))
}

/// Loads the configuration, opens everything, binds the listen address and serves until
/// Ctrl-C or SIGTERM; then closes the audit log cleanly.
pub async fn run_from_config(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    let listen = config.server.listen;
    // The recorder before anything records: the audit log's writer resolves its handles when
    // it opens. Without a metrics listener there is none, and every metric is a no-op.
    if config.telemetry.metrics_listen.is_some() {
        crate::telemetry::recorder()?;
    }
    let app = tokio::task::spawn_blocking(move || App::open(config))
        .await
        .map_err(|e| ServerError::Internal(format!("opening the server state: {e}")))??;
    // The tiles API, publication and witnessing. With witnesses, this first refuses a data
    // directory rolled back behind what they cosigned: before anything appends, and before the
    // line below tells a supervisor the server is up.
    crate::auditors::start(&app).await?;
    // `GET /metrics` on its own listener; one line says where, as for the gRPC one below.
    if let Some(addr) = crate::telemetry::start(&app).await? {
        println!("onboard metrics on {addr}");
    }
    let (listener, address) = bind("server.listen", listen).await?;
    let health = match app.config().server.health_listen {
        Some(addr) => Some(bind("server.health_listen", addr).await?),
        None => None,
    };
    // The signal handlers are installed before anyone can learn the address: a SIGTERM sent
    // as soon as the line below appears is a graceful stop, never the default action.
    let signals = shutdown_signal()?;
    // One line on standard output once the socket is bound, so a supervisor or a test that
    // configured port 0 learns the address without racing the bind.
    if let Some((_, bound)) = &health {
        println!("onboard health on {bound}");
    }
    println!("onboard serving on {address}");
    tracing::info!(
        %address,
        origin = %app.audit().origin(),
        tls = app.config().tls.cert.is_some(),
        mtls = app.config().tls.client_ca.is_some(),
        "onboard serving"
    );
    let health = health.map(|(l, _)| l);
    let result = serve_with_health(listener, health, app.clone(), signals).await;
    let closing = app.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .map_err(|e| ServerError::Internal(format!("closing the audit log: {e}")))?;
    result
}

/// Binds `addr`, the setting `key`: the listener and the address it got (port 0: a free one).
pub(crate) async fn bind(key: &str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::io(format!("binding {key} {addr}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServerError::io(format!("{key}: local address"), e))?;
    Ok((listener, bound))
}

/// Installs the handlers for Ctrl-C and (on Unix) SIGTERM, as systemd and container runtimes
/// send, and returns a future that completes on either. The handlers are in place when this
/// returns, not when the future is first polled.
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let term = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| ServerError::io("listening for SIGINT", e))?;
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| ServerError::io("listening for SIGTERM", e))?;
        async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let term = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    Ok(async move {
        term.await;
        tracing::info!("shutting down");
    })
}
