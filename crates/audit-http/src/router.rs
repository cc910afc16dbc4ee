//! The routes: `/checkpoint`, `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`.

use std::sync::{Arc, Mutex};

use audit_log::feed::CheckpointToShow;
use audit_log::{AuditError, AuditLog, CheckpointFeed, SignedCheckpoint, TileId, TileKind};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use tower_http::compression::{CompressionLayer, CompressionLevel};

use crate::access::Access;

/// What the handlers share.
struct Served {
    /// The log the tiles come from.
    log: AuditLog,
    /// The checkpoint to serve (the log's own, or the latest a witness quorum cosigned).
    show: CheckpointToShow,
    /// The checkpoint served last (`None`: none yet), so none smaller is served after it.
    served: Mutex<Option<Arc<SignedCheckpoint>>>,
    /// `Cache-Control` of tiles and bundles (immutable; `public` only for open access).
    tile_cache: HeaderValue,
    /// `Cache-Control` of the checkpoint (a few seconds: it changes with every commit).
    checkpoint_cache: HeaderValue,
}

/// The tlog-tiles routes over `log`, serving `feed`'s checkpoint (`log.feed()` for the log's
/// own; the log's own too while a feed of cosigned checkpoints has none yet: see
/// [`CheckpointToShow`]), guarded by
/// `access` (bearer is checked here; mTLS by the TLS handshake in [`crate::serve`]). Mount it
/// at the log's prefix, e.g.
/// `Router::new().nest("/audit", router(log.clone(), log.feed(), &access))`.
pub fn router(log: AuditLog, feed: CheckpointFeed, access: &Access) -> Router {
    let visibility = if access.public() { "public" } else { "private" };
    let served = Arc::new(Served {
        show: CheckpointToShow::new(&log, feed),
        log,
        served: Mutex::new(None),
        tile_cache: header(&format!("{visibility}, max-age=31536000, immutable")),
        checkpoint_cache: header(&format!("{visibility}, max-age=2")),
    });
    // Bundles are JSON text and compress well (the spec: they SHOULD be compressed at the HTTP
    // layer); hash tiles are random bytes and are never compressed.
    let gzip = CompressionLayer::new()
        .gzip(true)
        .quality(CompressionLevel::Fastest);
    let router = Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/entries/{*rest}", get(serve_tile).layer(gzip))
        .route("/tile/{*rest}", get(serve_tile))
        .fallback(|| async { not_found("not a tlog-tiles resource\n".into()) })
        .with_state(served);
    match access {
        Access::Bearer { token_sha256 } => router.layer(middleware::from_fn_with_state(
            token_sha256.clone(),
            require_bearer,
        )),
        // A public log may be read from any web page too (a monitor running in a browser): its
        // answers say so. GETs without credentials need no preflight.
        Access::Open => router.layer(middleware::map_response(any_origin)),
        Access::Mtls => router,
    }
}

async fn any_origin(mut r: Response) -> Response {
    r.headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("no-store"))
}

impl Served {
    /// The checkpoint `/checkpoint` serves (tlog-tiles: it "MUST be served"), never a smaller
    /// one than served before ([`CheckpointToShow::next`]).
    fn checkpoint(&self) -> Arc<SignedCheckpoint> {
        let mut served = self
            .served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.show.next(&mut served)
    }
}

async fn checkpoint(State(s): State<Arc<Served>>) -> Response {
    let cp = s.checkpoint();
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (CACHE_CONTROL, s.checkpoint_cache.clone()),
        ],
        cp.note.clone(),
    )
        .into_response()
}

/// A 404 that no cache keeps: the tile may exist a moment later.
fn not_found(why: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        why,
    )
        .into_response()
}

/// Hash tiles and entry bundles. The path is taken from the request URI as sent (below the
/// mount point), not from a percent-decoding extractor: `tile/0/%30%30%30` is no tile's name.
async fn serve_tile(State(s): State<Arc<Served>>, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/').to_owned();
    let id = match TileId::parse(&path) {
        Ok(id) => id,
        Err(e) => return not_found(format!("{e}\n")),
    };
    let tile = match id.kind {
        // Upper tree levels are in memory (the log's default): a hash tile is 256 copies.
        TileKind::Hash { .. } => s.log.tile(&id),
        // A bundle reads 256 entries from sled: off the async threads.
        TileKind::Entries => {
            let log = s.log.clone();
            match tokio::task::spawn_blocking(move || log.tile(&id)).await {
                Ok(r) => r,
                Err(e) => Err(AuditError::Poisoned(format!("tile reader task: {e}"))),
            }
        }
    };
    match tile {
        Ok(bytes) => (
            [
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (CACHE_CONTROL, s.tile_cache.clone()),
            ],
            bytes,
        )
            .into_response(),
        Err(AuditError::OutOfRange(m)) => not_found(format!("{m}\n")),
        Err(e) => {
            tracing::error!(error = %e, tile = %path, "reading an audit tile failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the audit log could not read this tile\n",
            )
                .into_response()
        }
    }
}

/// Refuses a request without `Authorization: Bearer <token>` whose SHA-256 is configured. The
/// answer never echoes the token.
async fn require_bearer(
    State(hashes): State<Arc<std::collections::HashSet<[u8; 32]>>>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| -> [u8; 32] { Sha256::digest(t.trim().as_bytes()).into() });
    match presented {
        Some(h) if hashes.contains(&h) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"audit log\""),
            )],
            "this audit log needs `Authorization: Bearer <token>` with a configured token\n",
        )
            .into_response(),
    }
}
