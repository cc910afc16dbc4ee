//! The shared state every service works on: configuration, callers, the audit log and the
//! invitation store. Opening it opens everything; clones are cheap handles.

use std::path::Path;
use std::sync::Arc;

use std::collections::HashMap;
use std::time::Duration;

use audit_log::{AuditLog, LogConfig, NoteSigner};
use credentials::targets::{RegistryTargets, TargetSettings};
use credentials::{Credentials, CredentialsConfig};
use entra_client::{EntraClient, EntraConfig};
use invitations::Invitations;
use onboard_core::{ProfileSet, Shutdown, ShutdownController};
use provision::{Engine, EngineConfig};
use verifier::{PlatformEndpoint, Probe};
use zeroize::Zeroizing;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::error::{Result, ServerError};
use crate::integrity;

/// The audit log's sled directory inside the data directory (the log owns it alone).
pub const AUDIT_DIR: &str = "audit";
/// Our own state's sled directory inside the data directory.
pub const STATE_DIR: &str = "state";
/// The metadata key of a generated sealing key for the onboarding store.
pub(crate) const SEALING_KEY_META: &str = "provision_sealing_key";
/// The onboarding engine's tree in the state database.
pub(crate) const PROVISION_TREE: &str = "provision";
/// Onboarding id → invitation id.
pub(crate) const LINKS_TREE: &str = "onboarding_invitations";
/// Open drift items found by scheduled verification.
const DRIFT_TREE: &str = "drift";
/// The audit actor of scheduled verification runs.
pub const DRIFT_ACTOR: &str = "onboard:drift-monitor";
/// The day-two credential manager's tree (managed registrations, rotations, admin sessions).
const CREDENTIALS_TREE: &str = "credentials";

/// Everything the services share.
#[derive(Clone)]
pub struct App {
    /// One allocation shared by every service and connection.
    inner: Arc<Inner>,
}

/// What [`App`] holds.
struct Inner {
    /// Limits: rate limiters, sign-in slots, revocations, bounded streams.
    guards: Arc<crate::limits::Guards>,
    /// The state database (migrations reach every tree).
    db: sled::Db,
    /// Its metadata tree (the audit anchor).
    meta: sled::Tree,
    /// The MAC every state record carries.
    record_mac: onboard_core::store::RecordMac,
    /// Keeps the state store registered for `fdatasync` on every durable flush.
    _durable: onboard_core::store::DurableStore,
    /// The configuration it was opened with (TLS paths, defaults).
    config: Config,
    /// Caller identification and role checks.
    auth: Authenticator,
    /// The signed audit log; every change and every audit read is recorded here first.
    audit: AuditLog,
    /// Invitations and their tokens' hashes.
    invitations: Invitations,
    /// Talks to the identity platform (device code sign-ins) and Graph.
    entra: EntraClient,
    /// The durable onboarding workflow under the Onboarding service.
    engine: Engine,
    /// The provisioning profiles (`platform.profiles_path`, else the shipped ones); the engine
    /// has its own copy, this one answers sign-in's "which roles are missing".
    profiles: ProfileSet,
    /// Day-two management of registrations (the Credentials service; Verification reads it).
    credentials: Credentials,
    /// Onboarding id → the invitation it came from (the engine does not know invitations).
    links: sled::Tree,
    /// Writers of `links` (secret claims) share durable flushes instead of one sled flush each.
    links_flush: onboard_core::store::GroupFlush,
    /// Verification: the checks, the registrations (through `verifier::Targets`), open drift
    /// items and scheduled runs.
    drift: Arc<verifier::DriftMonitor>,
    /// The one shutdown primitive: streams end, workflows start no new change, background
    /// loops stop, and work in flight gets its grace; see `onboard_core::shutdown`.
    shutdown: ShutdownController,
    /// `true` once `serve` has done its start-up work (records migrated, keys moved out,
    /// onboardings resumed) and accepts calls: what reads the app directly (an embedding
    /// program, a test) waits on it, as a client's first call waits for the accept.
    started: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("origin", &self.inner.audit.origin())
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Opens the audit log (`DATA_DIR/audit`) and the state store (`DATA_DIR/state`).
    /// Blocking: run it before serving or in `spawn_blocking`.
    pub fn open(config: Config) -> Result<Self> {
        crate::storage::check_keys(&config)?;
        let signer = load_signer(&config.audit.signing_key, &config.audit.origin)?;
        let data = &config.storage.data_dir;
        crate::storage::prepare_data_dir(data)?;
        // The state store first: it says what audit log to expect (`crate::integrity`).
        let db = crate::storage::open_state(&data.join(STATE_DIR))?;
        let fresh = !db.was_recovered();
        let durable = crate::storage::register_state(&data.join(STATE_DIR))?;
        // Key files that are not the keys this store generated are refused before it is read.
        crate::generated_keys::check_files(&db, &config)?;
        let key = sealing_key(&db, &config)?;
        let record_mac = onboard_core::SealingKey::new(key.clone()).record_mac();
        let meta = db.open_tree(integrity::META_TREE)?;
        record_mac.allow_legacy(!integrity::migrated(&meta, fresh)?);
        let anchor = integrity::read_anchor(&meta, &record_mac)?;
        integrity::check_before_open(anchor.as_ref(), data)?;
        let audit = AuditLog::open(
            LogConfig::new(data.join(AUDIT_DIR), config.audit.origin.clone()),
            signer,
        )?;
        if let Err(e) = integrity::check_after_open(anchor.as_ref(), &audit, data) {
            audit.close();
            return Err(e);
        }
        integrity::record_anchor(&meta, &record_mac, &audit)?;
        let profiles = load_profiles(&config)?;
        let shutdown =
            ShutdownController::new(Duration::from_secs(config.limits.shutdown_grace_secs));
        let inv = &config.invitations;
        let invitations = Invitations::open(
            &db,
            audit.clone(),
            invitations::Settings {
                activation_base_url: inv.activation_base_url.clone(),
                service_display_name: inv.service_display_name.clone(),
                default_valid_for: Duration::from_secs(inv.default_valid_for_secs),
                provider_name: config.platform.provider_name.clone(),
                server_name: config.platform.server_name.clone(),
                profiles: profiles.clone(),
                token_key: inv.token_key.clone(),
                record_mac: record_mac.clone(),
            },
        )?;
        let auth = Authenticator::new(&config.auth, config.tls.client_ca.is_some())?;
        let entra = entra_client(&config)?;
        // One lifetime for every secret Onboard adds: the onboarding's first one as well as
        // day-two ones (a tenant policy capping lifetimes refuses longer ones).
        let secret_lifetime = match config.credentials.secret_lifetime_days {
            0 => None,
            d => Some(time::Duration::days(i64::from(d))),
        };
        let mut engine_config = EngineConfig::new(
            entra.clone(),
            audit.clone(),
            db.open_tree(PROVISION_TREE)?,
            key.clone(),
            config.platform.server_name.clone(),
            config.platform.provider_name.clone(),
        )?;
        engine_config.profiles = profiles.clone();
        engine_config.secret_lifetime = secret_lifetime;
        engine_config.shutdown = shutdown.handle();
        engine_config.token_app_client_id = Some(config.entra.token_app_client_id.clone());
        engine_config.record_mac = Some(record_mac.clone());
        let wait = config.limits.hand_off_wait_secs;
        engine_config.hand_off_for = (wait > 0).then(|| std::time::Duration::from_secs(wait));
        engine_config.consent_redirect_uri =
            crate::wizard::consent_redirect_uri(&inv.activation_base_url);
        let engine = Engine::new(engine_config)?;
        let mut ccfg = CredentialsConfig::new(
            entra.clone(),
            audit.clone(),
            db.open_tree(CREDENTIALS_TREE)?,
            key,
        )?;
        ccfg.secret_lifetime = secret_lifetime;
        ccfg.shutdown = shutdown.handle();
        ccfg.self_rotation_wait =
            std::time::Duration::from_secs(config.credentials.self_rotation_wait_secs);
        ccfg.record_mac = Some(record_mac.clone());
        let credentials = Credentials::new(ccfg)?;
        let targets = RegistryTargets::new(
            credentials.clone(),
            Arc::new(engine.clone()),
            target_settings(&config)?,
        );
        let drift = Arc::new(verifier::DriftMonitor::new(
            verifier::Verifier::new(entra.clone()),
            Arc::new(targets),
            audit.clone(),
            verifier::DriftStore::new(db.open_tree(DRIFT_TREE)?),
            verifier::MonitorConfig {
                repair_profiles: config.verification.repair_profiles.clone(),
                actor: DRIFT_ACTOR.into(),
            },
        ));
        crate::storage::tighten(data)?;
        Ok(Self {
            inner: Arc::new(Inner {
                _durable: durable,
                db: db.clone(),
                meta,
                record_mac,
                guards: Arc::new(crate::limits::Guards::new(config.limits.clone())),
                config,
                auth,
                audit,
                invitations,
                entra,
                engine,
                profiles,
                credentials,
                links: db.open_tree(LINKS_TREE)?,
                links_flush: Default::default(),
                drift,
                shutdown,
                started: tokio::sync::watch::Sender::new(false),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The limits in force (`[limits]`).
    pub fn guards(&self) -> &Arc<crate::limits::Guards> {
        &self.inner.guards
    }

    /// Caller checks.
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// The invitation manager (also the onboarding service's capability check).
    pub fn invitations(&self) -> &Invitations {
        &self.inner.invitations
    }

    /// The Entra client (device code sign-ins).
    pub fn entra(&self) -> &EntraClient {
        &self.inner.entra
    }

    /// The onboarding engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The provisioning profiles in force.
    pub fn profiles(&self) -> &ProfileSet {
        &self.inner.profiles
    }

    /// The day-two credential manager: managed registrations (`find`, `find_by_service`,
    /// `current_secret`), admin sessions (`store_admin_session`), rotations.
    pub fn credentials(&self) -> &Credentials {
        &self.inner.credentials
    }

    /// Onboarding id → invitation id.
    pub fn onboarding_links(&self) -> &sled::Tree {
        &self.inner.links
    }

    /// Waits until everything written to [`App::onboarding_links`] is durable, sharing the
    /// flush with concurrent writers.
    pub async fn flush_onboarding_links(&self) -> Result<()> {
        Ok(self.inner.links_flush.flush(&self.inner.links).await?)
    }

    /// Verification and drift: the verifier, its target source and scheduled runs.
    pub fn drift(&self) -> &Arc<verifier::DriftMonitor> {
        &self.inner.drift
    }

    /// A handle on the shutdown signal, for streams and background work.
    pub fn shutdown(&self) -> Shutdown {
        self.inner.shutdown.handle()
    }

    /// Marks the start-up work done (`serve`, just before it accepts calls).
    pub(crate) fn mark_started(&self) {
        self.inner.started.send_replace(true);
    }

    /// Completes once `serve` has done its start-up work (records migrated, generated keys
    /// moved out, onboardings resumed) and accepts calls; at once if it has.
    pub async fn started(&self) {
        let mut started = self.inner.started.subscribe();
        // The sender lives in `inner`, which this handle keeps alive: the wait cannot end in
        // an error.
        let _ = started.wait_for(|s| *s).await;
    }

    /// Begins the shutdown: streams end, no new change starts, background loops stop.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.begin();
    }

    /// Begins the shutdown (if not yet) and waits for tracked work (onboarding runs,
    /// rotations, scheduled verification) to finish, each within the grace.
    pub async fn finish_shutdown(&self) {
        if !self.inner.shutdown.wait().await {
            tracing::warn!("background work still running after the shutdown grace");
        }
    }

    /// Stops the audit log's writer after it has answered everything queued, then records
    /// the log's final size and root in the state store (`crate::integrity`).
    pub fn close(&self) {
        self.inner.audit.clone().close();
        if let Err(e) = self.record_anchor() {
            tracing::error!(error = %e, "recording the audit anchor at close failed");
        }
    }

    /// Records the audit log's current signed size and root in the state store, durably.
    pub fn record_anchor(&self) -> Result<()> {
        integrity::record_anchor(&self.inner.meta, &self.inner.record_mac, &self.inner.audit)
    }

    /// The state database.
    pub fn state_db(&self) -> &sled::Db {
        &self.inner.db
    }

    /// The MAC of state records (one instance: the migration switches legacy records off).
    pub fn record_mac(&self) -> &onboard_core::store::RecordMac {
        &self.inner.record_mac
    }
}

pub(crate) fn load_signer(path: &Path, origin: &str) -> Result<NoteSigner> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            ServerError::io(format!("reading the signing key {}", path.display()), e)
        })?);
    NoteSigner::from_key_file_text(&text, origin)
        .map_err(|e| ServerError::Config(format!("signing key {}: {e}", path.display())))
}

/// The Entra client the configuration describes (the emulator's URLs and CA in tests).
fn entra_client(config: &Config) -> Result<EntraClient> {
    let e = &config.entra;
    let mut c = EntraConfig::with_bases(e.authority_url.clone(), e.graph_url.clone());
    for path in &e.extra_trust_roots {
        let pem = std::fs::read(path)
            .map_err(|err| ServerError::io(format!("reading {}", path.display()), err))?;
        c = c.trust_pem(pem);
    }
    EntraClient::new(&c).map_err(|err| ServerError::Config(format!("entra: {err}")))
}

/// The key that seals secrets in the onboarding store: from the configured file, else generated
/// once and kept in the state database's metadata.
pub(crate) fn sealing_key(db: &sled::Db, config: &Config) -> Result<Zeroizing<[u8; 32]>> {
    if let Some(path) = &config.storage.sealing_key {
        let bytes = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?,
        );
        return onboard_core::key_file::parse(&bytes).ok_or_else(|| {
            ServerError::Config(format!(
                "{}: a sealing key is 32 raw bytes or 64 hex digits",
                path.display()
            ))
        });
    }
    // Kept next to what it seals: a copy of the data directory opens every stored secret.
    tracing::warn!(
        "storage.sealing_key is not set: the sealing key is kept in the state store, so a copy \
         of the data directory can open the stored client secrets and admin sessions; move it \
         to a key file with `onboard keys export` (docs/operations.md, \"Keys: backup and \
         rotation\")"
    );
    let meta = db.open_tree("meta")?;
    let mut key = Zeroizing::new([0u8; 32]);
    match meta.get(SEALING_KEY_META)? {
        Some(v) if v.len() == 32 => key.copy_from_slice(&v),
        Some(_) => {
            return Err(ServerError::Config(
                "the stored sealing key is not 32 bytes".into(),
            ));
        }
        None => {
            getrandom::fill(key.as_mut())
                .map_err(|e| ServerError::Internal(format!("no system randomness: {e}")))?;
            meta.insert(SEALING_KEY_META, key.as_slice())?;
            onboard_core::store::flush_durably_blocking(&meta)?;
        }
    }
    Ok(key)
}

/// Verification's settings: the platform endpoints (CA files read now; an unreadable file is a
/// configuration error), the expiry horizons and the temporary app's name.
fn target_settings(config: &Config) -> Result<TargetSettings> {
    let mut platform: HashMap<String, Vec<PlatformEndpoint>> = HashMap::new();
    for s in &config.platform.services {
        let ca_pem = match &s.ca {
            Some(p) => Some(
                std::fs::read(p)
                    .map_err(|e| ServerError::io(format!("reading {}", p.display()), e))?,
            ),
            None => None,
        };
        let probe = match (&s.grpc_health, &s.http_probe) {
            (Some(url), _) => Probe::GrpcHealth {
                url: url.clone(),
                service: s.id.clone(),
            },
            (None, Some(url)) => Probe::HttpJson { url: url.clone() },
            (None, None) => continue,
        };
        platform
            .entry(s.id.clone())
            .or_default()
            .push(PlatformEndpoint {
                probe,
                ca_pem,
                timeout: Duration::from_millis(s.timeout_ms),
            });
    }
    let day = 86_400;
    Ok(TargetSettings {
        platform,
        horizon: Duration::from_secs(u64::from(config.credentials.expiry_horizon_days) * day),
        critical: Duration::from_secs(config.verification.critical_days * day),
        temporary_app_name: config.platform.token_app_name(),
        temporary_app_client_id: config.entra.token_app_client_id.clone(),
    })
}

/// The profiles file named by `platform.profiles_path`, or the shipped profiles.
fn load_profiles(config: &Config) -> Result<ProfileSet> {
    match &config.platform.profiles_path {
        None => Ok(ProfileSet::defaults()?),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?;
            ProfileSet::from_toml(&text)
                .map_err(|e| ServerError::Config(format!("profiles file {}: {e}", path.display())))
        }
    }
}
