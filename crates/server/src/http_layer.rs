//! The plumbing the server's two HTTP layers share (the guard layer, `crate::guard_layer`, and
//! the metrics layer, `crate::telemetry::grpc`): one tower service that hands each request,
//! with the inner service readied for it, to its layer's [`Around::around`], and one response
//! body that shows each frame it passes on to a [`Watch`] and drops the watch with the body.

use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{Bytes, Service};

/// The future of the HTTP layers' services.
pub(crate) type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

/// The service behind a layer: the routes, or the next layer in.
pub(crate) trait Inner:
    Service<Request<Body>, Response = Response<Body>, Future: Send + 'static, Error: Send + 'static>
    + Send
    + 'static
{
}

impl<S> Inner for S where
    S: Service<
            Request<Body>,
            Response = Response<Body>,
            Future: Send + 'static,
            Error: Send + 'static,
        > + Send
        + 'static
{
}

/// What an HTTP layer does around each call; clones share the layer's state.
pub(crate) trait Around: Clone {
    /// Answers `req` with `inner`, the inner service readied for this call.
    fn around<S: Inner>(&self, inner: S, req: Request<Body>)
    -> BoxFuture<Response<Body>, S::Error>;
}

/// The service a layer puts in front of the routes (or of the next layer in).
#[derive(Clone, Debug)]
pub(crate) struct Layered<S, A> {
    /// The routes, or the next layer in.
    inner: S,
    /// What the layer does around each call.
    around: A,
}

impl<S, A> Layered<S, A> {
    /// `inner` behind `around`.
    pub(crate) fn new(inner: S, around: A) -> Self {
        Self { inner, around }
    }
}

impl<S: Inner + Clone, A: Around> Service<Request<Body>> for Layered<S, A> {
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The readied service answers this call; a fresh clone is readied for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        self.around.around(inner, req)
    }
}

/// A frame as a response body yields it.
pub(crate) type Polled = Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>>;

/// What a [`Watched`] body does with each frame it yields: by default nothing (the watch is
/// then only held until the body ends or is dropped).
pub(crate) trait Watch: Send + Unpin + 'static {
    /// Sees what the body yields, before its reader does.
    fn polled(&mut self, _polled: &Polled) {}
}

/// A response body with a [`Watch`] that sees its frames and is dropped with it.
pub(crate) struct Watched<W> {
    /// The inner body.
    body: Body,
    /// Shown every frame; dropped when the body is (the stream ended or the caller left).
    watch: W,
}

impl<W: Watch> Watched<W> {
    /// `body`, watched by `watch`.
    pub(crate) fn body(body: Body, watch: W) -> Body {
        Body::new(Self { body, watch })
    }
}

impl<W: Watch> http_body::Body for Watched<W> {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        this.watch.polled(&polled);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
