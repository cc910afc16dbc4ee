//! Client configuration: where Microsoft lives, whom to trust, how long to wait, how hard to retry.

use std::time::Duration;

use reqwest::Url;

use crate::error::EntraError;

/// Public cloud identity platform; other clouds and the emulator are configured instead.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Public cloud Microsoft Graph.
pub const DEFAULT_GRAPH: &str = "https://graph.microsoft.com";

fn parse_base(what: &str, s: &str) -> Result<Url, EntraError> {
    let url = Url::parse(s.trim_end_matches('/'))
        .map_err(|e| EntraError::Config(format!("{what} base {s:?}: {e}")))?;
    if url.cannot_be_a_base() || url.query().is_some() {
        return Err(EntraError::Config(format!(
            "{what} base {s:?} is not a base URL"
        )));
    }
    Ok(url)
}

/// Everything the client needs to reach the identity platform and Graph.
#[derive(Debug, Clone)]
pub struct EntraConfig {
    /// Authority host, without tenant (`https://login.microsoftonline.com`); national clouds and
    /// the emulator differ, so it is never hard-coded.
    pub authority_base: String,
    /// Graph host without version (`https://graph.microsoft.com`); `/v1.0` is appended here.
    pub graph_base: String,
    /// Extra PEM CA certificates to trust (e.g. the emulator's CA, a TLS-inspecting proxy's).
    pub extra_root_pems: Vec<Vec<u8>>,
    /// Limit on establishing a connection, so a black-holed host fails fast and is retried.
    pub connect_timeout: Duration,
    /// Limit on one whole request, so a hung Graph call cannot stall a provisioning run.
    pub request_timeout: Duration,
    /// Refuse plain-HTTP URLs; only a local test fake would turn this off.
    pub https_only: bool,
    /// How retries behave (throttling, 5xx, replication lag).
    pub retry: RetryPolicy,
    /// Sent as `User-Agent`, which Microsoft asks callers to set for diagnosing throttling.
    pub user_agent: String,
}

impl Default for EntraConfig {
    fn default() -> Self {
        Self {
            authority_base: DEFAULT_AUTHORITY.to_string(),
            graph_base: DEFAULT_GRAPH.to_string(),
            extra_root_pems: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            https_only: true,
            retry: RetryPolicy::default(),
            user_agent: concat!("onboard-entra-client/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

impl EntraConfig {
    /// A configuration for the public cloud with the given base URLs (e.g. the emulator's).
    pub fn with_bases(authority_base: impl Into<String>, graph_base: impl Into<String>) -> Self {
        Self {
            authority_base: authority_base.into(),
            graph_base: graph_base.into(),
            ..Self::default()
        }
    }

    /// The authority base as a URL; checked when the client is built.
    pub(crate) fn authority_url(&self) -> Result<Url, EntraError> {
        parse_base("authority", &self.authority_base)
    }

    /// The Graph base as a URL; checked when the client is built.
    pub(crate) fn graph_url(&self) -> Result<Url, EntraError> {
        parse_base("graph", &self.graph_base)
    }

    /// Adds a PEM CA bundle to trust.
    pub fn trust_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_root_pems.push(pem.into());
        self
    }
}

/// How the client retries. Two budgets: one for transient failures (429, 5xx, connect errors)
/// and one for replication lag right after a create, which can legitimately take minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total requests allowed for transient failures, including the first; a 429 that names
    /// its wait (`Retry-After`) is not counted, only bounded by `max_server_wait`.
    pub max_attempts: u32,
    /// First backoff step when the server gives no `Retry-After`.
    pub initial_backoff: Duration,
    /// Upper bound of one backoff step. A server's `Retry-After` is honoured as sent; only
    /// `max_server_wait` limits it (a wait past it ends in [`crate::EntraError::Throttled`]).
    pub max_backoff: Duration,
    /// Give up on transient failures once this much time has passed since the first request.
    pub max_elapsed: Duration,
    /// How long a call may last when the server itself says how long to wait (`Retry-After`,
    /// which Microsoft asks clients to wait out, "repeat while 429"): Graph's longest
    /// throttling window is 5 minutes (a tenant's writes), so a wait that fits within it is
    /// honoured even past `max_elapsed`; a longer one gives up at once, the wait asked for
    /// kept in the error. Never less than `max_elapsed`.
    pub max_server_wait: Duration,
    /// Randomise backoff (equal jitter: each wait between half and all of its step) so many
    /// clients do not retry in lockstep; off in tests.
    pub jitter: bool,
    /// Replication-lag retries allowed (on top of the first request) for dependent calls.
    pub replication_max_attempts: u32,
    /// Replication-lag retries stop once this much time has passed since the first request.
    pub replication_max_elapsed: Duration,
    /// First replication-lag backoff step; Microsoft's own advice starts at 1 s.
    pub replication_initial_backoff: Duration,
    /// Upper bound of one replication-lag backoff step.
    pub replication_max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(180),
            max_server_wait: Duration::from_secs(300),
            jitter: true,
            // Reference 4.3: 1 s → 30 s capped backoff, about 5–10 minutes in all.
            replication_max_attempts: 20,
            replication_max_elapsed: Duration::from_secs(300),
            replication_initial_backoff: Duration::from_secs(1),
            replication_max_backoff: Duration::from_secs(30),
        }
    }
}
