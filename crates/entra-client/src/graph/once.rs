//! Writes that are safe to repeat. Graph's POSTs are not idempotent: a create answered 500,
//! 502 or 504, or one whose answer never came, may have landed all the same, and sending it again
//! then fails ("Permission being assigned already exists on the object", a 409 for a second
//! service principal) or, worse, makes a second object. So such a write first looks for what
//! it would have done (the grant, the owner, the key gone), and is sent again only when it is
//! not there. `addPassword` is not among them: a secret whose answer was lost cannot be
//! recovered, only removed, and that removal is the caller's to audit.

use std::future::Future;

use reqwest::Method;
use serde::Serialize;

use crate::error::EntraError;
use crate::retry::{backoff_delay, classify};
use crate::telemetry::announce;

use super::{GraphClient, OpContext, Reply};

/// The first item of a listed answer that `matches`, as an answer of its own (what a
/// [`GraphClient::write_once`] look-up returns).
pub(crate) fn first_match<T>(
    list: Reply<Vec<T>>,
    matches: impl Fn(&T) -> bool,
) -> Option<Reply<T>> {
    let meta = list.meta;
    list.value
        .into_iter()
        .find(|v| matches(v))
        .map(|value| Reply { value, meta })
}

impl GraphClient {
    /// [`GraphClient::write_once`] for a `POST {path}` whose success has no body (204).
    pub(crate) async fn post_once<B, F, FF>(
        &self,
        operation: &'static str,
        path: &str,
        body: &B,
        ctx: &OpContext,
        find: F,
    ) -> Result<Reply<()>, EntraError>
    where
        B: Serialize,
        F: Fn() -> FF,
        FF: Future<Output = Result<Option<Reply<()>>, EntraError>>,
    {
        let post = move || self.write_path(operation, Method::POST, path, body, ctx);
        self.write_once(operation, ctx, post, find).await
    }

    /// Runs `post`; when its answer is lost ([`EntraError::is_unanswered_write`]) asks `find`
    /// whether it landed, returns what it finds, and otherwise sends `post` again, within the
    /// retry policy's attempt budget. A 400 or 409 after such a lost answer is an earlier
    /// attempt that did land: `find` is asked once more. `find` must not create anything.
    pub(crate) async fn write_once<T, P, PF, F, FF>(
        &self,
        operation: &'static str,
        ctx: &OpContext,
        post: P,
        find: F,
    ) -> Result<Reply<T>, EntraError>
    where
        P: Fn() -> PF,
        PF: Future<Output = Result<Reply<T>, EntraError>>,
        F: Fn() -> FF,
        FF: Future<Output = Result<Option<Reply<T>>, EntraError>>,
    {
        let policy = &self.shared.policy;
        let start = self.shared.clock.now();
        let mut lost = 0u32;
        loop {
            let err = match post().await {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            if lost > 0 && err.graph().is_some_and(|g| matches!(g.status, 400 | 409)) {
                // The object (or assignment) exists now: an earlier, unanswered attempt made it.
                return match find().await {
                    Ok(Some(found)) => Ok(found),
                    _ => Err(err),
                };
            }
            if !err.is_unanswered_write() {
                return Err(err);
            }
            match find().await {
                Ok(Some(found)) => {
                    tracing::info!(operation, "the unanswered create had landed; using it");
                    return Ok(found);
                }
                Ok(None) => {}
                Err(e) => {
                    // Whether it landed is unknown: say so with the original failure.
                    tracing::warn!(operation, error = %e, "could not check whether an unanswered create landed");
                    return Err(err);
                }
            }
            lost += 1;
            if lost >= policy.max_attempts {
                return Err(EntraError::RetryBudgetExhausted {
                    operation,
                    attempts: lost,
                    elapsed: self.shared.clock.now().saturating_duration_since(start),
                    last: Box::new(err),
                });
            }
            // What the retry loop would say of the same failure on a call safe to repeat: a
            // server error or a transport failure (the only unanswered writes).
            let Some(reason) = classify(&err, false, true) else {
                return Err(err);
            };
            let wait = reason.retry_after().unwrap_or_else(|| {
                backoff_delay(
                    policy.initial_backoff,
                    policy.max_backoff,
                    lost - 1,
                    policy.jitter.then(fastrand::f64),
                )
            });
            announce(operation, ctx, lost, reason, wait, &err);
            self.shared.clock.sleep(wait).await;
        }
    }
}
