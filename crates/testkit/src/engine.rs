//! The provisioning engine over the emulator, a temporary audit log and a sled store: a signed-in
//! admin (device code driven through the emulator) and a completed onboarding with its secret.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use audit_log::AuditLog;
use entra_client::EntraClient;
use entra_sim::Faults;
use onboard_core::{Hook, HookAction, ShutdownController};
use provision::{
    Admin, Completion, Engine, EngineConfig, Event, EventKind, EventStream, ProvisionRequest,
    StepHook,
};
use secrecy::SecretString;
use serde_json::Value;
use tokio_stream::StreamExt;

use crate::keys::SEALING_KEY;
use crate::sim::{SimEnv, users};

/// The actor of onboardings started through [`EngineEnv::request`].
pub const PORTAL: &str = "spiffe://platform.test/portal";

/// Opens the audit log in `dir/audit` with the fixed test key.
pub fn open_audit(dir: &Path) -> Result<AuditLog> {
    Ok(crate::audit::open_log(&dir.join("audit"))?)
}

/// The engine configuration tests use: the fixed sealing key, server `Sandbox1`, provider
/// `sp2` (so the temporary app is `Sandbox1-sp2-token`), 180-day secrets, and `hook`.
pub fn engine_config(
    client: &EntraClient,
    audit: &AuditLog,
    db: &sled::Db,
    token_app_client_id: &str,
    hook: Option<StepHook>,
) -> Result<EngineConfig> {
    let mut cfg = EngineConfig::new(
        client.clone(),
        audit.clone(),
        db.open_tree("provision")?,
        SEALING_KEY,
        "Sandbox1",
        "sp2",
    )?;
    cfg.hook = hook;
    cfg.token_app_client_id = Some(token_app_client_id.to_owned());
    cfg.secret_lifetime = Some(time::Duration::days(180));
    Ok(cfg)
}

/// Opens the sled store at `path`, waiting out the file lock a dropped handle's background
/// flusher may hold for a moment.
async fn reopen_sled(path: &Path) -> Result<sled::Db> {
    let what = format!("sled at {} to open", path.display());
    crate::wait::until(&what, Duration::from_secs(30), async || {
        Ok(match sled::open(path) {
            Ok(db) => std::ops::ControlFlow::Break(db),
            Err(e) => std::ops::ControlFlow::Continue(e.to_string()),
        })
    })
    .await
}

/// The emulator, its client, an audit log and a store in a temporary directory, and an engine
/// over them. Derefs to [`SimEnv`] (`env.sim`, `env.info`, `env.client`, `env.sign_in(…)`).
pub struct EngineEnv {
    /// The emulator and its client.
    pub entra: SimEnv,
    /// Holds the audit log (`audit/`) and the store (`state/`).
    pub dir: tempfile::TempDir,
    /// The audit log.
    pub audit: AuditLog,
    /// The store the engine's tree lives in.
    pub db: sled::Db,
    /// The engine under test.
    pub engine: Engine,
    /// Stops the engine's runs as the server's shutdown would.
    pub shutdown: ShutdownController,
    /// The test's changes to [`engine_config`], made again when the engine restarts.
    configure: Configure,
}

/// Changes a test makes to the engine configuration ([`EngineEnv::start_configured`]).
pub type Configure = fn(&mut EngineConfig);

impl Deref for EngineEnv {
    type Target = SimEnv;
    fn deref(&self) -> &SimEnv {
        &self.entra
    }
}

/// A completed onboarding.
pub struct Onboarded {
    /// The onboarding's id.
    pub onboarding_id: String,
    /// The customer tenant.
    pub tenant_id: String,
    /// The new registration's client id.
    pub client_id: String,
    /// Its service principal's object id.
    pub sp_id: String,
    /// The key id of its secret.
    pub key_id: String,
    /// The secret, from the live Completed event.
    pub secret: SecretString,
    /// The secret's expiry (RFC 3339).
    pub expires: Option<String>,
    /// The signed-in Global Administrator's delegated token (reads and changes grants).
    pub admin_token: SecretString,
    /// Every event of the run, ending with Completed.
    pub events: Vec<Event>,
    /// The provider's token app (the temporary enterprise app's `appId`).
    pub token_app_client_id: String,
}

impl EngineEnv {
    /// Starts the emulator with `faults` and an engine with `hook`.
    pub async fn start(faults: Faults, hook: Option<StepHook>) -> Result<Self> {
        Self::start_configured(faults, hook, |_| {}).await
    }

    /// [`EngineEnv::start`] with `configure` applied to the engine's configuration.
    pub async fn start_configured(
        faults: Faults,
        hook: Option<StepHook>,
        configure: Configure,
    ) -> Result<Self> {
        let entra = SimEnv::start(faults).await?;
        let dir = tempfile::tempdir()?;
        let audit = open_audit(dir.path())?;
        let db = sled::open(dir.path().join("state"))?;
        Self::assemble(entra, dir, audit, db, hook, configure)
    }

    /// An engine (with a fresh shutdown signal) over `audit` and `db`.
    fn assemble(
        entra: SimEnv,
        dir: tempfile::TempDir,
        audit: AuditLog,
        db: sled::Db,
        hook: Option<StepHook>,
        configure: Configure,
    ) -> Result<Self> {
        let shutdown = ShutdownController::default();
        let mut cfg = engine_config(
            &entra.client,
            &audit,
            &db,
            &entra.info.token_app_client_id,
            hook,
        )?;
        cfg.shutdown = shutdown.handle();
        configure(&mut cfg);
        let engine = Engine::new(cfg)?;
        Ok(Self {
            entra,
            dir,
            audit,
            db,
            engine,
            shutdown,
            configure,
        })
    }

    /// A process exit and a restart: the engine's runs stopped, the engine dropped, the audit
    /// log and the store closed, then both reopened from the same directories under a new
    /// engine with `hook` (nothing resumed yet). The emulator keeps running.
    pub async fn restart(self, hook: Option<StepHook>) -> Result<Self> {
        self.shutdown.wait().await;
        drop(self.engine);
        self.audit.close();
        drop(self.db);
        let audit = open_audit(self.dir.path())?;
        let db = reopen_sled(&self.dir.path().join("state")).await?;
        Self::assemble(self.entra, self.dir, audit, db, hook, self.configure)
    }

    /// A calm emulator and an engine with onboarding `id` (app `name`) completed.
    pub async fn with_onboarding(id: &str, name: &str) -> Result<(Self, Onboarded)> {
        let env = Self::start(crate::sim::calm(), None).await?;
        let done = env.onboarded(id, name).await?;
        Ok((env, done))
    }

    /// A provisioning request for onboarding `id` (service `svc-<id>`, app `name`, profile
    /// `direct-routing`, actor [`PORTAL`]).
    pub fn request(&self, id: &str, name: &str) -> ProvisionRequest {
        ProvisionRequest {
            onboarding_id: id.into(),
            service_id: format!("svc-{id}"),
            app_name: name.into(),
            profile: "direct-routing".into(),
            platform_version: None,
            actor: PORTAL.into(),
        }
    }

    /// Provisions `req` as `admin` and reads its events to the end of the stream.
    pub async fn run(&self, req: ProvisionRequest, admin: Admin) -> Result<Vec<Event>> {
        collect(self.engine.provision(req, admin).await?, 240).await
    }

    /// Onboarding `id` with app `name` ([`EngineEnv::request`]) provisioned as `admin`: every
    /// event, the last within a minute.
    pub async fn provision(&self, id: &str, name: &str, admin: Admin) -> Result<Vec<Event>> {
        let stream = self.engine.provision(self.request(id, name), admin).await?;
        collect(stream, 60).await
    }

    /// `nick` signed in by device code and checked by the engine.
    pub async fn signed_in(&self, nick: &str) -> Result<Admin> {
        let tokens = self.sign_in(nick).await?;
        Ok(self.engine.sign_in(&tokens, &self.upn(nick), None).await?)
    }

    /// Onboarding `id` with app `name` ([`EngineEnv::request`]), run to completion by the
    /// Global Administrator.
    pub async fn onboarded(&self, id: &str, name: &str) -> Result<Onboarded> {
        self.onboard(self.request(id, name)).await
    }

    /// `req` run to completion by the Global Administrator.
    pub async fn onboard(&self, req: ProvisionRequest) -> Result<Onboarded> {
        let tokens = self.sign_in(users::GLOBAL_ADMIN).await?;
        let admin_token = tokens.access_token.clone();
        let admin = self
            .engine
            .sign_in(&tokens, &self.upn(users::GLOBAL_ADMIN), None)
            .await?;
        let onboarding_id = req.onboarding_id.clone();
        let events = self.run(req, admin).await?;
        let c = completion(&events)?.clone();
        let record = self.engine.get(&onboarding_id)?.context("record")?;
        Ok(Onboarded {
            onboarding_id,
            tenant_id: c.tenant_id,
            client_id: c.client_id,
            sp_id: record.sp_id.context("sp id")?,
            key_id: c.key_id,
            secret: c.secret.context("the live Completed carries the secret")?,
            expires: c.expires,
            admin_token,
            events,
            token_app_client_id: self.info.token_app_client_id.clone(),
        })
    }

    /// The audit entries of onboarding `id`, parsed, in log order.
    pub fn audit_entries(&self, id: &str) -> Result<Vec<Value>> {
        crate::audit::entries_of(&self.audit, id)
    }
}

/// Reads an event stream to its end, failing after `secs`.
pub async fn collect(mut s: EventStream, secs: u64) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, s.next()).await {
            Ok(Some(e)) => out.push(e),
            Ok(None) => return Ok(out),
            Err(_) => bail!("stream did not end within {secs}s; got {out:#?}"),
        }
    }
}

/// The Completed event that ends `events`.
pub fn completion(events: &[Event]) -> Result<&Completion> {
    match events.last().map(|e| &e.kind) {
        Some(EventKind::Completed(c)) => Ok(c),
        other => bail!("last event is not Completed: {other:?}\nall: {events:#?}"),
    }
}

/// Checks the last of `events` is `Aborted`.
pub fn aborted(events: &[Event]) -> Result<()> {
    match events.last().map(|e| &e.kind) {
        Some(EventKind::Aborted { .. }) => Ok(()),
        other => bail!("last event is not Aborted: {other:?}\nall: {events:#?}"),
    }
}

/// A hook (engine steps or credential rotations) that answers `action` the first time it is
/// called at `point`, and `Continue` everywhere else: a crash or failure at one point, once.
pub fn hook_once(point: &'static str, action: HookAction) -> Hook {
    let fired = Arc::new(AtomicBool::new(false));
    Arc::new(move |_id: &str, p: &str| {
        if p == point && !fired.swap(true, Ordering::SeqCst) {
            action
        } else {
            HookAction::Continue
        }
    })
}
