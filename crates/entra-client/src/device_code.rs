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
        /// The current interval.
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
        let res = self
            .sts
            .poll_device_code(
                &self.tenant,
                &self.client_id,
                &self.auth.device_code,
                &self.ctx,
            )
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
                Ok(PollOutcome::Pending {
                    next_poll_in: self.interval,
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

    /// Polls until the user finishes, waiting the current interval before each poll and never
    /// past expiry. `observer` sees every unfinished poll (for streaming "pending" ticks).
    pub async fn poll_until_done<F>(&mut self, mut observer: F) -> Result<TokenSet, EntraError>
    where
        F: FnMut(&PollTick),
    {
        let clock = self.sts.shared().clock.clone();
        loop {
            let remaining = self.remaining();
            if remaining.is_zero() {
                tracing::info!(tenant = %self.tenant, polls = self.polls, "device code expired locally");
                return Err(EntraError::DeviceCodeExpired(None));
            }
            clock.sleep(self.interval.min(remaining)).await;
            let (slowed_down, next_poll_in) = match self.poll_once().await? {
                PollOutcome::Done(tokens) => return Ok(tokens),
                PollOutcome::Pending { next_poll_in } => (false, next_poll_in),
                PollOutcome::SlowDown { next_poll_in } => (true, next_poll_in),
            };
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
mod tests {
    use super::*;
    use crate::testing::{fake_client, json, sts_err, token_ok};

    const CODE: &str = r#"{"device_code":"dc-secret","user_code":"ABCD-EFGH","verification_uri":"https://microsoft.com/devicelogin","expires_in":900,"interval":5,"message":"To sign in, use a web browser"}"#;

    async fn start(
        script: Vec<crate::testing::Scripted>,
    ) -> (
        DeviceCodeFlow,
        std::sync::Arc<crate::testing::FakeTransport>,
    ) {
        let mut all = vec![json(200, CODE)];
        all.extend(script);
        let (client, fake) = fake_client(all);
        let flow = client
            .sts()
            .start_device_code(
                "organizations",
                "client-1",
                &["User.Read", "offline_access"],
                &OpContext::new(),
            )
            .await
            .unwrap();
        (flow, fake)
    }

    #[tokio::test(start_paused = true)]
    async fn request_shape_and_display_fields() {
        let (flow, fake) = start(vec![]).await;
        let a = flow.authorization();
        assert_eq!(a.user_code, "ABCD-EFGH");
        assert_eq!(a.verification_uri, "https://microsoft.com/devicelogin");
        assert_eq!(a.expires_in, Duration::from_secs(900));
        assert_eq!(flow.interval(), Duration::from_secs(5));
        assert!(!format!("{flow:?}").contains("dc-secret"));
        let s = &fake.seen()[0];
        assert_eq!(
            s.url,
            "https://login.test/organizations/oauth2/v2.0/devicecode"
        );
        assert_eq!(s.body, "client_id=client-1&scope=User.Read+offline_access");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_down_adds_five_seconds_to_this_and_later_polls() {
        let pending = || sts_err(400, "authorization_pending", 70016);
        let (mut flow, fake) = start(vec![
            pending(),
            sts_err(400, "slow_down", 70016),
            pending(),
            sts_err(400, "slow_down", 70016),
            pending(),
            token_ok("user-access"),
        ])
        .await;
        let mut ticks = Vec::new();
        let tokens = flow
            .poll_until_done(|t| ticks.push(t.clone()))
            .await
            .unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&tokens.access_token),
            "user-access"
        );
        let intervals: Vec<u64> = ticks.iter().map(|t| t.next_poll_in.as_secs()).collect();
        assert_eq!(intervals, vec![5, 10, 10, 15, 15]);
        let slowed: Vec<bool> = ticks.iter().map(|t| t.slowed_down).collect();
        assert_eq!(slowed, vec![false, true, false, true, false]);
        // Gaps between token polls as sent: 5, 5, 10, 10, 15, 15 s (the first is from the code request).
        let seen = fake.seen();
        let gaps: Vec<u64> = seen
            .windows(2)
            .map(|w| (w[1].at - w[0].at).as_secs())
            .collect();
        assert_eq!(gaps, vec![5, 5, 10, 10, 15, 15]);
        assert!(
            seen[1]
                .body
                .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code")
        );
        assert!(seen[1].body.contains("device_code=dc-secret"));
        // Every poll declares the `cp1` client capability (`sts::CLIENT_CAPABILITIES`).
        assert!(
            seen[1..].iter().all(|r| r.body.ends_with(
                "&claims=%7B%22access_token%22%3A%7B%22xms_cc%22%3A%7B%22values%22%3A%5B%22cp1%22%5D%7D%7D%7D"
            )),
            "{:?}",
            seen[1].body
        );
    }

    #[tokio::test(start_paused = true)]
    async fn poll_once_reports_each_state() {
        let (mut flow, _) = start(vec![
            sts_err(400, "authorization_pending", 70016),
            sts_err(400, "slow_down", 70016),
        ])
        .await;
        assert!(
            matches!(flow.poll_once().await.unwrap(), PollOutcome::Pending { next_poll_in } if next_poll_in == Duration::from_secs(5))
        );
        assert!(
            matches!(flow.poll_once().await.unwrap(), PollOutcome::SlowDown { next_poll_in } if next_poll_in == Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn terminal_outcomes_are_typed() {
        let (mut f, _) = start(vec![sts_err(400, "authorization_declined", 0)]).await;
        let e = f.poll_once().await.unwrap_err();
        assert!(matches!(e, EntraError::DeviceCodeDeclined(_)) && e.is_authorization_denied());

        let (mut f, _) = start(vec![sts_err(400, "access_denied", 0)]).await;
        assert!(matches!(
            f.poll_once().await.unwrap_err(),
            EntraError::DeviceCodeDeclined(_)
        ));

        let (mut f, _) = start(vec![sts_err(400, "expired_token", 70019)]).await;
        let e = f.poll_once().await.unwrap_err();
        assert!(matches!(e, EntraError::DeviceCodeExpired(Some(_))));
        assert_eq!(e.aadsts(), Some(70019));

        let (mut f, _) = start(vec![sts_err(400, "bad_verification_code", 70018)]).await;
        assert!(matches!(
            f.poll_once().await.unwrap_err(),
            EntraError::BadVerificationCode(_)
        ));

        let (mut f, _) = start(vec![sts_err(400, "invalid_grant", 50126)]).await;
        let e = f.poll_once().await.unwrap_err();
        assert!(matches!(e, EntraError::Sts(_)));
        assert_eq!(e.aadsts(), Some(50126));
    }

    #[tokio::test(start_paused = true)]
    async fn local_expiry_stops_polling() {
        let short = r#"{"device_code":"d","user_code":"U","verification_uri":"https://x.test","expires_in":12,"interval":5}"#;
        let pending = || sts_err(400, "authorization_pending", 70016);
        let (client, fake) = fake_client(vec![json(200, short), pending(), pending(), pending()]);
        let mut flow = client
            .sts()
            .start_device_code("organizations", "c", &["User.Read"], &OpContext::new())
            .await
            .unwrap();
        let err = flow.poll_until_done(|_| {}).await.unwrap_err();
        assert!(
            matches!(err, EntraError::DeviceCodeExpired(None)),
            "{err:?}"
        );
        // Polls at 5 s, 10 s and 12 s (capped by expiry), then the local clock says expired.
        assert_eq!(fake.seen().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_poll_is_not_resent_and_a_redeemed_code_then_asks_for_a_new_sign_in() {
        use crate::testing::Scripted;
        let redeemed = || sts_err(400, "invalid_grant", 54005);
        for lost in [
            Scripted::Fail(TransportErrorKind::Timeout),
            Scripted::Fail(TransportErrorKind::Other),
            sts_err(504, "http_504", 0),
        ] {
            let (mut flow, fake) = start(vec![lost, redeemed()]).await;
            let mut ticks = Vec::new();
            let err = flow
                .poll_until_done(|t| ticks.push(t.clone()))
                .await
                .unwrap_err();
            assert!(matches!(err, EntraError::SignInAnswerLost(_)), "{err:?}");
            assert!(err.to_string().contains("must be started again"), "{err}");
            assert_eq!(err.aadsts(), Some(54005));
            // The lost poll was not sent again at once: the next poll came a full interval later.
            let seen = fake.seen();
            assert_eq!(seen.len(), 3);
            assert_eq!(seen[2].at - seen[1].at, Duration::from_secs(5));
            assert_eq!(ticks.len(), 1, "the lost poll is reported as pending");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_poll_before_the_user_finished_is_just_a_missed_poll() {
        use crate::testing::Scripted;
        let (mut flow, fake) = start(vec![
            Scripted::Fail(TransportErrorKind::Timeout),
            sts_err(400, "authorization_pending", 70016),
            token_ok("user-access"),
        ])
        .await;
        let tokens = flow.poll_until_done(|_| {}).await.unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&tokens.access_token),
            "user-access"
        );
        assert_eq!(fake.seen().len(), 4);
        // An answered poll clears the lost one: a later refusal is the STS's own answer.
        let (mut flow, _) = start(vec![
            Scripted::Fail(TransportErrorKind::Timeout),
            sts_err(400, "authorization_pending", 70016),
            sts_err(400, "invalid_grant", 54005),
        ])
        .await;
        let err = flow.poll_until_done(|_| {}).await.unwrap_err();
        assert!(matches!(err, EntraError::Sts(_)), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn polls_lost_in_a_row_end_at_the_retry_budget() {
        use crate::testing::Scripted;
        let lost: Vec<Scripted> = (0..6)
            .map(|_| Scripted::Fail(TransportErrorKind::Timeout))
            .collect();
        let (mut flow, fake) = start(lost).await;
        let err = flow.poll_until_done(|_| {}).await.unwrap_err();
        assert!(
            matches!(
                err,
                EntraError::Transport {
                    kind: TransportErrorKind::Timeout,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(fake.seen().len(), 7, "the code request and six polls");
    }
}
