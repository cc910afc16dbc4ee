//! The metrics layer: in front of every service (outside the guard layer, so its refusals are
//! counted too), it counts and times each gRPC call and writes one log line when the call ends.
//!
//! - `onboard_grpc_requests_total{service,method,code}` and
//!   `onboard_grpc_request_duration_seconds{service,method}` when the response body ends (for
//!   a stream: when it closes), with the code from `grpc-status` in the headers
//!   (trailers-only answers) or the trailers; a body dropped before its status (the caller
//!   left) is `CANCELLED`;
//! - `onboard_grpc_streams_open{service,method}` while a server stream's body is open.
//!
//! Service and method come from a table of the served RPCs (the descriptor sets), never from
//! the path as sent: an unknown path is `unknown`/`unknown`. Plain HTTP (the wizard) is not
//! counted here.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::task::Poll;
use std::time::Instant;
use tracing::Instrument;

use prost::Message;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};

use super::note::CallNote;
use crate::http_layer::{Around, BoxFuture, Inner, Layered, Polled, Watch, Watched};

/// One served RPC, as labels.
#[derive(Debug)]
struct Rpc {
    /// The full service name (`onboard.v1.Onboarding`).
    service: &'static str,
    /// The method name (`Provision`).
    method: &'static str,
    /// A server stream: counted in `onboard_grpc_streams_open` while open.
    streaming: bool,
}

/// What an unknown path is counted as.
static UNKNOWN: Rpc = Rpc {
    service: "unknown",
    method: "unknown",
    streaming: false,
};

/// `/service/method` → the RPC, built once per process from the descriptor sets (the names are
/// leaked once: a fixed, small set).
fn table() -> &'static HashMap<String, Rpc> {
    static TABLE: OnceLock<HashMap<String, Rpc>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = HashMap::new();
        let sets = [
            onboard_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ];
        for bytes in sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
                continue;
            };
            for file in &set.file {
                for svc in &file.service {
                    let service = match file.package() {
                        "" => svc.name().to_owned(),
                        p => format!("{p}.{}", svc.name()),
                    };
                    let service: &'static str = Box::leak(service.into_boxed_str());
                    for m in &svc.method {
                        let method: &'static str = Box::leak(m.name().to_owned().into_boxed_str());
                        t.insert(
                            format!("/{service}/{method}"),
                            Rpc {
                                service,
                                method,
                                streaming: m.server_streaming(),
                            },
                        );
                    }
                }
            }
        }
        // Reflection, both versions (their descriptor sets are not exported by
        // tonic-reflection).
        for service in [
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            t.insert(
                format!("/{service}/ServerReflectionInfo"),
                Rpc {
                    service,
                    method: "ServerReflectionInfo",
                    streaming: true,
                },
            );
        }
        t
    })
}

/// The layer; stateless (the metrics live in the recorder).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MetricsLayer;

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Layered<S, MetricsLayer>;

    fn layer(&self, inner: S) -> Self::Service {
        Layered::new(inner, *self)
    }
}

impl Around for MetricsLayer {
    fn around<S: Inner>(
        &self,
        mut inner: S,
        mut req: Request<Body>,
    ) -> BoxFuture<Response<Body>, S::Error> {
        let grpc = crate::guard_layer::is_grpc(&req);
        if !grpc {
            return Box::pin(inner.call(req));
        }
        let rpc = table().get(req.uri().path()).unwrap_or(&UNKNOWN);
        let note = CallNote::default();
        req.extensions_mut().insert(note.clone());
        let started = Instant::now();
        // One span per call, from the request to the end of its body (exported as a trace when
        // `[telemetry] otlp_endpoint` is set); the handler, and the runs it starts, are inside.
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format_args!("{}/{}", rpc.service, rpc.method),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = rpc.service,
            rpc.method = rpc.method,
            rpc.grpc.status = tracing::field::Empty,
            onboarding_id = tracing::field::Empty,
        );
        let within = span.clone();
        Box::pin(
            async move {
                let res = inner.call(req).await?;
                let mut call = Call {
                    rpc,
                    started,
                    code: status_of(res.headers()),
                    note,
                    stream: false,
                    span,
                };
                // A trailers-only answer (an error, or an empty unary reply) has its status here.
                if rpc.streaming && call.code.is_none() {
                    call.stream = true;
                    open_streams(rpc).increment(1.0);
                }
                Ok(res.map(|body| Watched::body(body, Observed { call: Some(call) })))
            }
            .instrument(within),
        )
    }
}

fn open_streams(rpc: &'static Rpc) -> metrics::Gauge {
    metrics::gauge!(
        "onboard_grpc_streams_open",
        "service" => rpc.service,
        "method" => rpc.method
    )
}

/// One call until its body ends.
struct Call {
    /// Its labels.
    rpc: &'static Rpc,
    /// When the request arrived.
    started: Instant,
    /// The gRPC status code's name, once seen.
    code: Option<&'static str>,
    /// The caller and onboarding the handler noted.
    note: CallNote,
    /// Counted in `onboard_grpc_streams_open`.
    stream: bool,
    /// The call's span, closed with the call (its status and onboarding recorded first).
    span: tracing::Span,
}

impl Drop for Call {
    // Runs once: when the body ends or is dropped (the caller went away).
    fn drop(&mut self) {
        let code = self.code.unwrap_or("CANCELLED");
        let rpc = self.rpc;
        let took = self.started.elapsed();
        if self.stream {
            open_streams(rpc).decrement(1.0);
        }
        metrics::counter!(
            "onboard_grpc_requests_total",
            "service" => rpc.service,
            "method" => rpc.method,
            "code" => code
        )
        .increment(1);
        metrics::histogram!(
            "onboard_grpc_request_duration_seconds",
            "service" => rpc.service,
            "method" => rpc.method
        )
        .record(took.as_secs_f64());
        let noted = self.note.get();
        self.span.record("rpc.grpc.status", code);
        if let Some(id) = noted.onboarding_id.as_deref() {
            self.span.record("onboarding_id", id);
        }
        tracing::info!(
            service = rpc.service,
            method = rpc.method,
            code,
            duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            caller = noted.caller.as_deref().unwrap_or(""),
            onboarding_id = noted.onboarding_id.as_deref().unwrap_or(""),
            "rpc"
        );
    }
}

/// The watch on a call's response body, for its trailers.
struct Observed {
    /// Recorded when the body ends (`None` afterwards) or is dropped.
    call: Option<Call>,
}

impl Watch for Observed {
    fn polled(&mut self, polled: &Polled) {
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(call)) = (frame.trailers_ref(), self.call.as_mut())
                    && let Some(code) = status_of(trailers)
                {
                    call.code = Some(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.as_mut() {
                    call.code.get_or_insert("INTERNAL");
                }
                self.call.take();
            }
            Poll::Ready(None) => {
                if let Some(call) = self.call.as_mut() {
                    // A body that ended without any status: tonic always sends one, so this is
                    // a broken stream.
                    call.code.get_or_insert("UNKNOWN");
                }
                self.call.take();
            }
            Poll::Pending => {}
        }
    }
}

/// The `grpc-status` in `headers`, as the code's canonical name.
fn status_of(headers: &HeaderMap) -> Option<&'static str> {
    let v = headers.get("grpc-status")?;
    Some(code_name(v.to_str().ok()?.trim().parse().ok()?))
}

/// gRPC's canonical code names (a bounded label set).
fn code_name(code: u8) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_knows_the_services_and_their_streams() {
        let t = table();
        let p = &t["/onboard.v1.Onboarding/Provision"];
        assert_eq!(
            (p.service, p.method, p.streaming),
            ("onboard.v1.Onboarding", "Provision", true)
        );
        assert!(!t["/onboard.v1.Invitations/CreateInvitation"].streaming);
        assert!(t.contains_key("/grpc.health.v1.Health/Check"));
        assert!(!t.contains_key("/onboard.v1.Onboarding/Nope"));
    }

    #[test]
    fn codes_have_their_canonical_names() {
        let mut h = HeaderMap::new();
        h.insert(
            "grpc-status",
            "9".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(status_of(&h), Some("FAILED_PRECONDITION"));
        assert_eq!(code_name(200), "UNKNOWN");
    }
}
