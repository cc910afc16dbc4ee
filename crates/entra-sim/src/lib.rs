//! An HTTPS emulator of the Microsoft identity platform and Microsoft Graph v1.0.
//!
//! It speaks the wire protocol described in `shared/spec/entra-reference.md`: device code,
//! refresh and client-credentials token flows with RS256 JWTs, OpenID discovery and JWKS, and
//! the Graph calls Onboard makes (applications, service principals, secrets, app role
//! assignments, delegated grants, directory role assignments), with Entra's authorization
//! rules, OData errors and paging, and switchable faults (replication lag, throttling, 5xx,
//! latency, declined or expiring sign-ins, app management policies, Conditional Access claims
//! challenges, opaque access tokens).
//!
//! # Using it
//!
//! ```text
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = entra_sim::Sim::start(listener, entra_sim::SimConfig::default()).await?;
//! // authority: sim.base_url() + "/" + tenant id; Graph: sim.base_url() + "/v1.0"
//! // trust:     reqwest::Certificate::from_pem(sim.ca_pem().as_bytes())
//! // sign-in:   POST devicecode, then sim.complete_device_login(user_code, "globaladmin@contoso.onmicrosoft.com")
//! ```
//!
//! Seeded users (see `Sim::info`): `globaladmin@`, `privroleadmin@`, `appadmin@` (Application
//! Administrator only) and `user@` (no admin role), all in `contoso.onmicrosoft.com`.
//! `Sim::add_tenant` seeds more tenants; `Sim::add_guest` makes a member of one a B2B guest of
//! another, who then signs in at that tenant's authority as the guest (AADSTS50020 for an
//! account of another tenant that is no guest there).
//!
//! Control endpoints (not part of Entra):
//! - `GET /_sim/info`: tenant, users and roles, token app client id.
//! - `POST /_sim/devicelogin` form `user_code`, `upn`, optional `action=decline`.
//! - `GET|POST /_sim/faults`: read or replace the [`Faults`] (JSON; missing fields take defaults).
//! - `GET /_sim/snapshot`: the whole directory (secrets only as hashes).
//! - `GET /_sim/tenants`: every tenant; `POST /_sim/tenants` form `domain` seeds another one.
//! - `GET /devicelogin`: the human sign-in page that `verification_uri` points at.
//!
//! Besides the device code, refresh and client-credentials grants, `GET /{tenant}/adminconsent`
//! (client_id, state, redirect_uri) serves Entra's admin-consent page and redirects back with
//! `admin_consent=True` or `error=permission_denied`, and `GET /{tenant}/oauth2/v2.0/authorize`
//! serves the authorization code flow's sign-in page (PKCE; the code redeemed with
//! `grant_type=authorization_code`).
//!
//! With a state directory the emulator writes `ca.pem`, `ca-key.pem`, `token-signing-key.der`
//! and `directory.json` there, and a restart reuses them.

// Handlers return the finished HTTP error response as their `Err`: it is the natural early
// exit of a request and only built on the (cold) error path, so boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod admin_consent;
mod authorize;
mod cli;
mod client_credentials;
mod code_grant;
mod consent;
mod defaults;
mod discovery;
mod faults;
mod graph;
mod guests;
mod http;
pub mod jwt;
mod model;
mod reply_url;
mod seed;
mod sim_page;
mod state;
mod sts;
mod tls;
mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use cli::{SimArgs, run_cli};
pub use faults::Faults;
pub use seed::{
    APP_ADMIN, CLOUD_APP_ADMIN, GLOBAL_ADMIN, GRAPH_APP_ID, GRAPH_PERMISSIONS, PRIV_ROLE_ADMIN,
    ROLE_TEMPLATES, TEAMS_APP_ID,
};
pub use tokens::{ACCESS_TOKEN_LIFETIME, CAE_ACCESS_TOKEN_LIFETIME};

/// Errors of the emulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Reading or writing the state directory or the socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Certificate or TLS setup failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// Key generation or signing failed.
    #[error("crypto failure: {0}")]
    Crypto(String),
    /// The saved state could not be read or written.
    #[error("state file error: {0}")]
    State(String),
    /// The user code is unknown (the page says "code not recognised"; AADSTS70018).
    #[error("AADSTS70018: the user code '{0}' is not recognised")]
    BadUserCode(String),
    /// The device code has expired (AADSTS70019).
    #[error("AADSTS70019: the device code has expired")]
    CodeExpired,
    /// The device request was already approved or declined (AADSTS90120).
    #[error("AADSTS90120: the device request was already completed")]
    AlreadyCompleted,
    /// No such user in the tenant (AADSTS50034).
    #[error("AADSTS50034: the user account '{0}' does not exist in the tenant")]
    UnknownUser(String),
    /// The user may not consent to the requested permissions (AADSTS90094).
    #[error("AADSTS90094: admin approval is needed for {0}")]
    ConsentRequired(String),
    /// Conditional Access blocks the sign-in (`Faults::block_device_code`; AADSTS53003).
    #[error("AADSTS53003: {}", sts::BLOCKED_BY_CONDITIONAL_ACCESS)]
    BlockedByConditionalAccess,
    /// The account belongs to another tenant and is not a guest of the one the authority
    /// names (AADSTS50020); the text is Microsoft's, naming the account, its identity
    /// provider, the tenant and the app.
    #[error("AADSTS50020: {0}")]
    ExternalUserNotInTenant(String),
    /// No tenant has this id or domain (AADSTS90002).
    #[error("AADSTS90002: Tenant '{0}' not found.")]
    UnknownTenant(String),
    /// [`Sim::add_guest`]: the home user is a member of the resource tenant itself.
    #[error("'{0}' is a member of tenant '{1}', not an external user of it")]
    AlreadyMember(String, String),
}

/// How to start an emulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Where `ca.pem` (and the directory state) are written; `None` keeps everything in memory.
    pub state_dir: Option<PathBuf>,
    /// Fault switches in force at start (changeable later with `Sim::set_faults`).
    pub faults: Faults,
    /// Live Platform server name (`Sandbox1` in `Sandbox1-sp2-token`).
    pub server_name: String,
    /// Service provider name (`sp2` in `Sandbox1-sp2-token`).
    pub provider_name: String,
    /// Verified domain of the seeded tenant.
    pub tenant_domain: String,
    /// Client id of the provider's multi-tenant public "token app"; `None` uses a fixed seeded id.
    pub token_app_client_id: Option<String>,
    /// Whether users without an admin role may register applications.
    pub users_can_register_apps: bool,
    /// Delegated Graph permissions configured on the provider's token app (what a `.default`
    /// sign-in gets); `None` uses the seeded list. Lets tests play a minimal token app.
    pub token_app_scopes: Option<Vec<String>>,
    /// Display name of the provider's token app registration. The service principal consent
    /// creates in a customer tenant takes the app's own name, whatever Onboard's server and
    /// provider names are; `None` uses `<server>-<provider>-token` (the vendor's convention).
    pub token_app_display_name: Option<String>,
    /// The token app's `publicClient.redirectUris` (mobile and desktop), where the
    /// authorization code flow may send its code; changeable later with
    /// [`Sim::set_token_app_redirect_uris`].
    pub token_app_redirect_uris: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            state_dir: None,
            faults: Faults::default(),
            server_name: "Sandbox1".into(),
            provider_name: "sp2".into(),
            tenant_domain: "contoso.onmicrosoft.com".into(),
            token_app_client_id: None,
            users_can_register_apps: false,
            token_app_scopes: None,
            token_app_display_name: None,
            token_app_redirect_uris: Vec::new(),
        }
    }
}

impl SimConfig {
    /// Display name of the provider's token app, and so of the temporary enterprise app the
    /// device sign-in's consent makes in a customer tenant.
    pub fn token_app_name(&self) -> String {
        match &self.token_app_display_name {
            Some(n) => n.clone(),
            None => format!("{}-{}-token", self.server_name, self.provider_name),
        }
    }
}

/// One seeded user, as `Sim::info` and `GET /_sim/info` list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimUser {
    /// Sign-in name to give `complete_device_login` (a guest's is its home account's UPN).
    pub upn: String,
    /// For a B2B guest, its own `userPrincipalName` in this tenant
    /// (`alice_provider.example#EXT#@customer.onmicrosoft.com`); `None` for a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_upn: Option<String>,
    /// Object id (`oid`).
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Directory role names held (e.g. "Global Administrator").
    pub roles: Vec<String>,
    /// Directory role template ids held (what `wids` carries).
    pub role_template_ids: Vec<String>,
}

/// What a test or script needs to know about a running emulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimInfo {
    /// `https://127.0.0.1:PORT`: authority host and Graph host.
    pub base_url: String,
    /// Graph base (`base_url` + `/v1.0`).
    pub graph_base_url: String,
    /// Seeded tenant id.
    pub tenant_id: String,
    /// Seeded tenant's verified domain.
    pub tenant_domain: String,
    /// Client id of the provider's token app (device sign-in).
    pub token_app_client_id: String,
    /// Display name of the token app (`<server>-<provider>-token`).
    pub token_app_display_name: String,
    /// Users and their roles.
    pub users: Vec<SimUser>,
}

/// Requests answered, by kind (see [`Sim::request_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestCounts {
    /// Microsoft Graph calls (`/v1.0/…`).
    pub graph: u64,
    /// Identity platform calls (token, device code, discovery, keys).
    pub sts: u64,
}

/// A running emulator.
pub struct Sim {
    /// State shared with the request handlers.
    shared: Arc<state::Shared>,
    /// Stops the HTTPS server.
    handle: axum_server::Handle<SocketAddr>,
    /// The server task, awaited on shutdown.
    task: tokio::task::JoinHandle<()>,
}

impl Sim {
    /// Starts serving on an already-bound listener.
    pub async fn start(
        listener: tokio::net::TcpListener,
        config: SimConfig,
    ) -> Result<Sim, SimError> {
        let addr = listener.local_addr()?;
        let base_url = match addr {
            SocketAddr::V4(a) => format!("https://{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("https://[{}]:{}", a.ip(), a.port()),
        };
        let tls = tls::build(config.state_dir.as_deref())?;
        let shared = Arc::new(state::Shared::new(base_url, config, tls.ca_pem)?);
        let app = http::router(shared.clone());
        let std_listener = listener.into_std()?;
        let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(tls.server_config);
        let handle = axum_server::Handle::new();
        // TCP_NODELAY on every accepted connection: without it, a response written in two
        // segments waits for the client's delayed ACK (~40 ms on Linux), which would add latency
        // Microsoft's front ends do not have to every concurrent call.
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls_config)
            .acceptor(axum_server::accept::NoDelayAcceptor::new());
        let server = axum_server::from_tcp(std_listener)?
            .acceptor(acceptor)
            .handle(handle.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::error!(error = %e, "entra emulator stopped");
            }
        });
        Ok(Sim {
            shared,
            handle,
            task,
        })
    }

    /// How many Graph and identity-platform requests the emulator has answered so far
    /// (including refused, throttled and failed ones).
    pub fn request_counts(&self) -> RequestCounts {
        use std::sync::atomic::Ordering::Relaxed;
        RequestCounts {
            graph: self.shared.counts.graph.load(Relaxed),
            sts: self.shared.counts.sts.load(Relaxed),
        }
    }

    /// `https://127.0.0.1:PORT`: authority base and Graph base (Graph is `base_url() + "/v1.0"`).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The CA certificate (PEM) that signs the server certificate.
    pub fn ca_pem(&self) -> String {
        self.shared.ca_pem.clone()
    }

    /// Tenant, users and token app of this emulator.
    pub fn info(&self) -> SimInfo {
        self.shared.info()
    }

    /// Tenant, users and token app of the tenant with this id or verified domain.
    pub fn info_for(&self, tenant: &str) -> Option<SimInfo> {
        self.shared.info_for(tenant)
    }

    /// Every tenant the emulator holds, the seeded primary one first.
    pub fn tenants(&self) -> Vec<SimInfo> {
        self.shared.tenants()
    }

    /// Seeds another customer tenant with the same four users and roles under `domain`
    /// (e.g. `fabrikam.onmicrosoft.com`); idempotent per domain.
    pub fn add_tenant(&self, domain: &str) -> SimInfo {
        self.shared.add_tenant(domain)
    }

    /// Lets every access token issued so far reach the end of its lifetime (Entra's last 60–90
    /// minutes) without waiting for it: Graph then answers them 401 "Lifetime validation
    /// failed, the token is expired.", as it would an hour later, while refresh tokens (90
    /// days) still redeem. Returns in the next second, so tokens issued after it are told
    /// apart by their `iat`.
    pub async fn expire_access_tokens(&self) {
        let now = state::unix_now();
        self.shared.lock().access_tokens_expired_through = now;
        state::wait_past(now).await;
    }

    /// Revokes every sign-in made so far, as Continuous Access Evaluation's critical events do
    /// (the user's sessions revoked, a Conditional Access policy the sign-in no longer
    /// satisfies): Graph answers their delegated access tokens 401 with a claims challenge
    /// (`TokenIssuedBeforeRevocationTimestamp`) when their client declared the `cp1`
    /// capability (others work until they expire, as without Continuous Access Evaluation),
    /// and their refresh tokens no longer redeem (AADSTS50173); app-only tokens are not
    /// affected, and a new sign-in works. Returns in the
    /// next second, so sign-ins after it are told apart by their time.
    pub async fn revoke_sign_in_sessions(&self) {
        let now = state::unix_now();
        self.shared.lock().sign_ins_revoked_through = now;
        state::wait_past(now).await;
    }

    /// Changes the tenant's Conditional Access policies in a way every sign-in made so far
    /// still satisfies (Continuous Access Evaluation's `TokenCreatedWithOutdatedPolicies`):
    /// Graph answers the delegated access tokens issued so far 401 with a claims challenge when
    /// their client declared the `cp1` capability, and a token asked for silently (the refresh
    /// token, with the challenge's claims request) satisfies it: Microsoft's MSAL guidance is to
    /// try silently first because some policies need no user interaction. Refresh tokens keep
    /// redeeming; app-only tokens are not affected. Returns in the next second, so tokens
    /// issued after it are told apart by their `iat`.
    pub async fn change_conditional_access_policies(&self) {
        let now = state::unix_now();
        self.shared.lock().policies_changed_through = now;
        state::wait_past(now).await;
    }

    /// Replaces the token app's public-client redirect URIs (a test registers its server's
    /// callback once it knows the address).
    pub fn set_token_app_redirect_uris(&self, uris: Vec<String>) {
        self.shared.lock().token_app_redirect_uris = uris;
    }

    /// Replaces the fault switches (takes effect for the next request).
    pub fn set_faults(&self, f: Faults) {
        self.shared.set_faults(f);
    }

    /// How many of [`Faults::stale_replica_answers`] no request has met yet.
    pub fn stale_answers_left(&self) -> u32 {
        self.shared.stale_answers_left()
    }

    /// Completes a pending device sign-in as `upn` (what the person does on the page).
    pub async fn complete_device_login(&self, user_code: &str, upn: &str) -> Result<(), SimError> {
        self.shared
            .complete_device_login(user_code, upn, true)
            .map(|_| ())
    }

    /// Declines a pending device sign-in as `upn`.
    pub async fn decline_device_login(&self, user_code: &str, upn: &str) -> Result<(), SimError> {
        self.shared
            .complete_device_login(user_code, upn, false)
            .map(|_| ())
    }

    /// Adds a member user holding the given directory roles (role template ids), for tests
    /// that need another role mix (e.g. Cloud Application Administrator).
    pub fn add_user(&self, upn: &str, display_name: &str, role_template_ids: &[&str]) -> SimUser {
        self.shared.add_user(upn, display_name, role_template_ids)
    }

    /// Adds, in `resource_tenant` (an id or verified domain), a B2B collaboration user
    /// (guest) standing for the member `home_upn` of another tenant, holding the directory
    /// roles `role_template_ids` there: its own object id, `userType` Guest, the UPN
    /// `{home UPN with _ for @}#EXT#@{resource tenant's domain}`, `mail` the home UPN. The home
    /// user then signs in at that tenant's authority as the guest. Adding the same guest again
    /// adds the roles it lacks. Refused: an unknown home user (`UnknownUser`) or tenant
    /// (`UnknownTenant`), a home user of the resource tenant itself (`AlreadyMember`).
    pub fn add_guest(
        &self,
        home_upn: &str,
        resource_tenant: &str,
        role_template_ids: &[&str],
    ) -> Result<SimUser, SimError> {
        self.shared
            .add_guest(home_upn, resource_tenant, role_template_ids)
    }

    /// How many Graph calls `key` succeeded since start, keyed `"<METHOD> <last path segment>"`
    /// (e.g. `"POST removePassword"`, `"POST addPassword"`).
    pub fn calls(&self, key: &str) -> u64 {
        self.shared.calls(key)
    }

    /// The whole directory state as JSON (secrets appear only as hashes).
    pub fn snapshot(&self) -> serde_json::Value {
        self.shared.snapshot()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.handle.shutdown();
        let _ = self.task.await;
    }
}
