//! Writes that are safe to repeat. Graph's POSTs are not idempotent: a create answered 500,
//! 502 or 504, or one whose answer never came, may have landed all the same, and sending it again
//! then fails ("Permission being assigned already exists on the object", a 409 for a second
//! service principal) or, worse, makes a second object. So such a write first looks for what
//! it would have done (the grant, the owner, the key gone), and is sent again only when it is
//! not there. The look reads a list, and lists lag behind writes (Entra is eventually
//! consistent), so it may miss a write that landed: when the write sent again is then refused
//! as existing, that refusal is proof, and the look is repeated with the replication-lag
//! backoff until the list shows it. `addPassword` is not among them: a secret whose answer was
//! lost cannot be recovered, only removed, and that removal is the caller's to audit.

use std::future::Future;

use reqwest::Method;
use serde::Serialize;

use crate::error::EntraError;
use crate::retry::{RetryReason, backoff_delay, classify, replication_wait};
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
    /// retry policy's attempt budget. A 400 or 409 after such a lost answer may be an earlier
    /// attempt that did land: `find` is asked once more; when the refusal says the object
    /// already exists ([`EntraError::is_already_exists`]) and `find` does not see it yet,
    /// `find` is asked again with the replication-lag backoff and budget until it does
    /// ([`GraphClient::await_landed`]). `find` must not create anything.
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
                // The object (or assignment) may exist now: an earlier, unanswered attempt made it.
                return match find().await {
                    Ok(Some(found)) => Ok(found),
                    Ok(None) if err.is_already_exists() => {
                        self.await_landed(operation, ctx, &find, err, lost + 1)
                            .await
                    }
                    Ok(None) => Err(err),
                    Err(e) => {
                        tracing::warn!(operation, error = %e, "could not look for the create refused after a lost answer");
                        Err(err)
                    }
                };
            }
            if !err.is_unanswered_write() {
                return Err(err);
            }
            lost += 1;
            // No look at once after a server error (Microsoft: no immediate retries): the wait
            // the retry loop would take comes first, and a create that lands late is then
            // likelier seen by the look.
            if !self
                .wait_after_lost_answer(operation, ctx, lost, &err)
                .await
            {
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
            if lost >= policy.max_attempts {
                return Err(EntraError::RetryBudgetExhausted {
                    operation,
                    attempts: lost,
                    elapsed: self.shared.clock.now().saturating_duration_since(start),
                    last: Box::new(err),
                });
            }
        }
    }

    /// Waits after the `n`th (from 1) lost answer `err` to the write `operation` (500, 502 or
    /// 504, or no answer), before anything more is sent about it (a look for it, or the write
    /// again): the `Retry-After` the server named, else the retry policy's backoff step `n`, as
    /// the retry loop waits before sending a call safe to repeat again, and never longer than
    /// the policy's `max_server_wait`; reported to `ctx`'s observer as a retry as it begins.
    /// `false`, at once, when `err` is not such a failure (nothing more should be sent). Also for
    /// callers that recover such a write themselves (the client secret, whose lost value cannot
    /// be read back: its orphan is removed and the secret added again).
    pub async fn wait_after_lost_answer(
        &self,
        operation: &'static str,
        ctx: &OpContext,
        n: u32,
        err: &EntraError,
    ) -> bool {
        // What the retry loop would say of the same failure on a call safe to repeat: a server
        // error or a transport failure (the only unanswered writes).
        let Some(reason) = classify(err, false, true).filter(|_| err.is_unanswered_write()) else {
            return false;
        };
        let policy = &self.shared.policy;
        let wait = reason.retry_after().unwrap_or_else(|| {
            backoff_delay(
                policy.initial_backoff,
                policy.max_backoff,
                n.saturating_sub(1),
                policy.jitter.then(fastrand::f64),
            )
        });
        // A `Retry-After` of a day (the header allows it) must not hold a run that long.
        let wait = wait.min(policy.max_server_wait);
        announce(operation, ctx, n, reason, wait, err);
        self.shared.clock.sleep(wait).await;
        true
    }

    /// After `refusal` (the re-sent create refused as existing, so an earlier attempt made
    /// it) and a first look that did not see it: asks `find` again with the replication-lag
    /// backoff (each wait reported as [`RetryReason::ReplicationLag`]) until the list shows
    /// it, within the replication-lag budget; past that, [`EntraError::RetryBudgetExhausted`]
    /// with the refusal as its last error (`attempts`: the `posts` sent and the looks). A
    /// failing look ends it with the refusal.
    async fn await_landed<T, F, FF>(
        &self,
        operation: &'static str,
        ctx: &OpContext,
        find: &F,
        refusal: EntraError,
        posts: u32,
    ) -> Result<Reply<T>, EntraError>
    where
        F: Fn() -> FF,
        FF: Future<Output = Result<Option<Reply<T>>, EntraError>>,
    {
        let policy = &self.shared.policy;
        let start = self.shared.clock.now();
        let (status, code) = refusal
            .graph()
            .map(|g| (g.status, g.code.clone()))
            .unwrap_or_default();
        let mut looks = 1u32;
        loop {
            let elapsed = self.shared.clock.now().saturating_duration_since(start);
            let Some(wait) = replication_wait(policy, looks - 1, elapsed) else {
                tracing::warn!(
                    operation,
                    looks,
                    ?elapsed,
                    "a create refused as existing never showed in the list"
                );
                return Err(EntraError::RetryBudgetExhausted {
                    operation,
                    attempts: posts + looks,
                    elapsed,
                    last: Box::new(refusal),
                });
            };
            let reason = RetryReason::ReplicationLag {
                status,
                code: code.clone(),
            };
            announce(operation, ctx, looks, reason, wait, &refusal);
            self.shared.clock.sleep(wait).await;
            looks += 1;
            match find().await {
                Ok(Some(found)) => {
                    tracing::info!(
                        operation,
                        looks,
                        "the create refused as existing had landed; using it"
                    );
                    return Ok(found);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(operation, error = %e, "could not look for the create refused as existing");
                    return Err(refusal);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
