//! Retries: which failures are worth another try, how long to wait, and telling the caller.
//!
//! Two kinds of retry share one loop. Transient failures (429, 5xx, connect errors) are retried
//! for every call. Replication-lag failures (a 404 or a "no backing application" error right
//! after a create) are retried only when the caller marked the call as dependent on a create,
//! because otherwise a 404 is a true answer.

mod reason;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::RetryPolicy;
use crate::error::{EntraError, TransportErrorKind};
use crate::transport::Clock;

pub use reason::{RetryKind, RetryReason};

/// One retry, reported to the caller before the wait starts so progress can be streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEvent {
    /// The client operation being retried (e.g. `create_service_principal`).
    pub operation: &'static str,
    /// Number of the attempt that just failed (1 = the first request).
    pub attempt: u32,
    /// Why it is retried.
    pub reason: RetryReason,
    /// How long the client waits before the next attempt.
    pub wait: Duration,
    /// Graph's `request-id` of the failed attempt, for the audit log.
    pub request_id: Option<String>,
    /// Our `client-request-id` for the logical operation.
    pub client_request_id: String,
}

/// Receives retry events. Implemented for tokio mpsc senders and, via [`observer_fn`], closures.
pub trait RetryObserver: Send + Sync {
    /// Called once per retry, before the wait.
    fn on_retry(&self, event: &RetryEvent);
}

impl RetryObserver for mpsc::UnboundedSender<RetryEvent> {
    fn on_retry(&self, event: &RetryEvent) {
        // A closed receiver means nobody watches progress any more; the call itself goes on.
        let _ = self.send(event.clone());
    }
}

impl RetryObserver for mpsc::Sender<RetryEvent> {
    fn on_retry(&self, event: &RetryEvent) {
        // Never block a Graph call on a slow progress consumer; dropping a progress note is fine.
        let _ = self.try_send(event.clone());
    }
}

/// Adapts a closure into a [`RetryObserver`].
pub struct FnObserver<F>(
    /// The closure called per retry.
    F,
);

impl<F: Fn(&RetryEvent) + Send + Sync> RetryObserver for FnObserver<F> {
    fn on_retry(&self, event: &RetryEvent) {
        (self.0)(event)
    }
}

/// Wraps a closure as an observer: `ctx.with_observer(observer_fn(|e| println!("{e:?}")))`.
pub fn observer_fn<F: Fn(&RetryEvent) + Send + Sync + 'static>(f: F) -> Arc<dyn RetryObserver> {
    Arc::new(FnObserver(f))
}

/// An observer that keeps every retry event, in order, for a caller that reports them after
/// the call (a command's summary, a test's assertions). Clones share one list.
#[derive(Clone, Default)]
pub struct RetryLog(
    /// The events so far; a lock held only to push or copy.
    Arc<std::sync::Mutex<Vec<RetryEvent>>>,
);

impl RetryLog {
    /// A log and a fresh [`OpContext`] reporting to it.
    pub fn with_context() -> (Self, OpContext) {
        let log = Self::default();
        let ctx = OpContext::new().with_observer(Arc::new(log.clone()));
        (log, ctx)
    }

    /// The events so far.
    pub fn events(&self) -> Vec<RetryEvent> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl RetryObserver for RetryLog {
    fn on_retry(&self, event: &RetryEvent) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
    }
}

/// Per-call context: one logical operation (with all its retries) shares one client-request-id.
#[derive(Clone)]
pub struct OpContext {
    /// Sent as `client-request-id` on every attempt, so Microsoft support and our audit log can
    /// tie the retries of one operation together.
    pub client_request_id: Uuid,
    /// The call depends on an object created moments ago: replication-lag errors are retried.
    pub after_create: bool,
    /// Where retry events go; `None` to only log them.
    pub observer: Option<Arc<dyn RetryObserver>>,
    /// The shortest wait before a transient failure is retried without a `Retry-After`: a
    /// device-code poll's interval, which RFC 8628 says to keep between requests even when
    /// one failed. Zero for other calls.
    pub min_retry_wait: Duration,
}

impl fmt::Debug for OpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpContext")
            .field("client_request_id", &self.client_request_id)
            .field("after_create", &self.after_create)
            .field("observer", &self.observer.is_some())
            .field("min_retry_wait", &self.min_retry_wait)
            .finish()
    }
}

impl Default for OpContext {
    fn default() -> Self {
        Self::new()
    }
}

impl OpContext {
    /// A fresh context with a new random client-request-id.
    pub fn new() -> Self {
        Self {
            client_request_id: Uuid::new_v4(),
            after_create: false,
            observer: None,
            min_retry_wait: Duration::ZERO,
        }
    }

    /// Marks the call as dependent on a just-made create, enabling replication-lag retries.
    pub fn after_create(mut self) -> Self {
        self.after_create = true;
        self
    }

    /// Sets where retry events are reported.
    pub fn with_observer(mut self, observer: Arc<dyn RetryObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Uses a caller-chosen client-request-id (e.g. one recorded in the audit log beforehand).
    pub fn with_client_request_id(mut self, id: Uuid) -> Self {
        self.client_request_id = id;
        self
    }
}

/// True for Graph's misleading 403 about a service principal's "backing application … local
/// tenant", which is replication lag and not a permission problem.
pub(crate) fn is_backing_application_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("backing application") && m.contains("local tenant")
}

/// Decides whether `err` is worth retrying. `after_create` enables replication-lag retries;
/// `idempotent` allows retrying a timeout or a 500/502/504, where the server may already have
/// acted.
pub fn classify(err: &EntraError, after_create: bool, idempotent: bool) -> Option<RetryReason> {
    match err {
        EntraError::Graph(g) => {
            // Conditional Access wants a new sign-in: the same request fails the same way.
            if g.claims_challenge.is_some() {
                return None;
            }
            match g.status {
                429 => {
                    return Some(RetryReason::Throttled {
                        retry_after: g.retry_after,
                    });
                }
                // Only 503 says the request was not acted on ("you may repeat the request after
                // a delay"); a create answered 500/502/504 may have landed, so it is not sent
                // again blindly (`GraphClient::write_once` looks first).
                500 | 502 | 504 if !idempotent => return None,
                500 | 502 | 503 | 504 => {
                    return Some(RetryReason::ServerError {
                        status: g.status,
                        retry_after: g.retry_after,
                    });
                }
                _ => {}
            }
            if !after_create {
                return None;
            }
            let msg = g.message.to_ascii_lowercase();
            let lag = match g.status {
                404 => true,
                400 => {
                    g.detail_codes
                        .iter()
                        .any(|c| c == "NoBackingApplicationObject")
                        || msg.contains("does not reference a valid application object")
                        || msg.contains("not a valid reference update")
                        || msg.contains("does not exist or one of its queried reference-property")
                }
                403 => is_backing_application_message(&g.message),
                _ => false,
            };
            lag.then(|| RetryReason::ReplicationLag {
                status: g.status,
                code: g.code.clone(),
            })
        }
        EntraError::Sts(e) => {
            // As for Graph: a 500/502/504 may follow a request that was acted on.
            let lost = matches!(e.http_status, 500 | 502 | 504);
            if e.error == "temporarily_unavailable" || e.http_status == 503 || (lost && idempotent)
            {
                return Some(RetryReason::ServerError {
                    status: e.http_status,
                    retry_after: e.retry_after,
                });
            }
            if e.http_status == 429 {
                return Some(RetryReason::Throttled {
                    retry_after: e.retry_after,
                });
            }
            match e.code {
                // 7000229: the app's service principal is not yet visible to the STS.
                Some(code @ (700_016 | 7_000_215 | 7_000_229)) if after_create => {
                    Some(RetryReason::CredentialPropagation { aadsts: code })
                }
                _ => None,
            }
        }
        EntraError::Transport { kind, .. } => match kind {
            TransportErrorKind::Connect => Some(RetryReason::Transport { kind: *kind }),
            TransportErrorKind::Timeout | TransportErrorKind::Other if idempotent => {
                Some(RetryReason::Transport { kind: *kind })
            }
            _ => None,
        },
        _ => None,
    }
}

/// Capped exponential backoff: step `n` (0-based) waits `initial * 2^n`, at most `cap`; with
/// `jitter` a uniform draw `r` in `[0, 1)` spreads it over its upper half ("equal jitter":
/// `step / 2 + step / 2 * r`). Never less than half the step: Microsoft's throttling guidance
/// says "Avoid immediate retries", and a full-jitter draw near zero would be one.
pub fn backoff_delay(initial: Duration, cap: Duration, n: u32, jitter: Option<f64>) -> Duration {
    let factor = 2u32.saturating_pow(n.min(31));
    let exp = initial.saturating_mul(factor).min(cap);
    match jitter {
        Some(r) => {
            let half = exp / 2;
            half + half.mul_f64(r.clamp(0.0, 1.0))
        }
        None => exp,
    }
}

/// The wait before replication-lag retry `n` (0-based) of one call that has run `elapsed`,
/// or `None` when that retry is past the replication budget (attempts or time). Shared by the
/// retry loop and by `GraphClient::write_once`'s wait for a lagging list.
pub(crate) fn replication_wait(p: &RetryPolicy, n: u32, elapsed: Duration) -> Option<Duration> {
    let wait = backoff_delay(
        p.replication_initial_backoff,
        p.replication_max_backoff,
        n,
        p.jitter.then(fastrand::f64),
    );
    let over = n + 1 > p.replication_max_attempts || elapsed + wait > p.replication_max_elapsed;
    (!over).then_some(wait)
}

/// What the retry loop needs besides the attempt itself.
pub(crate) struct Retrier<'a> {
    /// Budgets and backoff shape.
    pub policy: &'a RetryPolicy,
    /// Waits and measures elapsed time; tokio's clock in production.
    pub clock: &'a dyn Clock,
}

impl Retrier<'_> {
    /// Runs `attempt` until it succeeds, fails for good, or a budget runs out. Returns the value
    /// and the number of requests sent.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        ctx: &OpContext,
        idempotent: bool,
        mut attempt: F,
    ) -> Result<(T, u32), EntraError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, EntraError>>,
    {
        let p = self.policy;
        let start = self.clock.now();
        let mut sent = 0u32;
        let mut transient = 0u32;
        let mut lag = 0u32;
        loop {
            sent += 1;
            let err = match attempt().await {
                Ok(v) => return Ok((v, sent)),
                Err(e) => e,
            };
            let Some(reason) = classify(&err, ctx.after_create, idempotent) else {
                return Err(err);
            };
            let elapsed = self.clock.now().saturating_duration_since(start);
            let (wait, exhausted) = if reason.is_replication() {
                let wait = replication_wait(p, lag, elapsed);
                lag += 1;
                (wait.unwrap_or_default(), wait.is_none())
            } else {
                let asked = reason.retry_after();
                // Never sooner than the operation allows (a device-code poll's interval), even
                // when the server names a shorter wait.
                let wait = asked
                    .unwrap_or_else(|| {
                        backoff_delay(
                            p.initial_backoff,
                            p.max_backoff,
                            transient,
                            p.jitter.then(fastrand::f64),
                        )
                    })
                    .max(ctx.min_retry_wait);
                transient += 1;
                let budget = match asked {
                    Some(_) => p.max_elapsed.max(p.max_server_wait),
                    None => p.max_elapsed,
                };
                // A 429's named wait is waited out while the call stays within its budget,
                // however many times it asks ("If the request fails again with a 429 error
                // code, you are still being throttled. Continue to use the recommended
                // Retry-After delay and retry the request until it succeeds", Graph's
                // throttling guidance). Our own backoff, other transient answers (a 503 says
                // the service is down, not that we are too fast) and a 429 that names no pause
                // (`Retry-After: 0`) count attempts.
                let throttled = matches!(reason, RetryReason::Throttled { .. });
                let named = throttled && asked.is_some_and(|w| !w.is_zero());
                let counted = !named && transient >= p.max_attempts;
                let over = counted || elapsed + wait > budget;
                (wait, over)
            };
            if exhausted {
                tracing::warn!(operation, attempts = sent, ?elapsed, %reason, "retry budget exhausted");
                return Err(if matches!(reason, RetryReason::Throttled { .. }) {
                    EntraError::Throttled {
                        operation,
                        attempts: sent,
                        last: Box::new(err),
                    }
                } else {
                    EntraError::RetryBudgetExhausted {
                        operation,
                        attempts: sent,
                        elapsed,
                        last: Box::new(err),
                    }
                });
            }
            crate::telemetry::announce(operation, ctx, sent, reason, wait, &err);
            self.clock.sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorHeaders, StsError, parse_graph_error};

    fn graph(status: u16, code: &str, message: &str, details: &[&str]) -> EntraError {
        let details: Vec<String> = details
            .iter()
            .map(|d| format!(r#"{{"code":"{d}"}}"#))
            .collect();
        let body = format!(
            r#"{{"error":{{"code":"{code}","message":"{message}","details":[{}]}}}}"#,
            details.join(",")
        );
        EntraError::Graph(Box::new(parse_graph_error(
            status,
            body.as_bytes(),
            ErrorHeaders::default(),
        )))
    }

    fn sts(status: u16, error: &str, code: u32) -> EntraError {
        EntraError::Sts(Box::new(StsError {
            http_status: status,
            error: error.into(),
            code: Some(code),
            error_codes: vec![code],
            description: String::new(),
            trace_id: None,
            correlation_id: None,
            timestamp: None,
            retry_after: None,
        }))
    }

    fn is_lag(r: Option<RetryReason>) -> bool {
        matches!(r, Some(RetryReason::ReplicationLag { .. }))
    }

    #[test]
    fn replication_lag_errors_are_retried_only_after_a_create() {
        let cases = [
            graph(
                404,
                "Request_ResourceNotFound",
                "Resource 'x' does not exist or one of its queried reference-property objects are not present.",
                &[],
            ),
            graph(
                400,
                "Request_BadRequest",
                "The appId 'a' of the service principal does not reference a valid application object.",
                &["NoBackingApplicationObject"],
            ),
            graph(
                400,
                "Request_BadRequest",
                "something",
                &["NoBackingApplicationObject"],
            ),
            graph(
                400,
                "Request_BadRequest",
                "Not a valid reference update.",
                &[],
            ),
            graph(
                403,
                "Authorization_RequestDenied",
                "When using this permission, the backing application of the service principal being created must in the local tenant",
                &[],
            ),
        ];
        for e in &cases {
            assert!(is_lag(classify(e, true, false)), "after create: {e}");
            assert_eq!(classify(e, false, true), None, "standalone call: {e}");
        }
    }

    #[test]
    fn azure_rbac_codes_are_not_graph_replication_lag() {
        // PrincipalNotFound is Azure RBAC's (management API) code, which Graph never sends.
        let e = graph(400, "PrincipalNotFound", "Principal x does not exist", &[]);
        assert_eq!(classify(&e, true, true), None);
    }

    #[test]
    fn final_errors_are_not_retried() {
        let cases = [
            graph(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
                &[],
            ),
            graph(
                400,
                "Request_BadRequest",
                "A conflicting object with one or more of the specified property values is present in the directory.",
                &[],
            ),
            graph(409, "Conflict", "exists", &[]),
            graph(401, "InvalidAuthenticationToken", "expired", &[]),
            sts(400, "invalid_grant", 700_082),
            sts(400, "invalid_scope", 70011),
        ];
        for e in &cases {
            assert_eq!(classify(e, true, true), None, "{e}");
        }
        // A wrong secret on a long-standing app is final.
        assert_eq!(
            classify(&sts(401, "invalid_client", 7_000_215), false, true),
            None
        );
    }

    #[test]
    fn throttling_and_503_are_always_retried_other_server_errors_only_when_idempotent() {
        let mut e = graph(429, "TooManyRequests", "slow", &[]);
        if let EntraError::Graph(g) = &mut e {
            g.retry_after = Some(Duration::from_secs(7));
        }
        assert_eq!(
            classify(&e, false, false),
            Some(RetryReason::Throttled {
                retry_after: Some(Duration::from_secs(7))
            })
        );
        for status in [500, 502, 503, 504] {
            let e = graph(status, "x", "y", &[]);
            assert!(
                matches!(classify(&e, false, true), Some(RetryReason::ServerError { status: s, .. }) if s == status)
            );
            // A create answered 500/502/504 may have landed: not sent again blindly.
            let again = classify(&e, false, false);
            assert_eq!(again.is_some(), status == 503, "{status}: {again:?}");
            assert_eq!(e.is_unanswered_write(), status != 503);
        }
        assert!(classify(&sts(400, "temporarily_unavailable", 0), false, true).is_some());
        // A device-code poll (not repeatable) answered 500/504 may have redeemed its code.
        assert_eq!(classify(&sts(504, "http_504", 0), false, false), None);
        assert!(classify(&sts(503, "http_503", 0), false, false).is_some());
    }

    #[test]
    fn new_credential_errors_are_retried_only_after_a_create() {
        let e = sts(401, "invalid_client", 7_000_215);
        assert_eq!(
            classify(&e, true, true),
            Some(RetryReason::CredentialPropagation { aadsts: 7_000_215 })
        );
        assert_eq!(classify(&e, false, true), None);
        let e = sts(400, "unauthorized_client", 700_016);
        assert_eq!(
            classify(&e, true, true),
            Some(RetryReason::CredentialPropagation { aadsts: 700_016 })
        );
    }

    #[test]
    fn timeouts_are_retried_only_for_idempotent_calls() {
        let t = EntraError::Transport {
            operation: "x",
            kind: TransportErrorKind::Timeout,
            message: String::new(),
        };
        assert!(classify(&t, false, true).is_some());
        assert_eq!(classify(&t, false, false), None);
        let c = EntraError::Transport {
            operation: "x",
            kind: TransportErrorKind::Connect,
            message: String::new(),
        };
        assert!(classify(&c, false, false).is_some());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        let steps: Vec<Duration> = (0..7)
            .map(|n| backoff_delay(s(1), s(30), n, None))
            .collect();
        assert_eq!(steps, vec![s(1), s(2), s(4), s(8), s(16), s(30), s(30)]);
        assert_eq!(
            backoff_delay(s(1), s(30), 200, None),
            s(30),
            "no overflow on huge n"
        );
    }

    #[test]
    fn jittered_waits_are_never_less_than_half_the_step() {
        // Microsoft's throttling guidance: "Avoid immediate retries". Equal jitter: half the
        // step is fixed, the other half random, so no draw retries at once.
        let s = Duration::from_secs;
        assert_eq!(backoff_delay(s(1), s(30), 3, Some(0.0)), s(4));
        assert_eq!(backoff_delay(s(1), s(30), 3, Some(0.5)), s(6));
        assert_eq!(backoff_delay(s(1), s(30), 3, Some(1.0)), s(8));
        assert_eq!(
            backoff_delay(s(1), s(30), 9, Some(0.0)),
            s(15),
            "half the cap"
        );
        for _ in 0..100 {
            let d = backoff_delay(s(1), s(30), 4, Some(fastrand::f64()));
            assert!(d >= s(8) && d <= s(16), "{d:?}");
        }
    }
}
