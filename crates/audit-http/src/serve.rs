//! Serving the router on an already-bound listener, over HTTP or HTTPS (with client
//! certificates for mTLS), until a shutdown future completes.

use std::future::Future;
use std::time::Duration;

use audit_log::AuditLog;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::access::{Access, HttpConfig};
use crate::error::HttpError;
use crate::router::router;

/// How long requests in flight may take to finish once shutdown begins (HTTPS).
const GRACE: Duration = Duration::from_secs(10);

/// Full bundles written as files per pass: a shutdown waits for one pass at most.
const BUNDLES_PER_PASS: u64 = 64;

/// Keeps every full bundle of `log` in its file (see [`AuditLog::materialize_bundles`]): the
/// ones an older data directory lacks at start, then each new one after its checkpoint, while
/// its entries are still in sled's cache. Serving a bundle is then one file read.
async fn keep_bundle_files(log: AuditLog) {
    let mut head = log.subscribe();
    // One warning per run of failures (a full disk fails at every checkpoint).
    let mut warned = false;
    loop {
        loop {
            let l = log.clone();
            match tokio::task::spawn_blocking(move || l.materialize_bundles(BUNDLES_PER_PASS)).await
            {
                Ok(Ok(more)) => {
                    warned = false;
                    if !more {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    if !warned {
                        tracing::warn!(error = %e, "writing audit bundle files failed; bundles are read from sled meanwhile");
                        warned = true;
                    }
                    break;
                }
                Err(_) => return,
            }
        }
        if head.changed().await.is_err() {
            return;
        }
    }
}

/// Serves the tiles API of `log` on `listener` until `shutdown` completes, then lets requests
/// in flight finish. HTTPS when `config.tls` is set; [`Access::Mtls`] requires it.
pub async fn serve(
    listener: TcpListener,
    log: AuditLog,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let feed = config.feed.clone().unwrap_or_else(|| log.feed());
    // A JoinSet aborts its tasks when dropped: this one ends when serving ends, however it ends.
    let mut background = tokio::task::JoinSet::new();
    background.spawn(keep_bundle_files(log.clone()));
    let app = router(log, feed, &config.access);
    let Some(tls) = config.tls.clone() else {
        if matches!(config.access, Access::Mtls) {
            return Err(HttpError::Config(
                "mTLS access needs a TLS configuration with client verification".into(),
            ));
        }
        // TCP_NODELAY: a response written in two segments must not wait for a delayed ACK.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY");
            }
        });
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| HttpError::io("serving the tiles API", e));
    };
    let std_listener = listener
        .into_std()
        .map_err(|e| HttpError::io("taking the listener", e))?;
    let handle = axum_server::Handle::new();
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .acceptor(axum_server::accept::NoDelayAcceptor::new());
    let server = axum_server::from_tcp(std_listener)
        .map_err(|e| HttpError::io("serving the tiles API", e))?
        .acceptor(acceptor)
        .handle(handle.clone());
    let serving = server.serve(app.into_make_service());
    tokio::pin!(serving);
    tokio::select! {
        r = &mut serving => return r.map_err(|e| HttpError::io("serving the tiles API", e)),
        () = shutdown => handle.graceful_shutdown(Some(GRACE)),
    }
    serving
        .await
        .map_err(|e| HttpError::io("serving the tiles API", e))
}
