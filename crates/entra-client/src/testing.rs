//! Test support: a scripted transport, so retry and polling logic runs under paused tokio time
//! without any socket.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::EntraClient;
use crate::config::EntraConfig;
use crate::error::TransportErrorKind;
use crate::transport::{
    BoxFuture, HttpRequest, HttpResponse, TokioClock, Transport, TransportFailure,
};

/// One scripted answer.
pub(crate) enum Scripted {
    /// An HTTP answer: status, headers, body.
    Resp(
        /// Status.
        u16,
        /// Headers.
        Vec<(&'static str, String)>,
        /// Body.
        String,
    ),
    /// No answer.
    Fail(
        /// What kind of failure.
        TransportErrorKind,
    ),
}

/// A request the fake saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// Method sent.
    pub method: Method,
    /// URL sent.
    pub url: String,
    /// Headers sent.
    pub headers: HeaderMap,
    /// Body sent, as text.
    pub body: String,
    /// When it was sent (paused clock), to check waits.
    pub at: tokio::time::Instant,
}

#[derive(Default)]
pub(crate) struct FakeTransport {
    /// Answers still to give, in order.
    script: Mutex<VecDeque<Scripted>>,
    /// Requests received, in order.
    pub seen: Mutex<Vec<Seen>>,
}

impl FakeTransport {
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Transport for FakeTransport {
    fn send(&self, req: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportFailure>> {
        self.seen.lock().unwrap().push(Seen {
            method: req.method.clone(),
            url: req.url.to_string(),
            headers: req.headers.clone(),
            body: String::from_utf8(req.body.clone().unwrap_or_default()).unwrap(),
            at: tokio::time::Instant::now(),
        });
        let next = self.script.lock().unwrap().pop_front();
        Box::pin(async move {
            match next.expect("the fake transport ran out of scripted answers") {
                Scripted::Resp(status, headers, body) => {
                    let mut h = HeaderMap::new();
                    for (k, v) in headers {
                        h.insert(
                            HeaderName::from_static(k),
                            HeaderValue::from_str(&v).unwrap(),
                        );
                    }
                    Ok(HttpResponse {
                        status: StatusCode::from_u16(status).unwrap(),
                        headers: h,
                        body: body.into_bytes(),
                    })
                }
                Scripted::Fail(kind) => Err(TransportFailure {
                    kind,
                    message: "scripted failure".into(),
                }),
            }
        })
    }
}

/// A client over a fake transport, with jitter off so waits are exact.
pub(crate) fn fake_client(script: Vec<Scripted>) -> (EntraClient, Arc<FakeTransport>) {
    let mut config = EntraConfig::with_bases("https://login.test", "https://graph.test");
    config.retry.jitter = false;
    let fake = Arc::new(FakeTransport {
        script: Mutex::new(script.into()),
        seen: Mutex::new(Vec::new()),
    });
    let client = EntraClient::with_seams(&config, fake.clone(), Arc::new(TokioClock)).unwrap();
    (client, fake)
}

/// A JSON answer with a Graph request id.
pub(crate) fn json(status: u16, body: &str) -> Scripted {
    Scripted::Resp(
        status,
        vec![
            ("request-id", format!("rid-{status}")),
            ("content-type", "application/json".into()),
        ],
        body.to_string(),
    )
}

/// A Graph OData error answer.
pub(crate) fn graph_err(status: u16, code: &str, message: &str) -> Scripted {
    json(
        status,
        &format!(
            r#"{{"error":{{"code":"{code}","message":"{message}","innerError":{{"date":"2026-11-26T08:00:00","request-id":"inner-rid"}}}}}}"#
        ),
    )
}

/// A 429 with `Retry-After`.
pub(crate) fn throttled(retry_after_s: u64) -> Scripted {
    Scripted::Resp(
        429,
        vec![
            ("retry-after", retry_after_s.to_string()),
            ("request-id", "rid-429".into()),
        ],
        r#"{"error":{"code":"TooManyRequests","message":"Too many requests"}}"#.into(),
    )
}

/// An STS error answer.
pub(crate) fn sts_err(status: u16, error: &str, code: u32) -> Scripted {
    json(
        status,
        &format!(
            r#"{{"error":"{error}","error_description":"AADSTS{code}: test.\r\nTrace ID: t\r\nCorrelation ID: c","error_codes":[{code}],"trace_id":"t","correlation_id":"c","timestamp":"2026-11-26 08:00:00Z"}}"#
        ),
    )
}

/// A successful token answer.
pub(crate) fn token_ok(access: &str) -> Scripted {
    json(
        200,
        &format!(
            r#"{{"token_type":"Bearer","scope":"User.Read","expires_in":3599,"access_token":"{access}","refresh_token":"r-{access}"}}"#
        ),
    )
}
