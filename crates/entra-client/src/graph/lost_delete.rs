//! A DELETE whose earlier attempt may have done it.
//!
//! A DELETE that timed out, lost its connection after being sent, or was answered 500, 502,
//! 503 or 504 is retried (DELETE is idempotent in effect). When the object was removed by that
//! earlier attempt, the retry meets a 404 (Graph's is `Request_ResourceNotFound`, but any 404
//! counts: a gateway's page or another code says the same): the DELETE's goal holds, so the
//! call is reported done, with [`super::CallMeta::deleted_by_earlier_attempt`]
//! set and a log line. A 404 on the *first* attempt stays an error: nothing of ours can have
//! removed the object, and callers that tolerate a missing object already say so themselves.

use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

use crate::error::{EntraError, TransportErrorKind};
use crate::transport::HttpResponse;

/// What the attempts of one DELETE have shown so far (shared by the attempts of one
/// logical call, the retry after a renewed token included).
#[derive(Debug, Default)]
pub(crate) struct DeleteAttempts {
    /// An attempt went unanswered or failed in a way that may have followed the delete.
    may_have_landed: AtomicBool,
    /// The final 404 was taken as the earlier attempt's success.
    settled_by_earlier: AtomicBool,
}

impl DeleteAttempts {
    /// Whether the call's final 404 was taken as success.
    pub(crate) fn settled_by_earlier(&self) -> bool {
        self.settled_by_earlier.load(Ordering::Relaxed)
    }

    /// Looks at one attempt's outcome: remembers failures after which the object may be gone,
    /// and turns a later 404 (whatever its code) into a 404 answer taken as success.
    pub(crate) fn settle(
        &self,
        operation: &'static str,
        outcome: Result<HttpResponse, EntraError>,
    ) -> Result<HttpResponse, EntraError> {
        let err = match outcome {
            Ok(resp) => return Ok(resp),
            Err(e) => e,
        };
        if let EntraError::Graph(g) = &err
            && g.status == 404
            && self.may_have_landed.load(Ordering::Relaxed)
        {
            tracing::info!(
                operation,
                request_id = g.request_id.as_deref().unwrap_or(""),
                "graph answered 404 to a retried DELETE whose earlier attempt went unanswered or \
                 failed with a server error; that attempt deleted it, so the delete is done"
            );
            self.settled_by_earlier.store(true, Ordering::Relaxed);
            let mut headers = HeaderMap::new();
            if let Some(v) = g
                .request_id
                .as_deref()
                .and_then(|r| HeaderValue::from_str(r).ok())
            {
                headers.insert("request-id", v);
            }
            return Ok(HttpResponse {
                status: StatusCode::NOT_FOUND,
                headers,
                body: Vec::new(),
            });
        }
        if may_have_acted(&err) {
            self.may_have_landed.store(true, Ordering::Relaxed);
        }
        Err(err)
    }
}

/// True when the request reached Graph and its outcome is unknown or was a server error: a
/// timeout or a connection lost after sending, or 500, 502, 503 or 504. (A failed connect
/// never reached Graph; 429 means the request was not processed.)
fn may_have_acted(err: &EntraError) -> bool {
    match err {
        EntraError::Graph(g) => matches!(g.status, 500 | 502 | 503 | 504),
        EntraError::Transport { kind, .. } => {
            matches!(
                kind,
                TransportErrorKind::Timeout | TransportErrorKind::Other
            )
        }
        _ => false,
    }
}
