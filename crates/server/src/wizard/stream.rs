//! gRPC server streams as `text/event-stream` bodies, and gRPC statuses as JSON errors.
//!
//! The page reads the stream with `fetch` (so the token travels in a header, which
//! `EventSource` cannot send) and parses the standard SSE framing: `event:` + `data:` + blank
//! line. A status that ends a stream becomes a last `error` event.

use std::fmt::Write as _;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::BoxStream;

/// One SSE frame.
fn frame(event: &str, data: &Value) -> Bytes {
    let mut s = String::with_capacity(64);
    let _ = write!(s, "event: {event}\ndata: {data}\n\n");
    Bytes::from(s)
}

/// A stream of `T` as an SSE response; `map` names each item's event and gives its JSON.
pub(super) fn sse<T, F>(stream: BoxStream<T>, map: F) -> Response
where
    T: Send + 'static,
    F: Fn(T) -> Option<(&'static str, Value)> + Send + Sync + 'static,
{
    // An opening comment, so the browser (and any proxy) sees the stream start at once.
    let hello = tokio_stream::once(Ok::<Bytes, std::convert::Infallible>(Bytes::from_static(
        b": stream\n\n",
    )));
    let body = hello.chain(stream.filter_map(move |item| match item {
        Ok(v) => map(v).map(|(event, data)| Ok(frame(event, &data))),
        Err(status) => Some(Ok(frame("error", &error_json(&status)))),
    }));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// What the page needs to know about an error: the code, the server's message, the fields that
/// broke a rule (`google.rpc.BadRequest`) and the preconditions that failed.
#[derive(Debug, Serialize)]
pub(super) struct ErrorBody {
    /// The gRPC code in snake case (`failed_precondition`, …).
    code: &'static str,
    /// The server's message (never a secret: see `ServerError`).
    message: String,
    /// Field violations: `{field, description}`.
    fields: Vec<Value>,
    /// Failed preconditions' descriptions (e.g. each missing permission of an attach).
    missing: Vec<String>,
    /// True when a failed precondition is a new admin sign-in (`SIGN_IN_AGAIN`,
    /// `CONDITIONAL_ACCESS`): Microsoft no longer accepts the one held.
    sign_in_again: bool,
    /// The failed preconditions' types (`WRONG_ACCOUNT`, `MISSING_RIGHTS`, …), for the words.
    preconditions: Vec<String>,
    /// The `google.rpc.ErrorInfo` reason, when the status carries one (`SIGN_IN_DECLINED`,
    /// `SIGN_IN_REFUSED`, `DEVICE_CODE_EXPIRED`): the page words an ended sign-in by it, not
    /// by the message's text.
    reason: Option<String>,
}

/// The JSON of a status.
pub(super) fn error_json(status: &Status) -> Value {
    let details = status.get_error_details();
    let fields = details
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| json!({"field": v.field, "description": v.description}))
                .collect()
        })
        .unwrap_or_default();
    let violations = details
        .precondition_failure()
        .map(|p| p.violations.as_slice())
        .unwrap_or_default();
    let missing = violations.iter().map(|v| v.description.clone()).collect();
    let sign_in_again = violations
        .iter()
        .any(|v| v.r#type == "SIGN_IN_AGAIN" || v.r#type == "CONDITIONAL_ACCESS");
    let preconditions = violations.iter().map(|v| v.r#type.clone()).collect();
    serde_json::to_value(ErrorBody {
        code: code_name(status.code()),
        message: for_the_page(status.message()),
        fields,
        missing,
        sign_in_again,
        preconditions,
        reason: details.error_info().map(|i| i.reason.clone()),
    })
    .unwrap_or(Value::Null)
}

/// `message` as the page may show it (as details after its own words): no id (docs/wizard.md:
/// "no internal ids except the client id on Done"). Microsoft's `(request-id …)` is dropped
/// (the provider's support finds it in the audit log); the onboarding's and the invitation's
/// ids are put in words ("onboarding <id>" → "this onboarding", "invitation <id>" → "your
/// invitation", "no onboarding <id>" → "no such onboarding"); any other GUID (an object id in
/// one of Microsoft's messages) becomes "…". The gRPC caller keeps the full message.
pub(super) fn for_the_page(message: &str) -> String {
    let mut text = message.to_owned();
    while let Some(at) = text.find(" (request-id ") {
        let end = text[at..].find(')').map_or(text.len(), |e| at + e + 1);
        text.replace_range(at..end, "");
    }
    let words: Vec<&str> = text.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let noun = words[i];
        let next = words.get(i + 1).and_then(|w| split_guid(w));
        if let (Some((_, rest)), "onboarding" | "invitation") = (next, noun) {
            let rest = rest.trim_start_matches(['"', '\'']);
            // "no onboarding <id>" (a lookup that failed) reads "no such onboarding".
            let article = match (out.last().is_some_and(|w| w == "no"), noun) {
                (true, _) => "such",
                (false, "onboarding") => "this",
                (false, _) => "your",
            };
            out.push(format!("{article} {noun}{rest}"));
            i += 2;
            continue;
        }
        out.push(match split_guid(noun) {
            Some((before, after)) => format!("{before}…{after}"),
            None => noun.to_owned(),
        });
        i += 1;
    }
    out.join(" ")
}

/// Whether `word` is a GUID (after quotes or a parenthesis, before punctuation), with what
/// stands before and after it.
fn split_guid(word: &str) -> Option<(&str, &str)> {
    let start = word.trim_start_matches(['"', '\'', '(']);
    let guid = start.get(..36)?;
    uuid::Uuid::try_parse(guid).ok()?;
    Some((&word[..word.len() - start.len()], &start[36..]))
}

/// A status as an HTTP error response with its JSON.
pub(crate) fn error_response(status: &Status) -> Response {
    let http = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut res = (http, axum::Json(json!({"error": error_json(status)}))).into_response();
    // A limit's refusal says when to try again (`google.rpc.RetryInfo`), in whole seconds.
    if let Some(wait) = status.get_details_retry_info().and_then(|r| r.retry_delay) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        res.headers_mut()
            .insert(header::RETRY_AFTER, secs.max(1).into());
    }
    res
}

/// An error of this layer (no status involved), e.g. a missing token.
pub(super) fn plain_error(http: StatusCode, code: &'static str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "fields": [], "missing": []}});
    (http, axum::Json(body)).into_response()
}

fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::for_the_page;

    #[test]
    fn the_page_gets_no_ids() {
        let id = "0192f0c4-5b6e-7a1b-8c2d-3e4f5a6b7c8d";
        assert_eq!(
            for_the_page(&format!(
                "onboarding {id} has no signed-in admin and no run yet (the server restarted); \
                 sign in again with invitation {id}"
            )),
            "this onboarding has no signed-in admin and no run yet (the server restarted); \
             sign in again with your invitation"
        );
        assert_eq!(
            for_the_page(&format!("no onboarding \"{id}\"")),
            "no such onboarding"
        );
        assert_eq!(
            for_the_page(&format!("invitation {id}, used")),
            "your invitation, used"
        );
        assert_eq!(
            for_the_page(&format!(
                "graph error 401 InvalidAuthenticationToken: Continuous access evaluation \
                 resulted in challenge (request-id {id}); claims challenge (insufficient_claims)"
            )),
            "graph error 401 InvalidAuthenticationToken: Continuous access evaluation resulted \
             in challenge; claims challenge (insufficient_claims)"
        );
        assert_eq!(
            for_the_page(&format!("Resource '{id}' does not exist.")),
            "Resource '…' does not exist."
        );
        assert_eq!(for_the_page("onboarding is over"), "onboarding is over");
    }
}
