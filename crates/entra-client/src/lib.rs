//! A client for the Microsoft identity platform (device code, refresh, client credentials) and
//! Microsoft Graph v1.0, as Onboard needs them to provision an app registration in a customer
//! tenant.
//!
//! Design points:
//! - Base URLs and trust roots are configuration ([`EntraConfig`]): the same code talks to the
//!   real cloud and to the emulator.
//! - Tokens and secrets are [`secrecy::SecretString`] end to end; nothing here prints them.
//! - Every Graph call carries a per-operation `client-request-id` ([`OpContext`]) and returns
//!   Graph's `request-id` with its result ([`Reply`]) or error, for the audit log.
//! - Retries (429/5xx always; replication lag only for calls marked [`OpContext::after_create`])
//!   are reported to a [`RetryObserver`] so progress can be streamed.
//! - HTTP and time are seams ([`Transport`], [`Clock`]) so the logic is testable without IO.
//!
//! ```no_run
//! use entra_client::graph::ApplicationSpec;
//! use entra_client::{EntraClient, EntraConfig, OpContext, MICROSOFT_GRAPH_APP_ID};
//!
//! # async fn run(token_app_client_id: &str) -> Result<(), entra_client::EntraError> {
//! let client = EntraClient::new(&EntraConfig::default())?;
//! let scopes = ["https://graph.microsoft.com/.default", "offline_access", "openid"];
//! let mut flow = client
//!     .sts()
//!     .start_device_code("organizations", token_app_client_id, &scopes, &OpContext::new())
//!     .await?;
//! println!("{}", flow.authorization().message);
//! let tokens = flow.poll_until_done(|tick| println!("still waiting: {tick:?}")).await?;
//!
//! let graph = client.graph(tokens.access_token);
//! let spec = ApplicationSpec { display_name: "lp-svc1".into(), ..Default::default() };
//! let app = graph.upsert_application("lp-tenant-svc1", &spec, &OpContext::new()).await?;
//! // The next call depends on the create: ride out replication lag, report each retry.
//! let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
//! let ctx = OpContext::new().after_create().with_observer(std::sync::Arc::new(tx));
//! let sp = graph.create_service_principal(&app.value.application.app_id, &ctx).await?;
//! let graph_sp = graph.resource_service_principal(MICROSOFT_GRAPH_APP_ID, &OpContext::new()).await?;
//! println!("{} / {} (request-id {:?})", sp.value.id, graph_sp.value.id, sp.meta.request_id);
//! # Ok(()) }
//! ```

pub mod auth_code;
pub mod challenge;
pub mod claims;
pub mod config;
pub mod device_code;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
mod odata;
pub mod retry;
pub mod sts;
mod telemetry;
#[cfg(test)]
mod testing;
pub mod token_source;
pub mod transport;

use std::sync::Arc;

use reqwest::Url;
use secrecy::SecretString;

pub use auth_code::BrowserSignIn;
pub use challenge::ClaimsChallenge;
pub use claims::{AccessTokenClaims, IdTokenClaims, access_token_claims};
pub use config::{EntraConfig, RetryPolicy};
pub use device_code::{DeviceAuthorization, DeviceCodeFlow, PollOutcome, PollTick};
pub use error::{EntraError, GraphError, StsError, TransportErrorKind, is_policy_code};
pub use graph::{CallMeta, GraphClient, Reply};
pub use retry::{
    OpContext, RetryEvent, RetryKind, RetryLog, RetryObserver, RetryReason, observer_fn,
};
pub use sts::{RefreshGrant, StsClient, TokenSet};
pub use token_source::{RenewingToken, StaticToken, TokenSource, UserTokens};
pub use transport::{Clock, HttpRequest, HttpResponse, ReqwestTransport, TokioClock, Transport};

/// App id of Microsoft Graph, the resource whose app roles (application permissions) we grant.
pub const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// App id of the "Skype and Teams Tenant Admin API", needed by Teams PowerShell app-only auth.
pub const TEAMS_TENANT_ADMIN_API_APP_ID: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239";

/// What the STS and Graph clients share: HTTP, time, retry policy and the base URLs.
pub(crate) struct Shared {
    /// Sends the requests.
    pub transport: Arc<dyn Transport>,
    /// Waits between retries and polls; tokio's clock in production.
    pub clock: Arc<dyn Clock>,
    /// How hard to retry.
    pub policy: RetryPolicy,
    /// Identity platform base (no tenant).
    pub authority: Url,
    /// Graph base including `/v1.0`.
    pub graph: Url,
}

/// Entry point: builds the STS client and Graph clients from one configuration.
#[derive(Clone)]
pub struct EntraClient {
    /// Shared by every client handed out, so they pool connections.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraClient")
            .field("authority", &self.shared.authority.as_str())
            .field("graph", &self.shared.graph.as_str())
            .finish_non_exhaustive()
    }
}

impl EntraClient {
    /// Builds a client that talks HTTPS through reqwest.
    pub fn new(config: &EntraConfig) -> Result<Self, EntraError> {
        let transport = ReqwestTransport::new(config)?;
        Self::with_seams(config, Arc::new(transport), Arc::new(TokioClock))
    }

    /// Builds a client over a caller-supplied transport and clock (tests, proxies).
    pub fn with_seams(
        config: &EntraConfig,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EntraError> {
        let authority = config.authority_url()?;
        let graph_root = config.graph_url()?;
        let graph = Url::parse(&format!(
            "{}/v1.0",
            graph_root.as_str().trim_end_matches('/')
        ))
        .map_err(|e| EntraError::Config(format!("graph base: {e}")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                transport,
                clock,
                policy: config.retry.clone(),
                authority,
                graph,
            }),
        })
    }

    /// The identity platform's base URL (no tenant), e.g. for Microsoft's admin-consent page.
    pub fn authority(&self) -> &Url {
        &self.shared.authority
    }

    /// The identity-platform client (device code, refresh, client credentials).
    pub fn sts(&self) -> StsClient {
        StsClient::new(self.shared.clone())
    }

    /// A Graph client acting with a fixed `access_token` (delegated or app-only).
    pub fn graph(&self, access_token: SecretString) -> GraphClient {
        GraphClient::new(self.shared.clone(), Arc::new(StaticToken(access_token)))
    }

    /// A Graph client whose tokens come from `tokens` (e.g. a [`RenewingToken`]), renewed
    /// before expiry and once on a 401.
    pub fn graph_with_tokens(&self, tokens: Arc<dyn TokenSource>) -> GraphClient {
        GraphClient::new(self.shared.clone(), tokens)
    }
}
