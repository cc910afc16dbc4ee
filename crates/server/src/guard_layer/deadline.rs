//! The caller's deadline over a response body: gRPC's deadline is the whole call's, so a
//! stream still open at it (Follow, Watch, Provision, SignIn, RotateSecret, Backup) sends no
//! more and ends with trailers saying DEADLINE_EXCEEDED. The inner body is dropped then: the
//! stream's producer is cancelled and the call's slot (held by the inner body) is freed, even
//! when the caller, as a tonic client does, keeps no clock of its own for a stream's body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::codegen::Bytes;
use tonic::codegen::http::{HeaderMap, HeaderValue};

use crate::http_layer::Polled;

/// A response body that ends at the caller's deadline.
pub(super) struct UntilDeadline {
    /// The inner body, until it ends or the deadline passes.
    body: Option<Body>,
    /// Fires at the caller's deadline.
    sleep: Pin<Box<Sleep>>,
    /// The caller's `grpc-timeout` header as sent, named in the trailers.
    header: String,
    /// The inner body sent its trailers: the call has its status, the deadline no longer
    /// applies.
    answered: bool,
}

impl UntilDeadline {
    /// `body`, ended at `deadline` (the caller's `grpc-timeout`, `header` as sent).
    pub(super) fn body(body: Body, deadline: Instant, header: String) -> Body {
        Body::new(Self {
            body: Some(body),
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            header,
            answered: false,
        })
    }
}

impl http_body::Body for UntilDeadline {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.answered && this.sleep.as_mut().poll(cx).is_ready() {
            // Dropped here, not when the caller goes: the producer stops, the slot is freed.
            this.body = None;
            let trailers = past_deadline(&this.header);
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
        }
        let polled = Pin::new(body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => this.answered = true,
            Poll::Ready(None | Some(Err(_))) => this.answered = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.body {
            Some(body) => {
                // At most what the inner body has: the deadline can only cut it short.
                let inner = body.size_hint();
                let mut hint = http_body::SizeHint::new();
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper);
                }
                hint
            }
            None => http_body::SizeHint::with_exact(0),
        }
    }
}

/// The trailers of a stream ended at the caller's deadline, `header` as it sent it.
fn past_deadline(header: &str) -> HeaderMap {
    let e = crate::error::ServerError::DeadlineExceeded(format!(
        "the call reached the caller's deadline (grpc-timeout: {header}) with its stream open: \
         the stream ends here; {}",
        super::RUNS_ON
    ));
    let mut trailers = HeaderMap::new();
    if tonic::Status::from(e).add_header(&mut trailers).is_err() {
        // Only a message that is not a header value fails; the code alone still says it.
        trailers.clear();
        trailers.insert("grpc-status", HeaderValue::from_static("4"));
    }
    trailers
}
