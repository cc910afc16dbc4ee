//! The witness's HTTP interface: `POST <prefix>/add-checkpoint` (C2SP tlog-witness).
//!
//! Answers: 200 with the cosignature lines; 409 `text/x.tlog.size` with the latest cosigned
//! size when the old size is stale; 409 plain text when the sizes match but the roots differ;
//! 422 for a bad proof; 403 when no trusted key signed; 404 for an unknown origin; 400 for a
//! malformed body; 413 for a body over 128 KiB (`MAX_REQUEST_BYTES`); 405 for other methods.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;

use crate::error::WitnessError;
use crate::protocol::{
    ADD_CHECKPOINT_PATH, MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE, encode_size_body,
};
use crate::witness::Witness;

/// The content type of 200 answers and error messages.
const TEXT: &str = "text/plain; charset=utf-8";

/// The witness's routes, under the root as both submission and monitoring prefix.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route(ADD_CHECKPOINT_PATH, post(add_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(witness)
}

/// Serves `witness` on `listener` until `shutdown` completes, then finishes the requests in
/// flight.
pub async fn serve(
    listener: TcpListener,
    witness: Arc<Witness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WitnessError> {
    axum::serve(listener, router(witness))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| WitnessError::Server(e.to_string()))
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    // The per-log lock and the state fsync block: keep them off the async workers.
    let result = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body)).await;
    let result = match result {
        Ok(r) => r,
        Err(e) => Err(WitnessError::Server(format!("request task failed: {e}"))),
    };
    match result {
        Ok(lines) => {
            tracing::debug!("cosigned a checkpoint");
            (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], lines).into_response()
        }
        Err(WitnessError::Conflict { size }) => {
            tracing::info!(size, "add-checkpoint: stale old size");
            (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
                encode_size_body(size),
            )
                .into_response()
        }
        Err(e) => {
            let code =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if code.is_server_error() {
                tracing::error!(error = %e, "add-checkpoint failed");
            } else {
                tracing::warn!(status = code.as_u16(), error = %e, "add-checkpoint refused");
            }
            (code, [(header::CONTENT_TYPE, TEXT)], format!("{e}\n")).into_response()
        }
    }
}
