//! The caller's deadline over a response body: gRPC's deadline is the whole call's, so a
//! stream still open at it (Follow, Watch, Provision, SignIn, RotateSecret, Backup) sends no
//! more and ends with trailers saying DEADLINE_EXCEEDED. The inner body is dropped then: the
//! stream's producer is cancelled and the call's slot (held by the inner body) is freed, even
//! when the caller, as a tonic client does, keeps no clock of its own for a stream's body, and
//! even while nobody polls the body (HTTP/2 does not poll it while the reader's window is full):
//! a timer task drops it at the deadline.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::Bytes;
use tonic::codegen::http::{HeaderMap, HeaderValue};

use crate::http_layer::Polled;

/// A response body that ends at the caller's deadline.
pub(super) struct UntilDeadline {
    /// The inner body and what became of it, shared with `timer`.
    state: Arc<Mutex<State>>,
    /// Drops the inner body at the deadline whether or not this body is polled: HTTP/2 stops
    /// polling a body whose reader's window is full, and such a reader must not hold the
    /// call's slot past its deadline. Aborted when this body goes.
    timer: JoinHandle<()>,
    /// The caller's `grpc-timeout` header as sent, named in the trailers.
    header: String,
}

/// What the poller and the deadline's timer share.
struct State {
    /// The inner body, until it ends or the deadline passes.
    body: Option<Body>,
    /// The inner body sent its trailers: the call has its status, the deadline no longer
    /// applies.
    answered: bool,
    /// The deadline passed first: the trailers saying so are still to be sent.
    expired: bool,
    /// Who last polled, woken at the deadline to send those trailers.
    waker: Option<Waker>,
}

impl UntilDeadline {
    /// `body`, ended at `deadline` (the caller's `grpc-timeout`, `header` as sent).
    pub(super) fn body(body: Body, deadline: Instant, header: String) -> Body {
        let state = Arc::new(Mutex::new(State {
            body: Some(body),
            answered: false,
            expired: false,
            waker: None,
        }));
        let shared = Arc::clone(&state);
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            let (dropped, waker) = {
                let mut s = lock(&shared);
                if s.answered || s.body.is_none() {
                    return;
                }
                s.expired = true;
                (s.body.take(), s.waker.take())
            };
            // Dropped here, not when the caller goes: the producer stops, the slot is freed.
            drop(dropped);
            if let Some(w) = waker {
                w.wake();
            }
        });
        Body::new(Self {
            state,
            timer,
            header,
        })
    }
}

impl Drop for UntilDeadline {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

/// The shared state, taken over as it is if a holder panicked (its fields stay consistent:
/// each is set in one step).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl http_body::Body for UntilDeadline {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        let mut s = lock(&this.state);
        if s.expired {
            s.expired = false;
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(past_deadline(
                &this.header,
            )))));
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        let Some(body) = s.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => s.answered = true,
            Poll::Ready(None | Some(Err(_))) => s.answered = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let s = lock(&self.state);
        !s.expired && s.body.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &lock(&self.state).body {
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
