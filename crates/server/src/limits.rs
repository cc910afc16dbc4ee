//! Limits: what one caller, one connection or the whole server may use, each with a clear
//! RESOURCE_EXHAUSTED (the limit's name and value in `google.rpc.QuotaFailure`, when to retry in
//! `google.rpc.RetryInfo`). Every value is in the configuration's `[limits]` section
//! ([`LimitsSection`], documented in `deploy/onboard.example.toml`, shown by
//! `onboard config check`).
//!
//! - Transport (applied in `serve`): HTTP/2 streams per connection, HTTP/2 keep-alive pings and
//!   their timeout, TCP keep-alive, a connection's maximum age (the idle bound: a connection is
//!   closed gracefully after it, busy or not), and the largest message decoded or encoded.
//! - Time (applied in `crate::guard_layer`): a call not answered within
//!   `request_timeout_secs` (a stream: not opened) is stopped and answered DEADLINE_EXCEEDED
//!   naming the limit; a stream, once open, is not cut by it.
//! - Concurrency: calls in flight over all connections (`max_concurrent_calls`, beyond it
//!   RESOURCE_EXHAUSTED at once, never queued).
//! - Invitation tokens: per peer address, a token bucket of failed token checks; an empty
//!   bucket refuses every token-carrying call from that address until it refills, before the
//!   token is even looked at, so forged tokens at thousands a second get nothing but
//!   RESOURCE_EXHAUSTED.
//! - Expensive RPCs ([`EXPENSIVE`]: SignIn, Plan, Provision, Verify, secret and grant changes):
//!   a token bucket per caller, checked once the caller is known (the operator's identity, or
//!   the invitation for the customer: a wizard back-end calling for many customers from one
//!   address does not share one bucket).
//! - Sign-ins to Microsoft: one device-code flow per invitation (a second SignIn is refused
//!   while the first is open), and caps on concurrent sign-ins in total and per admin domain
//!   (the tenant is not known before the sign-in; the UPN's domain stands for it).
//! - Audited reads are rate-limited per caller (not coalesced): each audit read is one entry,
//!   so the bucket bounds how fast one caller can grow the log.
//! - Streams (Follow, Watch, Provision): a bounded buffer per stream; a reader that leaves it
//!   full for `slow_reader_secs` is disconnected with RESOURCE_EXHAUSTED, and the stream's task
//!   and buffer are freed when the caller cancels.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::BoxStream;
use crate::error::ServerError;

/// `[limits]`: every bound the server enforces, with sane defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// HTTP/2 streams (calls) one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// Calls in flight over all connections; beyond it RESOURCE_EXHAUSTED at once.
    pub max_concurrent_calls: usize,
    /// Seconds between HTTP/2 keep-alive pings on an idle connection.
    pub keepalive_interval_secs: u64,
    /// Seconds to wait for a ping's answer before closing the connection.
    pub keepalive_timeout_secs: u64,
    /// A connection is closed gracefully after this many seconds (the idle bound too).
    pub max_connection_age_secs: u64,
    /// Seconds a call may take to be answered (a stream: to open; once open, it is bounded by
    /// its own rules); past it the call is stopped and answered DEADLINE_EXCEEDED.
    pub request_timeout_secs: u64,
    /// The largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Messages buffered per stream (Follow, Watch, Provision).
    pub stream_buffer: usize,
    /// Seconds a stream's buffer may stay full before its reader is disconnected.
    pub slow_reader_secs: u64,
    /// Failed invitation-token checks per minute per peer address (the bucket refills at
    /// this rate).
    pub token_failures_per_minute: u32,
    /// Failed token checks in a burst before the bucket is empty.
    pub token_failures_burst: u32,
    /// Expensive calls per minute per caller.
    pub expensive_per_minute: u32,
    /// Expensive calls in a burst.
    pub expensive_burst: u32,
    /// Audited reads (each an audit entry) per minute per caller.
    pub audited_reads_per_minute: u32,
    /// Audited reads in a burst.
    pub audited_reads_burst: u32,
    /// Device-code sign-ins in progress over the whole server.
    pub max_sign_ins: usize,
    /// Device-code sign-ins in progress per admin domain (the UPN's part after `@`).
    pub max_sign_ins_per_tenant: usize,
    /// Seconds a customer may still Watch (and Get) a finished onboarding with the invitation.
    pub customer_watch_grace_secs: u64,
    /// Seconds an onboarding waits for a Global Administrator or Privileged Role Administrator
    /// to finish what the signed-in admin may not (then it is undone, audited); 0 refuses such
    /// a Provision up front instead of handing it off.
    pub hand_off_wait_secs: u64,
    /// Seconds between looks at Microsoft Graph for permissions granted on Microsoft's
    /// admin-consent page, while a hand-off offers it (also looked at as soon as an admin comes
    /// back from that page).
    pub consent_poll_secs: u64,
    /// Seconds a browser sign-in (`SIGN_IN_METHOD_BROWSER`) waits for Microsoft to send the
    /// admin back to the wizard's `/wizard/signed-in`; then it ends SIGN_IN_EXPIRED. The
    /// device code's lifetime at Microsoft (15 minutes) by default.
    pub browser_sign_in_secs: u64,
    /// The longest a backup may pause audit appends while it exports the state store
    /// (`onboard backup`); past it the backup fails and appends go on.
    pub backup_pause_max_ms: u64,
    /// Seconds a graceful stop (SIGTERM, Ctrl-C) gives calls and background work in flight to
    /// finish and write their audit outcomes; then open connections are dropped and the audit
    /// log is closed. Keep it well under the orchestrator's kill timeout (Kubernetes'
    /// `terminationGracePeriodSeconds`, 60 in deploy/k8s).
    pub shutdown_grace_secs: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_streams_per_connection: 100,
            max_concurrent_calls: 1000,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 10,
            max_connection_age_secs: 3600,
            request_timeout_secs: 60,
            max_message_bytes: 4 * 1024 * 1024,
            stream_buffer: 64,
            slow_reader_secs: 30,
            token_failures_per_minute: 30,
            token_failures_burst: 10,
            expensive_per_minute: 120,
            expensive_burst: 30,
            audited_reads_per_minute: 600,
            audited_reads_burst: 100,
            max_sign_ins: 200,
            max_sign_ins_per_tenant: 20,
            customer_watch_grace_secs: 600,
            hand_off_wait_secs: provision::hand_off::DEFAULT_WAIT.as_secs(),
            consent_poll_secs: 30,
            browser_sign_in_secs: 15 * 60,
            backup_pause_max_ms: 10_000,
            shutdown_grace_secs: onboard_core::shutdown::DEFAULT_GRACE.as_secs(),
        }
    }
}

impl LimitsSection {
    /// Refuses zeros where a zero would stop the server from working.
    pub fn check(&self) -> Result<(), String> {
        // These two may be 0 (no grace, no hand-off); every other limit must be at least 1.
        let may_be_zero = ["customer_watch_grace_secs", "hand_off_wait_secs"];
        let mut entries = self.entries().into_iter();
        match entries.find(|(k, v)| *v == 0 && !may_be_zero.contains(k)) {
            Some((k, _)) => Err(format!("limits.{k} must be at least 1")),
            None => Ok(()),
        }
    }

    /// The section as `key = value` lines, for `onboard config check`.
    pub fn describe(&self) -> Vec<String> {
        self.entries()
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect()
    }

    /// Every limit with its key, in the section's order.
    fn entries(&self) -> [(&'static str, u64); 23] {
        [
            (
                "max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
            ),
            ("max_concurrent_calls", self.max_concurrent_calls as u64),
            ("keepalive_interval_secs", self.keepalive_interval_secs),
            ("keepalive_timeout_secs", self.keepalive_timeout_secs),
            ("max_connection_age_secs", self.max_connection_age_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("max_message_bytes", self.max_message_bytes as u64),
            ("stream_buffer", self.stream_buffer as u64),
            ("slow_reader_secs", self.slow_reader_secs),
            (
                "token_failures_per_minute",
                u64::from(self.token_failures_per_minute),
            ),
            ("token_failures_burst", u64::from(self.token_failures_burst)),
            ("expensive_per_minute", u64::from(self.expensive_per_minute)),
            ("expensive_burst", u64::from(self.expensive_burst)),
            (
                "audited_reads_per_minute",
                u64::from(self.audited_reads_per_minute),
            ),
            ("audited_reads_burst", u64::from(self.audited_reads_burst)),
            ("max_sign_ins", self.max_sign_ins as u64),
            (
                "max_sign_ins_per_tenant",
                self.max_sign_ins_per_tenant as u64,
            ),
            ("customer_watch_grace_secs", self.customer_watch_grace_secs),
            ("hand_off_wait_secs", self.hand_off_wait_secs),
            ("consent_poll_secs", self.consent_poll_secs),
            ("browser_sign_in_secs", self.browser_sign_in_secs),
            ("backup_pause_max_ms", self.backup_pause_max_ms),
            ("shutdown_grace_secs", self.shutdown_grace_secs),
        ]
    }
}

/// RPCs that reach Microsoft or change Entra: a token bucket per caller
/// (`limits.expensive_per_minute`, `limits.expensive_burst`).
pub const EXPENSIVE: &[&str] = &[
    "onboard.v1.Onboarding/SignIn",
    "onboard.v1.Onboarding/Plan",
    "onboard.v1.Onboarding/Provision",
    "onboard.v1.Verification/Verify",
    "onboard.v1.Credentials/AddServiceSecret",
    "onboard.v1.Credentials/RotateSecret",
    "onboard.v1.Credentials/RevokeSecret",
    "onboard.v1.Credentials/UpdateRoles",
    "onboard.v1.Credentials/UpdatePermissions",
    "onboard.v1.Credentials/AttachRegistration",
    "onboard.v1.Credentials/ListGrants",
];

fn quota(per_minute: u32, burst: u32) -> Quota {
    let per = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per).allow_burst(burst)
}

/// A refusal: which limit, its value, and when to try again.
pub(crate) fn exhausted(limit: &str, subject: &str, retry_after: Option<Duration>) -> ServerError {
    ServerError::ResourceExhausted {
        limit: limit.to_owned(),
        subject: subject.to_owned(),
        retry_after,
    }
}

/// The called RPC's path (`/onboard.v1.Service/Method`), put in the request's extensions by
/// the guard layer.
#[derive(Debug, Clone)]
pub struct RpcPath(pub String);

/// The shared state of the limits (one per server).
pub struct Guards {
    /// The configured values.
    pub config: LimitsSection,
    /// Failed invitation-token checks per peer address.
    token_failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses whose token bucket ran dry, and until when every token call is refused.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// Expensive calls per caller (operator identity, or `invitation:<id>`).
    expensive: DefaultKeyedRateLimiter<String>,
    /// Audited reads per caller identity.
    audited_reads: DefaultKeyedRateLimiter<String>,
    /// Open device-code flows: invitation ids, and sign-ins per admin domain.
    sign_ins: Mutex<SignIns>,
    /// Revoked invitation ids, so open streams of their holders end at once.
    revoked: tokio::sync::broadcast::Sender<String>,
    /// Orders revocations and sign-ins' outcomes: a revocation writes with it held
    /// ([`Guards::revoking`]), a sign-in holds it shared from its last look at the invitation
    /// until its outcome is logged and its session kept ([`Guards::not_revoking`]), so the log
    /// shows each sign-in wholly before or wholly after a revocation of its invitation.
    revoking: tokio::sync::RwLock<()>,
}

/// Sign-ins in progress.
#[derive(Default)]
struct SignIns {
    /// Invitation ids with an open device-code flow.
    invitations: std::collections::HashSet<String>,
    /// Open flows per admin domain.
    per_domain: HashMap<String, usize>,
    /// Open flows in total.
    total: usize,
}

impl std::fmt::Debug for Guards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guards")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Holds one sign-in slot; dropping it frees the slot.
pub struct SignInSlot {
    /// Where the slot is counted.
    guards: Arc<Guards>,
    /// The invitation.
    invitation: String,
    /// The admin domain.
    domain: String,
}

impl Drop for SignInSlot {
    fn drop(&mut self) {
        let mut s = self.guards.sign_ins();
        s.invitations.remove(&self.invitation);
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_domain.get_mut(&self.domain) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_domain.remove(&self.domain);
            }
        }
    }
}

fn wait(not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> Duration {
    not_until.wait_time_from(DefaultClock::default().now())
}

impl Guards {
    /// The limits of `config`.
    pub fn new(config: LimitsSection) -> Self {
        let (revoked, _) = tokio::sync::broadcast::channel(64);
        Self {
            token_failures: RateLimiter::keyed(quota(
                config.token_failures_per_minute,
                config.token_failures_burst,
            )),
            blocked: Mutex::new(HashMap::new()),
            expensive: RateLimiter::keyed(quota(
                config.expensive_per_minute,
                config.expensive_burst,
            )),
            audited_reads: RateLimiter::keyed(quota(
                config.audited_reads_per_minute,
                config.audited_reads_burst,
            )),
            sign_ins: Mutex::new(SignIns::default()),
            revoked,
            revoking: tokio::sync::RwLock::new(()),
            config,
        }
    }

    fn sign_ins(&self) -> std::sync::MutexGuard<'_, SignIns> {
        self.sign_ins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a token-carrying call from `peer` while its failure bucket is empty.
    pub fn token_gate(&self, peer: Option<IpAddr>) -> Result<(), ServerError> {
        let Some(ip) = peer else { return Ok(()) };
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = blocked.get(&ip).copied() {
            let now = Instant::now();
            if now < until {
                return Err(self.token_exhausted(until - now));
            }
            blocked.remove(&ip);
        }
        Ok(())
    }

    /// Counts a failed token check from `peer`; the error to return instead of the failure once
    /// the bucket is empty.
    pub fn token_failed(&self, peer: Option<IpAddr>) -> Option<ServerError> {
        let ip = peer?;
        match self.token_failures.check_key(&ip) {
            Ok(()) => None,
            Err(n) => {
                let w = wait(&n);
                let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
                if blocked.len() > 10_000 {
                    let now = Instant::now();
                    blocked.retain(|_, t| *t > now);
                    self.token_failures.retain_recent();
                }
                blocked.insert(ip, Instant::now() + w);
                Some(self.token_exhausted(w))
            }
        }
    }

    fn token_exhausted(&self, retry: Duration) -> ServerError {
        exhausted(
            &format!(
                "limits.token_failures_per_minute = {} (burst {})",
                self.config.token_failures_per_minute, self.config.token_failures_burst
            ),
            "invitation token failures from this address",
            Some(retry),
        )
    }

    /// Takes one expensive call for `caller` when the request's method is an expensive one
    /// ([`EXPENSIVE`]); other calls pass.
    pub fn expensive_call<T>(
        &self,
        req: &tonic::Request<T>,
        caller: &str,
    ) -> Result<(), ServerError> {
        let Some(RpcPath(path)) = req.extensions().get::<RpcPath>() else {
            return Ok(());
        };
        let name = path.trim_start_matches('/');
        if EXPENSIVE.contains(&name) {
            self.expensive(caller, name.rsplit('/').next().unwrap_or(name))
        } else {
            Ok(())
        }
    }

    /// Takes one expensive call `rpc` for `caller`.
    pub fn expensive(&self, caller: &str, rpc: &str) -> Result<(), ServerError> {
        self.expensive.check_key(&caller.to_owned()).map_err(|n| {
            exhausted(
                &format!(
                    "limits.expensive_per_minute = {} (burst {})",
                    self.config.expensive_per_minute, self.config.expensive_burst
                ),
                &format!("{rpc} and other expensive calls by this caller"),
                Some(wait(&n)),
            )
        })
    }

    /// Takes one audited read for `caller`.
    pub fn audited_read(&self, caller: &str) -> Result<(), ServerError> {
        self.audited_reads
            .check_key(&caller.to_owned())
            .map_err(|n| {
                exhausted(
                    &format!(
                        "limits.audited_reads_per_minute = {} (burst {})",
                        self.config.audited_reads_per_minute, self.config.audited_reads_burst
                    ),
                    "audited reads by this caller",
                    Some(wait(&n)),
                )
            })
    }

    /// A sign-in slot for `invitation` by an admin of `upn`'s domain, or why not.
    pub fn sign_in(
        self: &Arc<Self>,
        invitation: &str,
        upn: &str,
    ) -> Result<SignInSlot, ServerError> {
        let domain = upn
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let mut s = self.sign_ins();
        if s.invitations.contains(invitation) {
            return Err(exhausted(
                "one device-code flow per invitation",
                &format!(
                    "invitation {invitation} already has a sign-in in progress: finish it, close its stream, or wait for its code to expire"
                ),
                Some(Duration::from_secs(5)),
            ));
        }
        if s.total >= self.config.max_sign_ins {
            return Err(exhausted(
                &format!("limits.max_sign_ins = {}", self.config.max_sign_ins),
                "sign-ins in progress on this server",
                Some(Duration::from_secs(5)),
            ));
        }
        let n = s.per_domain.get(&domain).copied().unwrap_or(0);
        if n >= self.config.max_sign_ins_per_tenant {
            return Err(exhausted(
                &format!(
                    "limits.max_sign_ins_per_tenant = {}",
                    self.config.max_sign_ins_per_tenant
                ),
                "sign-ins in progress for this admin domain",
                Some(Duration::from_secs(5)),
            ));
        }
        s.invitations.insert(invitation.to_owned());
        s.total += 1;
        *s.per_domain.entry(domain.clone()).or_default() += 1;
        Ok(SignInSlot {
            guards: self.clone(),
            invitation: invitation.to_owned(),
            domain,
        })
    }

    /// Announces that `invitation` was revoked (open streams of its holder end).
    pub fn revoked(&self, invitation: &str) {
        let _ = self.revoked.send(invitation.to_owned());
    }

    /// Held while an invitation is revoked: waits for sign-ins finishing now, and holds off
    /// those that would finish during it.
    pub async fn revoking(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.revoking.write().await
    }

    /// Held by a sign-in from its last look at its invitation until its outcome is logged and
    /// its session kept: no revocation is written meanwhile.
    pub async fn not_revoking(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.revoking.read().await
    }

    /// Revocations from now on.
    pub fn revocations(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.revoked.subscribe()
    }

    /// A bounded stream and its sender (see [`Sender`]).
    pub fn stream<T: Send + 'static>(&self) -> (Sender<T>, BoxStream<T>) {
        bounded(
            self.config.stream_buffer,
            Duration::from_secs(self.config.slow_reader_secs),
        )
    }
}

/// The sending half of a bounded stream: a send that waits longer than the slow-reader bound
/// disconnects the reader with RESOURCE_EXHAUSTED instead of buffering more.
pub struct Sender<T> {
    /// The channel.
    tx: mpsc::Sender<Result<T, tonic::Status>>,
    /// How long a send may wait for room.
    slow: Duration,
    /// Set when the reader was disconnected for being slow.
    overflowed: Arc<std::sync::atomic::AtomicBool>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            slow: self.slow,
            overflowed: self.overflowed.clone(),
        }
    }
}

/// The reader is gone (left, or disconnected for being slow): stop producing.
#[derive(Debug)]
pub struct Gone;

impl<T> Sender<T> {
    /// Sends one item or error; `Err(Gone)` when the stream is over.
    pub async fn send(&self, item: Result<T, tonic::Status>) -> Result<(), Gone> {
        match tokio::time::timeout(self.slow, self.tx.send(item)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Gone),
            Err(_) => {
                self.overflowed
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                Err(Gone)
            }
        }
    }

    /// Whether the reader has gone already.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the reader has gone.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

fn bounded<T: Send + 'static>(buffer: usize, slow: Duration) -> (Sender<T>, BoxStream<T>) {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    let overflowed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = overflowed.clone();
    let limit = format!(
        "limits.stream_buffer = {buffer}, limits.slow_reader_secs = {}",
        slow.as_secs()
    );
    let tail = tokio_stream::once(()).filter_map(move |()| {
        flag.load(std::sync::atomic::Ordering::SeqCst).then(|| {
            Err(exhausted(
                &limit,
                "this stream's reader did not keep up; reconnect and resume from the last item received",
                Some(Duration::from_secs(1)),
            )
            .into())
        })
    });
    let stream = ReceiverStream::new(rx).chain(tail);
    (
        Sender {
            tx,
            slow,
            overflowed,
        },
        Box::pin(stream),
    )
}
