//! OAuth 2.0 device authorization grant (RFC 8628) as the Microsoft identity platform runs it.
//!
//! The flow is a state machine the caller drives: [`DeviceCodeFlow::poll_once`] makes one token
//! request and says what happened, so a gRPC stream can report every tick;
//! [`DeviceCodeFlow::poll_until_done`] is the loop around it, waiting through the [`crate::Clock`]
//! seam so tests run it under paused time.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::{EntraError, StsError, TransportErrorKind};
use crate::retry::OpContext;
use crate::sts::{DurationSecs, StsClient, TokenSet};
use crate::transport::HttpResponse;

/// RFC 8628 §3.5: how much `slow_down` adds to the polling interval, for good.
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// RFC 8628 §3.2: the interval when the server sends none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// What the user must be shown to sign in.
pub struct DeviceAuthorization {
    /// The short code the user types at `verification_uri`.
    pub user_code: String,
    /// Where the user signs in; shown as given, never hard-coded (it differs per cloud).
    pub verification_uri: String,
    /// How long the code stays valid from issue (Microsoft: 15 minutes).
    pub expires_in: Duration,
    /// Minimum wait between polls, as the server asked.
    pub interval: Duration,
    /// Ready-made instruction text from Microsoft (localised with `mkt`).
    pub message: String,
    /// The code we poll with; whoever holds it gets the user's tokens, so it is a secret.
    device_code: SecretString,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct DeviceCodeResponse {
    /// Moved into a `SecretString` at once.
    device_code: String,
    /// Code the user types.
    user_code: String,
    /// Where the user types it.
    verification_uri: String,
    /// Code lifetime.
    expires_in: DurationSecs,
    /// Poll interval; RFC 8628 default 5 s when absent.
    #[serde(default)]
    interval: Option<DurationSecs>,
    /// Instruction text.
    #[serde(default)]
    message: String,
}

impl DeviceAuthorization {
    pub(crate) fn from_body(resp: &HttpResponse) -> Result<Self, EntraError> {
        let r: DeviceCodeResponse =
            serde_json::from_slice(&resp.body).map_err(|e| EntraError::Decode {
                operation: "device_code_request",
                status: resp.status.as_u16(),
                message: e.to_string(),
                request_id: None,
            })?;
        Ok(Self {
            user_code: r.user_code,
            verification_uri: r.verification_uri,
            expires_in: r.expires_in.get(),
            interval: r.interval.map_or(DEFAULT_INTERVAL, DurationSecs::get),
            message: r.message,
            device_code: SecretString::from(r.device_code),
        })
    }

    /// Builds one by hand (tests, or a code issued elsewhere).
    pub fn new(
        device_code: SecretString,
        user_code: String,
        verification_uri: String,
        expires_in: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            user_code,
            verification_uri,
            expires_in,
            interval,
            message: String::new(),
            device_code,
        }
    }
}

/// Result of one poll.
#[derive(Debug)]
pub enum PollOutcome {
    /// The user has not finished; poll again after `next_poll_in`.
    Pending {
        /// The current interval, or the longer `Retry-After` a lost poll's answer named
        /// (Microsoft asks for no retry before it).
        next_poll_in: Duration,
    },
    /// The server asked us to slow down; the interval grew by 5 s for this and later polls.
    SlowDown {
        /// The new, longer interval.
        next_poll_in: Duration,
    },
    /// Signed in.
    Done(TokenSet),
}

/// Progress note handed to the observer of [`DeviceCodeFlow::poll_until_done`] after each poll
/// that did not finish the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollTick {
    /// Polls made so far.
    pub polls: u32,
    /// True when this poll got `slow_down`.
    pub slowed_down: bool,
    /// Wait before the next poll.
    pub next_poll_in: Duration,
    /// Time left before the code expires.
    pub expires_in: Duration,
}

/// A device-code sign-in in progress.
pub struct DeviceCodeFlow {
    /// Client used for the polls.
    sts: StsClient,
    /// Tenant the code was requested for; polls must use the same.
    tenant: String,
    /// Public client the code was requested for; polls must use the same.
    client_id: String,
    /// The issued code and its display fields.
    auth: DeviceAuthorization,
    /// Current interval; grows on `slow_down` and never shrinks.
    interval: Duration,
    /// When the code stops being valid, on the client's clock.
    expires_at: Instant,
    /// Polls made so far.
    polls: u32,
    /// Polls in a row whose answer was lost; a poll is never re-sent at once (it may have
    /// redeemed the code), the next scheduled poll asks again.
    lost_in_a_row: u32,
    /// The last poll's answer was lost: a refusal of the code as redeemed or expired now means
    /// that poll probably completed the sign-in ([`EntraError::SignInAnswerLost`]).
    answer_lost: bool,
    /// One client-request-id for the whole sign-in, so its polls correlate.
    ctx: OpContext,
}

impl fmt::Debug for DeviceCodeFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCodeFlow")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("interval", &self.interval)
            .field("polls", &self.polls)
            .finish_non_exhaustive()
    }
}

impl DeviceCodeFlow {
    /// Wraps an issued code; polling starts from now on the client's clock.
    pub fn new(
        sts: StsClient,
        tenant: String,
        client_id: String,
        auth: DeviceAuthorization,
    ) -> Self {
        let expires_at = sts.shared().clock.now() + auth.expires_in;
        let interval = auth.interval.max(Duration::from_secs(1));
        Self {
            sts,
            tenant,
            client_id,
            auth,
            interval,
            expires_at,
            polls: 0,
            lost_in_a_row: 0,
            answer_lost: false,
            ctx: OpContext::new(),
        }
    }

    /// Uses `ctx` for the polls: its client-request-id and retry observer (transient 429/5xx
    /// on the token endpoint are retried inside a poll).
    pub fn with_context(mut self, ctx: OpContext) -> Self {
        self.ctx = ctx;
        self
    }

    /// What to show the user.
    pub fn authorization(&self) -> &DeviceAuthorization {
        &self.auth
    }

    /// The current polling interval (server interval plus any slow-down steps).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Time left before the code expires.
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .saturating_duration_since(self.sts.shared().clock.now())
    }

    /// Makes one token request now. Terminal outcomes are errors:
    /// [`EntraError::DeviceCodeDeclined`], [`EntraError::DeviceCodeExpired`],
    /// [`EntraError::BadVerificationCode`], [`EntraError::SignInAnswerLost`], or any other STS
    /// error. A poll whose answer is lost is reported as pending (the next poll is its retry),
    /// unless the retry policy's `max_attempts` polls in a row were lost.
    pub async fn poll_once(&mut self) -> Result<PollOutcome, EntraError> {
        self.polls += 1;
        // A 429/503 without `Retry-After` is retried inside the poll, but not sooner than the
        // interval (RFC 8628 §3.4: the minimum time between polling requests).
        let ctx = OpContext {
            min_retry_wait: self.interval,
            ..self.ctx.clone()
        };
        let res = self
            .sts
            .poll_device_code(&self.tenant, &self.client_id, &self.auth.device_code, &ctx)
            .await;
        match res {
            Ok(tokens) => {
                tracing::info!(tenant = %self.tenant, polls = self.polls, "device code sign-in completed");
                Ok(PollOutcome::Done(tokens))
            }
            Err(e) if answer_lost(&e) => {
                self.lost_in_a_row += 1;
                self.answer_lost = true;
                if self.lost_in_a_row >= self.sts.shared().policy.max_attempts {
                    return Err(e);
                }
                tracing::warn!(
                    tenant = %self.tenant,
                    polls = self.polls,
                    error = %e,
                    "device code poll: the answer was lost; not sent again, the next poll asks"
                );
                // Not before a longer `Retry-After` the lost answer named.
                let named = match &e {
                    EntraError::Sts(s) => s.retry_after,
                    _ => None,
                };
                Ok(PollOutcome::Pending {
                    next_poll_in: named.map_or(self.interval, |wait| wait.max(self.interval)),
                })
            }
            Err(EntraError::Sts(e)) => {
                self.lost_in_a_row = 0;
                let after_lost = std::mem::take(&mut self.answer_lost);
                if after_lost && refuses_the_code(&e) {
                    tracing::warn!(
                        tenant = %self.tenant,
                        polls = self.polls,
                        error = %e.error,
                        aadsts = e.code.unwrap_or(0),
                        "device code refused after a lost poll: the sign-in must be started again"
                    );
                    return Err(EntraError::SignInAnswerLost(e));
                }
                self.on_sts_error(e)
            }
            Err(other) => Err(other),
        }
    }

    fn on_sts_error(&mut self, e: Box<StsError>) -> Result<PollOutcome, EntraError> {
        // Branch on `error` first (Microsoft's advice); AADSTS numbers cover STS versions that
        // report these states as a generic `invalid_grant`.
        match e.error.as_str() {
            "authorization_pending" => Ok(PollOutcome::Pending {
                next_poll_in: self.interval,
            }),
            "slow_down" => {
                self.interval += SLOW_DOWN_STEP;
                tracing::info!(
                    interval_s = self.interval.as_secs(),
                    "device code poll: slow_down"
                );
                Ok(PollOutcome::SlowDown {
                    next_poll_in: self.interval,
                })
            }
            "authorization_declined" | "access_denied" => Err(EntraError::DeviceCodeDeclined(e)),
            "expired_token" => Err(EntraError::DeviceCodeExpired(Some(e))),
            "bad_verification_code" => Err(EntraError::BadVerificationCode(e)),
            _ => match e.code {
                Some(70016) => Ok(PollOutcome::Pending {
                    next_poll_in: self.interval,
                }),
                Some(70019 | 70020) => Err(EntraError::DeviceCodeExpired(Some(e))),
                Some(70018) => Err(EntraError::BadVerificationCode(e)),
                _ => Err(EntraError::Sts(e)),
            },
        }
    }

    /// Polls until the user finishes, waiting the current interval (or the longer wait the last
    /// poll's outcome named) before each poll and never past expiry. `observer` sees every unfinished poll (for streaming "pending" ticks).
    pub async fn poll_until_done<F>(&mut self, mut observer: F) -> Result<TokenSet, EntraError>
    where
        F: FnMut(&PollTick),
    {
        let clock = self.sts.shared().clock.clone();
        let mut wait = self.interval;
        loop {
            let remaining = self.remaining();
            if remaining.is_zero() {
                tracing::info!(tenant = %self.tenant, polls = self.polls, "device code expired locally");
                return Err(EntraError::DeviceCodeExpired(None));
            }
            clock.sleep(wait.min(remaining)).await;
            let (slowed_down, next_poll_in) = match self.poll_once().await? {
                PollOutcome::Done(tokens) => return Ok(tokens),
                PollOutcome::Pending { next_poll_in } => (false, next_poll_in),
                PollOutcome::SlowDown { next_poll_in } => (true, next_poll_in),
            };
            wait = next_poll_in;
            observer(&PollTick {
                polls: self.polls,
                slowed_down,
                next_poll_in,
                expires_in: self.remaining(),
            });
        }
    }
}

/// A poll that reached the STS and whose outcome is unknown: a timeout or a connection lost
/// after sending, or a 500, 502 or 504 (a 503 and `temporarily_unavailable` say the request was
/// not acted on; those are retried within the poll).
fn answer_lost(e: &EntraError) -> bool {
    match e {
        EntraError::Transport { kind, .. } => {
            matches!(
                kind,
                TransportErrorKind::Timeout | TransportErrorKind::Other
            )
        }
        EntraError::Sts(s) => {
            matches!(s.http_status, 500 | 502 | 504) && s.error != "temporarily_unavailable"
        }
        _ => false,
    }
}

/// The STS's ways of refusing a device code that was redeemed (or has expired) meanwhile:
/// `invalid_grant` (Microsoft's answer to a redeemed code, e.g. AADSTS54005), `expired_token`
/// and `bad_verification_code` (70019, 70020, 70018).
fn refuses_the_code(e: &StsError) -> bool {
    matches!(
        e.error.as_str(),
        "invalid_grant" | "expired_token" | "bad_verification_code"
    ) || matches!(e.code, Some(54005 | 70018 | 70019 | 70020))
}

#[cfg(test)]
mod tests;
