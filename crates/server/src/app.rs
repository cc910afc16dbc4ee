//! The shared state every service works on: configuration, callers, the audit log and the
//! invitation store. Opening it opens everything; clones are cheap handles.

use std::path::Path;
use std::sync::Arc;

use audit_log::{AuditLog, LogConfig, NoteSigner};
use zeroize::Zeroizing;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::error::{Result, ServerError};
use crate::invitations::Invitations;

/// The audit log's sled directory inside the data directory (the log owns it alone).
pub const AUDIT_DIR: &str = "audit";
/// Our own state's sled directory inside the data directory.
pub const STATE_DIR: &str = "state";

/// Everything the services share.
#[derive(Clone)]
pub struct App {
    /// One allocation shared by every service and connection.
    inner: Arc<Inner>,
}

/// What [`App`] holds.
struct Inner {
    /// The configuration it was opened with (TLS paths, defaults).
    config: Config,
    /// Caller identification and role checks.
    auth: Authenticator,
    /// The signed audit log; every change and every audit read is recorded here first.
    audit: AuditLog,
    /// Invitations and their tokens' hashes.
    invitations: Invitations,
    /// Set to true when the server begins shutting down, so long-lived streams (Follow) end
    /// and graceful shutdown, which waits for every open call, can finish.
    closing: tokio::sync::watch::Sender<bool>,
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
        let signer = load_signer(&config.audit.signing_key, &config.audit.origin)?;
        let data = &config.storage.data_dir;
        std::fs::create_dir_all(data)
            .map_err(|e| ServerError::io(format!("creating {}", data.display()), e))?;
        let audit = AuditLog::open(
            LogConfig::new(data.join(AUDIT_DIR), config.audit.origin.clone()),
            signer,
        )?;
        let db = sled::open(data.join(STATE_DIR))?;
        let invitations = Invitations::open(&db, audit.clone(), &config)?;
        let auth = Authenticator::new(&config.auth)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                auth,
                audit,
                invitations,
                closing: tokio::sync::watch::Sender::new(false),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
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

    /// A receiver that turns true when the server begins shutting down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Tells long-lived streams to end.
    pub fn begin_shutdown(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Stops the audit log's writer after it has answered everything queued.
    pub fn close(&self) {
        self.inner.audit.clone().close();
    }
}

fn load_signer(path: &Path, origin: &str) -> Result<NoteSigner> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            ServerError::io(format!("reading the signing key {}", path.display()), e)
        })?);
    NoteSigner::from_key_file_text(&text, origin)
        .map_err(|e| ServerError::Config(format!("signing key {}: {e}", path.display())))
}
