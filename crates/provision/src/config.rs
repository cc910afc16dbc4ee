//! Engine settings and the requests it takes.

use std::collections::HashMap;
use std::sync::Mutex;

use audit_log::AuditLog;
use entra_client::EntraClient;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use onboard_core::{Hook, ProfileSet, SealingKey, Shutdown};

use crate::error::ProvisionError;
use crate::events;
use crate::store::Store;

/// Called with `(onboarding_id, step_id)` after each confirmed top-level step, and with
/// `(onboarding_id, "<step>:changed")` right after each audited Entra change, before the step is
/// confirmed (tests only: simulated crashes and failures). Also called with `(onboarding_id,
/// "provision:started")` once [`crate::Engine::provision`] started the run and before it
/// returns; the answer is ignored there (the run is under way): a test holds the caller at that
/// point by not returning yet.
pub type StepHook = Hook;

/// How to build an [`crate::Engine`].
pub struct EngineConfig {
    /// Talks to the identity platform and Graph.
    pub entra: EntraClient,
    /// Where every change is recorded first.
    pub audit: AuditLog,
    /// The workflow store: a sled tree the caller opened (e.g. `db.open_tree("provision")`).
    pub store: sled::Tree,
    /// Seals client secrets and admin tokens at rest (XChaCha20-Poly1305).
    pub secret_key: Zeroizing<[u8; 32]>,
    /// Service provider name (`sp2` in `Sandbox1-sp2-token`).
    pub provider: String,
    /// Live Platform server name (`Sandbox1` in `Sandbox1-sp2-token`).
    pub server_name: String,
    /// Permission profiles.
    pub profiles: ProfileSet,
    /// Grants and role assignments in flight at once per onboarding; keeps us well under
    /// Graph's write throttling while still not serialising a dozen independent calls. 6: the
    /// default profile's five (four app-role grants, one role) go in one wave.
    pub concurrency: usize,
    /// Client-secret lifetime; `None` leaves Graph's default (two years).
    pub secret_lifetime: Option<time::Duration>,
    /// Scope of the verification token (one `<resource>/.default`).
    pub verify_scope: String,
    /// Client id of the provider's token app (the server's `entra.token_app_client_id`): the
    /// temporary enterprise app the sign-in made is found by this `appId`, because it carries
    /// the provider app's own display name. `None`: nothing is looked for or removed.
    pub token_app_client_id: Option<String>,
    /// Test hook after each confirmed step.
    pub hook: Option<StepHook>,
    /// The server's shutdown signal: once it fires, no new Entra change begins, and runs get
    /// its grace to finish calls in flight (and audit them) before they are cut off.
    pub shutdown: Shutdown,
    /// The MAC every stored record carries; `None`: derived from `secret_key`. The server
    /// passes its one instance, whose "records without a MAC" switch its migration turns off.
    pub record_mac: Option<onboard_core::store::RecordMac>,
    /// How long an onboarding waits for a privileged admin when the signed-in one may do only
    /// part of the plan; then it is undone. `None`: no hand-off, such a Provision is refused
    /// before any change (the behaviour before hand-offs existed).
    pub hand_off_for: Option<std::time::Duration>,
    /// Where Microsoft's admin-consent page sends the admin back (the wizard's
    /// `/wizard/consented`). With it, a hand-off whose left changes include Microsoft Graph
    /// permissions also offers that page: the app gets this reply address while it waits, and
    /// loses it when the wait ends. `None`: the link is the only way.
    pub consent_redirect_uri: Option<String>,
}

impl EngineConfig {
    /// Defaults: shipped profiles, concurrency 6, Graph's default secret lifetime, Graph scope.
    pub fn new(
        entra: EntraClient,
        audit: AuditLog,
        store: sled::Tree,
        secret_key: impl Into<Zeroizing<[u8; 32]>>,
        server_name: impl Into<String>,
        provider: impl Into<String>,
    ) -> Result<Self, ProvisionError> {
        Ok(Self {
            entra,
            audit,
            store,
            secret_key: secret_key.into(),
            provider: provider.into(),
            server_name: server_name.into(),
            profiles: ProfileSet::defaults()?,
            concurrency: 6,
            secret_lifetime: None,
            verify_scope: "https://graph.microsoft.com/.default".into(),
            token_app_client_id: None,
            hook: None,
            shutdown: Shutdown::never(),
            record_mac: None,
            hand_off_for: None,
            consent_redirect_uri: None,
        })
    }
}

/// Engine state shared with running onboardings.
pub(crate) struct Inner {
    /// The configuration it was built from (normalised by [`crate::Engine::new`]: concurrency
    /// at least 1, blank optional strings as `None`); its `store` and `secret_key` are used
    /// only through `store` and `key` below.
    pub cfg: EngineConfig,
    /// Workflow store (`cfg.store` with the records' MAC).
    pub store: Store,
    /// Sealing key (from `cfg.secret_key`).
    pub key: SealingKey,
    /// Live events to watchers.
    pub hub: broadcast::Sender<events::Event>,
    /// Running onboardings, so one id never runs twice and cancel can stop it.
    pub running: Mutex<HashMap<String, JoinHandle<Option<()>>>>,
    /// Onboardings whose undo runs now (a cancel call, or one resumed): one undo at a time
    /// each, and a record left `Cancelling` by an undo that failed may be cancelled again.
    pub undoing: Mutex<std::collections::HashSet<String>>,
    /// Serialises the name-uniqueness check with the record insert.
    pub names: tokio::sync::Mutex<()>,
    /// Wakes the admin-consent watch at once (the admin came back from Microsoft's page).
    pub consent_nudge: tokio::sync::Notify,
    /// The test hook: `cfg.hook` (moved here), replaced by [`crate::Engine::set_hook`].
    pub hook: std::sync::RwLock<Option<StepHook>>,
}

impl Inner {
    /// The test hook, if any (`None` in production).
    pub fn hook(&self) -> Option<StepHook> {
        self.hook
            .read()
            .map_or_else(|p| p.into_inner().clone(), |h| h.clone())
    }

    /// Expiry to ask for on a new secret.
    pub fn secret_end_date_time(&self) -> Option<String> {
        let life = self.cfg.secret_lifetime?;
        (time::OffsetDateTime::now_utc() + life)
            .replace_nanosecond(0)
            .ok()?
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    }
}

/// Starting an onboarding.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    /// Caller-chosen id (1–128 characters, no `/`); retrying a failed one reuses it.
    pub onboarding_id: String,
    /// The Direct Routing service the registration is for.
    pub service_id: String,
    /// App registration name (checked against the name rules).
    pub app_name: String,
    /// Profile name (`direct-routing`, `qoe`).
    pub profile: String,
    /// Platform version, for version-dependent permissions; `None` = current.
    pub platform_version: Option<String>,
    /// Caller identity for the audit log.
    pub actor: String,
}

/// Asking for a plan.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// App registration name.
    pub app_name: String,
    /// Profile name.
    pub profile: String,
    /// Platform version; `None` = current.
    pub platform_version: Option<String>,
}
