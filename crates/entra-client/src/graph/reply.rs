//! What a Graph call gives back: its value, and the facts the audit log records of it.

use crate::error::EntraError;
use crate::retry::OpContext;

/// Facts about a completed Graph call, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMeta {
    /// HTTP status of the final answer (e.g. 201 vs 204 tells created from updated).
    pub status: u16,
    /// Graph's `request-id` of the final answer (for paged lists: of the last page).
    pub request_id: Option<String>,
    /// The `client-request-id` we sent for this logical operation.
    pub client_request_id: String,
    /// Requests sent, retries and pages included.
    pub attempts: u32,
    /// A DELETE whose final answer was 404 `Request_ResourceNotFound` after an earlier attempt
    /// of it went unanswered (timeout, lost connection) or failed with 500/502/503/504: that
    /// attempt most likely deleted the object, so the call is reported done (`status` is the
    /// 404's). Always false for other calls.
    pub deleted_by_earlier_attempt: bool,
}

/// A Graph result with its call facts.
#[derive(Debug, Clone)]
pub struct Reply<T> {
    /// The decoded answer.
    pub value: T,
    /// Status and correlation ids.
    pub meta: CallMeta,
}

impl CallMeta {
    /// Graph's `request-id`, or `""` when the answer had none: for log fields.
    pub fn request_id_or_empty(&self) -> &str {
        self.request_id.as_deref().unwrap_or("")
    }

    /// The facts of a read whose 404 `err` is its answer ("there is none").
    pub(crate) fn not_found(err: &EntraError, ctx: &OpContext) -> Self {
        CallMeta {
            status: 404,
            request_id: err.request_id().map(str::to_owned),
            client_request_id: ctx.client_request_id.to_string(),
            attempts: 1,
            deleted_by_earlier_attempt: false,
        }
    }
}

impl<T> Reply<T> {
    /// Applies `f` to the value, keeping the call facts.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Reply<U> {
        Reply {
            value: f(self.value),
            meta: self.meta,
        }
    }
}

/// A read's `result` with Graph's 404 taken as its answer "there is none": `None`, with the
/// 404's facts ([`CallMeta::not_found`]). Other errors stay errors.
pub(crate) fn found_or_none<T>(
    result: Result<Reply<T>, EntraError>,
    ctx: &OpContext,
) -> Result<Reply<Option<T>>, EntraError> {
    match result {
        Ok(r) => Ok(r.map(Some)),
        Err(e) if e.is_not_found() => Ok(Reply {
            value: None,
            meta: CallMeta::not_found(&e, ctx),
        }),
        Err(e) => Err(e),
    }
}
