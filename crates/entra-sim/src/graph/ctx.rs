//! One Graph request as its handlers see it: who calls, what it asks, and the answers every
//! handler shares (OData errors, the replica it is served by).

use std::sync::OnceLock;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::{Caller, Query};
use crate::http::{ReqIds, odata_error};
use crate::state::Shared;

/// One request, parsed, with everything a handler needs.
pub struct Ctx<'a> {
    /// Emulator state.
    pub s: &'a Shared,
    /// Tenant of the access token (`tid`): the directory this request reads and writes.
    pub tid: String,
    /// Correlation ids for error bodies.
    pub ids: &'a ReqIds,
    /// The authenticated caller.
    pub caller: Caller,
    /// OData query options.
    pub query: Query,
    /// Request headers (Prefer, ConsistencyLevel).
    pub headers: &'a HeaderMap,
    /// Request path after `/v1.0/`, for `@odata.nextLink`.
    pub path: String,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// The request's method, for faults that meet only some ([`crate::Faults::stale_replica_method`]).
    pub method: Method,
    /// Whether this request is served by a replica that has not seen recent objects
    /// ([`crate::Faults::stale_replica_answers`]): decided at its first lookup of a recent
    /// object, so every lookup of one request sees the same replica.
    pub stale: OnceLock<bool>,
}

impl Ctx<'_> {
    /// Locks the state with the caller's tenant selected.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, crate::state::Inner> {
        self.s.lock_tenant(&self.tid)
    }

    /// An OData error with this request's ids.
    pub fn err(&self, status: StatusCode, code: &str, message: &str) -> Response {
        odata_error(self.ids, status, code, message)
    }

    /// 400 Request_BadRequest with `message`: Graph's refusal of a body or reference it cannot
    /// take.
    pub fn bad_request(&self, message: &str) -> Response {
        self.err(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// 404 Request_ResourceNotFound for object `id`, with Entra's wording.
    pub fn not_found(&self, id: &str) -> Response {
        self.err(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        )
    }

    /// Whether this request's replica has seen an object visible from `visible_at_ms`: it has
    /// replicated, and unless it is old, this request did not meet a stale replica.
    pub fn sees(&self, visible_at_ms: u64) -> bool {
        if !self.s.visible(visible_at_ms) {
            return false;
        }
        !self.s.is_recent(visible_at_ms)
            || !*self
                .stale
                .get_or_init(|| self.s.take_stale_answer(self.method.as_str(), &self.path))
    }

    /// 403 Authorization_RequestDenied.
    pub fn denied(&self) -> Response {
        self.err(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// The request body as an object, or the 400 Graph gives for a missing/invalid payload.
    pub fn body_object(&self) -> Result<&serde_json::Map<String, Value>, Response> {
        self.body.as_ref().and_then(Value::as_object).ok_or_else(|| {
            self.err(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            )
        })
    }
}
