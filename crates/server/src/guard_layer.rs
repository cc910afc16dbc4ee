//! The one tower layer in front of every service (see `crate::limits` for the rules):
//!
//! - calls in flight over all connections, counted until their response body ends (a stream
//!   counts while it is open); beyond `limits.max_concurrent_calls`, RESOURCE_EXHAUSTED at once;
//! - the server's time limit, `limits.request_timeout_secs`: a call whose response (its
//!   headers: a unary call's answer, a stream's opening) has not come by then is dropped and
//!   answered DEADLINE_EXCEEDED naming the limit. A stream's body is not bounded by it (Follow,
//!   Watch, SignIn stay open on their own rules). tonic's `Server::timeout` is not used: it
//!   answers CANCELLED, which says the caller gave up;
//! - the caller's own deadline, its `grpc-timeout` header, when it is the shorter one: past it
//!   the call is DEADLINE_EXCEEDED naming the header, as gRPC's status guide has it for a
//!   deadline that expired at the server. tonic also reads the header, one layer out, and would
//!   answer CANCELLED; this layer's clock starts before tonic's and stops 1 ms short of it, so
//!   this layer answers. The deadline is the whole call's: a stream still open at it sends no
//!   more and ends with trailers saying DEADLINE_EXCEEDED (`deadline`), its producer dropped
//!   and its slot freed (tonic bounds only the response's headers, and a tonic client keeps no
//!   clock for a stream's body);
//! - the handler runs on a task of its own, tracked by the server's shutdown: a call whose
//!   caller went away (a disconnect) or whose deadline passed is answered, or dropped, here, but
//!   what its handler started runs to its end, so a change is never cut between its audit
//!   intent and its outcome, nor between Entra and the store. It keeps its call slot until then;
//!   a graceful stop waits for it (`Shutdown::grace`);
//! - a request that does not decode (invalid UTF-8 in a string field, a truncated message) is
//!   the caller's fault: tonic's codec answers INTERNAL, this layer answers INVALID_ARGUMENT
//!   with a `google.rpc.BadRequest` violation naming the field's path and the rule broken
//!   (`decode`), never its bytes; a message over `limits.max_message_bytes` is
//!   RESOURCE_EXHAUSTED (tonic: OUT_OF_RANGE).

mod deadline;
mod decode;

use std::sync::Arc;
use std::time::Duration;

use onboard_core::shutdown::Shutdown;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tracing::Instrument;

use crate::http_layer::{Around, BoxFuture, Inner, Layered, Watch, Watched};
use crate::limits::{Guards, exhausted};

/// The layer; clones share the limits.
#[derive(Clone)]
pub(crate) struct GuardLayer {
    /// Rates and caps.
    guards: Arc<Guards>,
    /// Calls in flight.
    calls: Arc<Semaphore>,
    /// Tracks each handler's task, so a graceful stop waits for the calls it has under way.
    shutdown: Shutdown,
}

impl GuardLayer {
    /// The layer over `guards`; handlers run as tasks of `shutdown`.
    pub(crate) fn new(guards: Arc<Guards>, shutdown: Shutdown) -> Self {
        let calls = Arc::new(Semaphore::new(guards.config.max_concurrent_calls));
        Self {
            guards,
            calls,
            shutdown,
        }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Layered<S, GuardLayer>;

    fn layer(&self, inner: S) -> Self::Service {
        Layered::new(inner, self.clone())
    }
}

/// A refusal as an HTTP response: a trailers-only gRPC status for a gRPC call, the wizard's
/// JSON error (429 with `Retry-After`) for a browser.
fn refuse(e: crate::error::ServerError, grpc: bool) -> Response<Body> {
    let status = tonic::Status::from(e);
    if grpc {
        return status.into_http();
    }
    crate::wizard::error_response(&status).map(Body::new)
}

/// Whether a request is a gRPC call (the wizard's requests are plain HTTP).
pub(crate) fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(tonic::codegen::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl Around for GuardLayer {
    fn around<S: Inner>(
        &self,
        mut inner: S,
        req: Request<Body>,
    ) -> BoxFuture<Response<Body>, S::Error> {
        let guards = self.guards.clone();
        let shutdown = self.shutdown.clone();
        let permit = self.calls.clone().try_acquire_owned();
        let grpc = is_grpc(&req);
        // Taken before tonic starts its own clock for the caller's deadline (it calls this
        // layer first, then starts it).
        let started = tokio::time::Instant::now();
        let caller = grpc.then(|| caller_deadline(req.headers())).flatten();
        Box::pin(async move {
            let Ok(permit) = permit else {
                let max = guards.config.max_concurrent_calls;
                return Ok(refuse(
                    exhausted(
                        &format!("limits.max_concurrent_calls = {max}"),
                        "calls in flight on this server",
                        Some(std::time::Duration::from_secs(1)),
                    ),
                    grpc,
                ));
            };
            // The handlers see which RPC they serve (tonic's server requests carry no path).
            let mut req = req;
            let path = req.uri().path().to_owned();
            req.extensions_mut()
                .insert(crate::limits::RpcPath(path.clone()));
            let limit = guards.config.request_timeout_secs;
            let (within, refusal) = match &caller {
                Some((header, after)) if *after < Duration::from_secs(limit) => (
                    after.saturating_sub(AHEAD_OF_TONIC),
                    past_caller_deadline(header),
                ),
                _ => (Duration::from_secs(limit), past_time_limit(limit)),
            };
            // On a task of its own (in this call's span), holding the call's slot: dropping
            // this future (the deadline below, a disconnect) does not stop it.
            let handler = async move { (inner.call(req).await, permit) }.in_current_span();
            let stopping = || {
                let e =
                    crate::error::ServerError::Unavailable("the server is shutting down".into());
                Ok(refuse(e, grpc))
            };
            let deadline = started + within;
            let (res, permit) = if shutdown.is_shutdown() {
                // The drain has begun: tracked work starts no more; the call runs here.
                match tokio::time::timeout_at(deadline, handler).await {
                    Ok(done) => done,
                    Err(_) => return Ok(refuse(refusal, grpc)),
                }
            } else {
                let Some(task) = shutdown.spawn(handler) else {
                    return stopping();
                };
                match tokio::time::timeout_at(deadline, task).await {
                    Ok(Ok(Some(done))) => done,
                    Err(_) => return Ok(refuse(refusal, grpc)),
                    // Cut off at the end of the shutdown's grace, or a panic (logged).
                    Ok(Ok(None) | Err(_)) => return stopping(),
                }
            };
            let mut res = res?;
            if let Some(e) = refuse_decode_errors(&mut res, &path) {
                return Ok(refuse(e, grpc));
            }
            // The body holds its call's slot until it ends, or until the caller's deadline.
            let res = res.map(|body| Watched::body(body, permit));
            Ok(match caller {
                Some((header, after)) => {
                    res.map(|body| deadline::UntilDeadline::body(body, started + after, header))
                }
                None => res,
            })
        })
    }
}

/// The refusal of a call that reached the server's time limit of `secs` seconds.
fn past_time_limit(secs: u64) -> crate::error::ServerError {
    crate::error::ServerError::DeadlineExceeded(format!(
        "the call was not answered within the server's time limit \
         (limits.request_timeout_secs = {secs}); {RUNS_ON}"
    ))
}

/// How much sooner than tonic this layer ends a call at the caller's deadline: one tick of
/// tokio's timer, so the two clocks never fire in the same tick.
const AHEAD_OF_TONIC: Duration = Duration::from_millis(1);

/// The caller's deadline: its `grpc-timeout` header as written and as a duration; `None`
/// without the header or when it breaks gRPC's grammar (tonic ignores such a header too).
fn caller_deadline(headers: &tonic::codegen::http::HeaderMap) -> Option<(String, Duration)> {
    let header = headers.get("grpc-timeout")?.to_str().ok()?;
    Some((header.to_owned(), parse_grpc_timeout(header)?))
}

/// gRPC's `grpc-timeout` (PROTOCOL-HTTP2.md: `TimeoutValue TimeoutUnit`, at most 8 ASCII
/// digits, then one of `H M S m u n`) as a duration.
fn parse_grpc_timeout(header: &str) -> Option<Duration> {
    let digits = header.get(..header.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match header.as_bytes().last()? {
        b'H' => Duration::from_secs(value * 3600),
        b'M' => Duration::from_secs(value * 60),
        b'S' => Duration::from_secs(value),
        b'm' => Duration::from_millis(value),
        b'u' => Duration::from_micros(value),
        b'n' => Duration::from_nanos(value),
        _ => return None,
    })
}

/// The refusal of a call not answered by the caller's deadline, `header` as it sent it.
fn past_caller_deadline(header: &str) -> crate::error::ServerError {
    crate::error::ServerError::DeadlineExceeded(format!(
        "the call was not answered within the caller's deadline (grpc-timeout: {header}); \
         {RUNS_ON}"
    ))
}

/// What a call answered DEADLINE_EXCEEDED still does: its handler is not cut off.
const RUNS_ON: &str = "what it started runs to its end (its audit entries say how it ended): look before repeating it";

/// What tonic's codec answers for a request it could not take, in the caller's terms:
/// "failed to decode Protobuf message: …" (INTERNAL) is the refusal returned, INVALID_ARGUMENT
/// with the field's violation (`decode`); "decoded message length too large" (OUT_OF_RANGE) is
/// rewritten to RESOURCE_EXHAUSTED, as gRPC's status guide has it for a message over the limit
/// (`limits.max_message_bytes`, named in the message).
fn refuse_decode_errors(res: &mut Response<Body>, path: &str) -> Option<crate::error::ServerError> {
    let h = res.headers();
    let status = h.get("grpc-status").map(|v| v.as_bytes().to_vec());
    let message = h.get("grpc-message").map(|v| v.as_bytes().to_vec());
    let (Some(status), Some(message)) = (status, message) else {
        return None;
    };
    let starts = |plain: &str| {
        message.starts_with(plain.as_bytes())
            || message.starts_with(plain.replace(' ', "%20").as_bytes())
    };
    if status == b"13" && starts("failed to decode Protobuf message") {
        // The message as tonic wrote it, percent-decoded (unreadable: the whole request's).
        let decoded = tonic::Status::from_header_map(res.headers());
        return Some(decode::refusal(
            path,
            decoded.as_ref().map_or("", |s| s.message()),
        ));
    }
    if status == b"11" && starts("Error, decoded message length too large") {
        res.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("8"));
    }
    None
}

/// A call's slot: released when its response body is dropped (the stream ended or the caller
/// left).
impl Watch for OwnedSemaphorePermit {}

#[cfg(test)]
mod tests {
    use super::parse_grpc_timeout;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn grpc_timeout_follows_the_grammar() {
        let ok = [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("30S", Duration::from_secs(30)),
            ("250m", Duration::from_millis(250)),
            ("99999999u", Duration::from_micros(99_999_999)),
            ("7n", Duration::from_nanos(7)),
            ("0S", Duration::ZERO),
        ];
        for (header, want) in ok {
            assert_eq!(parse_grpc_timeout(header), Some(want), "{header}");
        }
        for bad in [
            "",
            "S",
            "100",
            "123456789S",
            "1s",
            "1.5S",
            "-1S",
            "+1S",
            " 1S",
            "1 S",
            "1é",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    proptest! {
        /// Any value of at most 8 digits with any unit reads back as written.
        #[test]
        fn grpc_timeout_reads_back(value in 0u64..100_000_000, unit in 0usize..6) {
            let (letter, nanos) = [("H", 3_600_000_000_000u128), ("M", 60_000_000_000),
                ("S", 1_000_000_000), ("m", 1_000_000), ("u", 1_000), ("n", 1)][unit];
            let parsed = parse_grpc_timeout(&format!("{value}{letter}"));
            prop_assert_eq!(parsed.map(|d| d.as_nanos()), Some(u128::from(value) * nanos));
        }

        /// Nothing panics, whatever the header holds.
        #[test]
        fn grpc_timeout_never_panics(header in "\\PC{0,12}") {
            let _ = parse_grpc_timeout(&header);
        }
    }
}
