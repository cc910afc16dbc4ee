//! The seams between the client logic and the outside world: HTTP sending and time.
//! Production uses reqwest and tokio time; unit tests plug in scripted fakes so retry and
//! polling logic runs under paused time with no real IO.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};

use crate::config::EntraConfig;
use crate::error::{EntraError, TransportErrorKind};

/// A boxed, sendable future; the seams are object-safe so clients can hold `Arc<dyn …>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One HTTP request, fully built (headers and body) before it reaches the transport.
pub struct HttpRequest {
    /// HTTP method; the retry classifier needs it to tell idempotent calls apart.
    pub method: Method,
    /// Absolute URL; never carries a secret (those go in headers or the body).
    pub url: Url,
    /// Headers; `Authorization` is marked sensitive so `HeaderMap`'s Debug hides it.
    pub headers: HeaderMap,
    /// Serialized body (JSON or form); may hold a client secret, so it is never printed.
    pub body: Option<Vec<u8>>,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// One HTTP answer, body read in full (Graph and STS answers are small JSON documents).
pub struct HttpResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Answer headers (`request-id`, `Retry-After`, ...).
    pub headers: HeaderMap,
    /// Answer body; may hold tokens or a new secret, so it is never printed.
    pub body: Vec<u8>,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A failure below HTTP.
#[derive(Debug, Clone)]
pub struct TransportFailure {
    /// Whether the server can have seen the request.
    pub kind: TransportErrorKind,
    /// Error text for operators.
    pub message: String,
}

impl TransportFailure {
    /// The failure as the error of `operation`.
    pub fn into_error(self, operation: &'static str) -> crate::EntraError {
        crate::EntraError::Transport {
            operation,
            kind: self.kind,
            message: self.message,
        }
    }
}

/// Sends HTTP requests. Implemented by [`ReqwestTransport`] and by test fakes.
pub trait Transport: Send + Sync {
    /// Sends one request and reads the whole answer.
    fn send(&self, req: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportFailure>>;
}

/// Time as the client sees it: waiting between retries and polls, and measuring budgets.
pub trait Clock: Send + Sync {
    /// Now, on a monotonic clock.
    fn now(&self) -> tokio::time::Instant;
    /// Waits for `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// tokio's clock; honours `tokio::time::pause`, so tests can use paused time with it too.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The production transport: reqwest with rustls, the configured trust roots and timeouts.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    /// The pooled client; cloning shares connections.
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// Builds the HTTP client from configuration.
    pub fn new(config: &EntraConfig) -> Result<Self, EntraError> {
        let mut builder = reqwest::Client::builder()
            .https_only(config.https_only)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(config.user_agent.clone())
            // A redirect would re-send our bearer token or form body somewhere we did not choose.
            .redirect(reqwest::redirect::Policy::none());
        for pem in &config.extra_root_pems {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| EntraError::Config(format!("extra root PEM: {e}")))?;
            if certs.is_empty() {
                return Err(EntraError::Config(
                    "extra root PEM holds no certificate".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| EntraError::Config(format!("HTTP client: {e}")))?;
        Ok(Self { client })
    }
}

impl Transport for ReqwestTransport {
    fn send(&self, req: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportFailure>> {
        Box::pin(async move {
            let mut rb = self
                .client
                .request(req.method, req.url)
                .headers(req.headers);
            if let Some(body) = req.body {
                rb = rb.body(body);
            }
            let resp = rb.send().await.map_err(failure)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(failure)?.to_vec();
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        })
    }
}

fn failure(e: reqwest::Error) -> TransportFailure {
    let kind = if is_tls_failure(&e) {
        TransportErrorKind::Tls
    } else if e.is_builder() {
        TransportErrorKind::Refused
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_timeout() {
        TransportErrorKind::Timeout
    } else {
        TransportErrorKind::Other
    };
    // `without_url` keeps query strings (filters with names) out of error text and logs.
    let e = e.without_url();
    let mut message = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    TransportFailure { kind, message }
}

/// True when rustls rejected the handshake; reqwest reports that as a connect error, but unlike
/// a refused connection it will fail the same way on every retry.
fn is_tls_failure(e: &reqwest::Error) -> bool {
    std::error::Error::source(e).is_some_and(chain_has_rustls)
}

fn chain_has_rustls(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    // `io::Error::source` skips the wrapped error itself, so look inside explicitly.
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && chain_has_rustls(inner)
    {
        return true;
    }
    e.source().is_some_and(chain_has_rustls)
}

/// The longest wait we accept from a server; anything longer is treated as a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// Reads `Retry-After` in either form RFC 9110 allows: delta-seconds (what Graph and the STS
/// send) or an HTTP-date (a date in the past means "now"). Anything else is absent, so the
/// caller falls back to its own backoff.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let wait = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(&with("7")), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(&with(" 0 ")), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(&with("1.5")),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn retry_after_garbage_is_absent() {
        assert_eq!(parse_retry_after(&with("-3")), None);
        assert_eq!(parse_retry_after(&with("soon")), None);
        assert_eq!(parse_retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn retry_after_http_date() {
        // A date in the past: retry now.
        assert_eq!(
            parse_retry_after(&with("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let wait = parse_retry_after(&with(&httpdate::fmt_http_date(later))).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }

    #[test]
    fn request_debug_hides_body_and_auth() {
        let mut headers = HeaderMap::new();
        let mut v = HeaderValue::from_static("Bearer very-secret-token");
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
        let req = HttpRequest {
            method: Method::POST,
            url: Url::parse("https://example.invalid/x").unwrap(),
            headers,
            body: Some(b"client_secret=hunter2".to_vec()),
        };
        let shown = format!("{req:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("very-secret-token"),
            "{shown}"
        );
    }
}
