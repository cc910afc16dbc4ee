//! What the server offers auditors beside gRPC, started by `run_from_config` before the gRPC
//! listener and stopped by the server's one `ShutdownController`:
//!
//! - `[audit_http]`: the live C2SP tlog-tiles read API (`audit_http`) on its own listener;
//! - `[publish]`: continuous publication to object storage or a directory (`audit_remote`),
//!   after each checkpoint, resuming from what the target holds;
//! - `[witnessing]` + `[[witness]]`: the witness submitter (`witness`) in the background, after
//!   a start-up check that refuses a rolled-back data directory. With witnesses, the tiles API
//!   serves and publication uploads the latest checkpoint a quorum cosigned (with their
//!   cosignature lines) instead of the log's own.
//!
//! None of them is on the append path: appends never wait for a reader, a target or a witness.

mod feed;
pub mod settings;

use std::net::SocketAddr;

use audit_remote::{PublishEvent, Publisher, Target};
use witness::{Submitter, SubmitterConfig, WitnessError, WitnessProbe};

use crate::App;
use crate::error::{Result, ServerError};

/// What [`start`] started.
#[derive(Debug, Default)]
pub struct Auditors {
    /// Where the tiles API listens, when configured.
    pub tiles_addr: Option<SocketAddr>,
    /// The witness submitter, when witnesses are configured.
    pub submitter: Option<Submitter>,
}

/// Starts what the configuration asks for. Call it before anything appends: with witnesses,
/// it first refuses a log that is behind, or differs from, a checkpoint a witness cosigned.
pub async fn start(app: &App) -> Result<Auditors> {
    let config = app.config();
    let log = app.audit().clone();
    let shutdown = app.shutdown();
    let mut out = Auditors::default();
    let mut feed = None;
    if let Some(w) = settings::witnessing(config)? {
        let report = witness::check_not_rolled_back(&log, &w.endpoints, Some(&w.store))
            .await
            .map_err(|e| match e {
                WitnessError::RolledBack { .. } => ServerError::FailedPrecondition(format!(
                    "refusing to start: {e}. The data directory is older than what the witnesses saw: restore its latest copy (a rolled-back audit log cannot continue under the same origin)"
                )),
                other => ServerError::Config(format!("witnessing: {other}")),
            })?;
        for (url, probe) in &report.probes {
            match probe {
                WitnessProbe::Consistent { .. } | WitnessProbe::New => {
                    tracing::info!(witness = %url, ?probe, "witness confirmed the audit log");
                }
                other => {
                    tracing::warn!(witness = %url, probe = ?other, "witness gave no evidence at start-up")
                }
            }
        }
        if report.confirmed() < w.quorum {
            tracing::warn!(
                confirmed = report.confirmed(),
                quorum = w.quorum,
                "fewer witnesses than the quorum confirmed the audit log at start-up; the log's own checkpoints are served and published until the quorum cosigns one"
            );
        }
        let mut sub = SubmitterConfig::new(w.endpoints.clone(), &w.store);
        sub.min_interval = w.min_interval;
        let stop = shutdown.clone();
        let (submitter, task) =
            Submitter::spawn(log.clone(), sub, async move { stop.recv().await })
                .map_err(|e| ServerError::Config(format!("witnessing.store: {e}")))?;
        // Tracked, so the store is written before the process exits.
        let _ = shutdown.spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "witness submitter task failed");
            }
        });
        feed = Some(feed::quorum_feed(&submitter, w.quorum, &shutdown));
        out.submitter = Some(submitter);
    }
    if let Some(p) = &config.publish {
        let target = Target::parse(&p.target, true)
            .map_err(|e| ServerError::Config(format!("publish.target: {e}")))?;
        let mut publisher = Publisher::new(log.clone(), target).with_observer(std::sync::Arc::new(
            |e: &PublishEvent<'_>| match e {
                PublishEvent::Published { size } => {
                    metrics::gauge!("onboard_audit_published_entries").set(*size as f64);
                    tracing::debug!(size, "audit log published");
                }
                PublishEvent::Resumed { published } => {
                    if let Some(size) = published {
                        metrics::gauge!("onboard_audit_published_entries").set(*size as f64);
                    }
                    tracing::info!(?published, "audit publication resumed");
                }
                PublishEvent::Failed { .. } => {
                    metrics::counter!("onboard_audit_publish_failures_total").increment(1);
                }
                _ => {}
            },
        ));
        if let Some(f) = &feed {
            publisher = publisher.with_feed(f.clone());
        }
        // A target that contradicts the log (another log's, or ahead of this one) is refused
        // here; one that cannot be reached now is retried in the background.
        match publisher.published().await {
            Err(e) if e.is_permanent() => {
                return Err(ServerError::FailedPrecondition(format!(
                    "refusing to start: publish.target: {e}"
                )));
            }
            Err(e) => {
                tracing::warn!(error = %e, "publish.target unreachable at start-up; retrying in the background")
            }
            Ok(_) => {}
        }
        let stop = shutdown.clone();
        let _ = shutdown.spawn(async move {
            if let Err(e) = publisher.run(async move { stop.recv().await }).await {
                tracing::error!(error = %e, "audit publication stopped");
            }
        });
    }
    if let Some(h) = &config.audit_http {
        let mut http = h.build().map_err(|e| ServerError::Config(e.to_string()))?;
        http.feed = feed;
        let (listener, addr) = crate::serve::bind("audit_http.listen", h.listen).await?;
        tracing::info!(address = %addr, access = ?h.access, tls = http.tls.is_some(), "audit tiles API serving");
        out.tiles_addr = Some(addr);
        let stop = shutdown.clone();
        let _ = shutdown.spawn(async move {
            let served = audit_http::serve(listener, log, &http, async move { stop.recv().await });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "audit tiles API stopped");
            }
        });
    }
    Ok(out)
}
