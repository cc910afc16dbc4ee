//! Keys the server generated into its state store, and their way out.
//!
//! With `[storage] sealing_key` or `[invitations] token_key` unset (release 0.1's example
//! configuration, `demo`, trials), the server generates the key at its first start and keeps
//! it in the state store's `meta` tree, next to what it protects. `onboard keys export` (the
//! server stopped) writes such a key to a file, unchanged; once the configuration names that
//! file, the next start removes the stored copy, audited as `store.move_key` (intent, then the
//! removal made durable, then the outcome). Nothing is re-sealed: the key stays the same.
//!
//! A sealing key file other than the stored key is refused at start-up
//! ([`crate::app::sealing_key`]): it would open nothing the store holds. A token key file other
//! than the stored one is a rotation (docs/operations.md, "Keys: backup and rotation"):
//! invitations issued before it stop working, and the stored key is removed all the same.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use onboard_core::audit::{Action, AuditEntry, Phase, Scope};
use zeroize::Zeroizing;

use crate::error::{Result, ServerError};
use crate::{App, Config};

/// The tree the generated keys are kept in.
const META_TREE: &str = "meta";
/// Who removes a stored key: the server at start-up, on the operator's configuration.
const ACTOR: &str = "onboard:start-up";

/// A key the server may generate into its state store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratedKey {
    /// `[storage] sealing_key`: seals client secrets and admin sessions, and MACs the records.
    Sealing,
    /// `[invitations] token_key`: MACs invitation tokens.
    InvitationToken,
}

impl GeneratedKey {
    /// Both, in the order they are exported and moved.
    pub const ALL: [GeneratedKey; 2] = [GeneratedKey::Sealing, GeneratedKey::InvitationToken];

    /// The configuration key that names its file.
    pub fn config_key(self) -> &'static str {
        match self {
            GeneratedKey::Sealing => "storage.sealing_key",
            GeneratedKey::InvitationToken => "invitations.token_key",
        }
    }

    /// Where the state store's `meta` tree keeps it.
    fn meta_key(self) -> &'static str {
        match self {
            GeneratedKey::Sealing => crate::app::SEALING_KEY_META,
            GeneratedKey::InvitationToken => invitations::TOKEN_KEY_META,
        }
    }

    /// The file `config` names for it, if any.
    fn configured(self, config: &Config) -> Option<&Path> {
        match self {
            GeneratedKey::Sealing => config.storage.sealing_key.as_deref(),
            GeneratedKey::InvitationToken => config.invitations.token_key.as_deref(),
        }
    }
}

/// `onboard keys export`: writes each generated key of `wanted` (key, file) from the state
/// store of `config` to its file (64 hex digits, mode 0600, made new, synced), and says what
/// was written. The server must be stopped (it holds the store); the store is not changed.
pub fn export(config: &Config, wanted: &[(GeneratedKey, PathBuf)]) -> Result<Vec<String>> {
    if wanted.is_empty() {
        return Err(ServerError::invalid(
            "key",
            "name a file for at least one key (--sealing-key, --token-key)",
        ));
    }
    let data = &config.storage.data_dir;
    let mut checked = Vec::new();
    for (key, file) in wanted {
        if let Some(set) = key.configured(config) {
            return Err(ServerError::FailedPrecondition(format!(
                "{} is set ({}): the server keeps no generated key of it to export",
                key.config_key(),
                set.display()
            )));
        }
        let absolute = std::path::absolute(file)
            .map_err(|e| ServerError::io(format!("resolving {}", file.display()), e))?;
        if absolute.starts_with(std::path::absolute(data).unwrap_or_else(|_| data.clone())) {
            return Err(ServerError::invalid(
                "file",
                format!(
                    "{} is inside storage.data_dir: a key file lives apart from what it protects",
                    file.display()
                ),
            ));
        }
        checked.push((*key, absolute));
    }
    let store = data.join(crate::STATE_DIR);
    // A running server holds the store: said as such, not as sled's lock error.
    drop(crate::storage::hold_if_free(&store, "")?);
    let db = crate::storage::open_state(&store)?;
    let meta = db.open_tree(META_TREE)?;
    let mut keys = Vec::new();
    for (key, file) in checked {
        let Some(stored) = meta.get(key.meta_key())? else {
            return Err(ServerError::FailedPrecondition(format!(
                "{} holds no generated {}: nothing to export",
                store.display(),
                key.config_key()
            )));
        };
        keys.push((key, file, Zeroizing::new(stored.to_vec())));
    }
    drop(meta);
    drop(db);
    let mut said = Vec::new();
    for (key, file, bytes) in keys {
        write_new_key_file(&file, &bytes)?;
        let (section, name) = key.config_key().split_once('.').unwrap_or_default();
        said.push(format!(
            "wrote the generated {} to {}; set `{name} = \"{}\"` under [{section}]: the next start removes the copy in the state store",
            key.config_key(),
            file.display(),
            file.display()
        ));
    }
    Ok(said)
}

/// Writes `key` as 64 hex digits to a new file at `path`, readable by its owner only, synced
/// with its directory entry.
fn write_new_key_file(path: &Path, key: &[u8]) -> Result<()> {
    let io = |what: &str, e| ServerError::io(format!("{what} {}", path.display()), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("creating", e))?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(key)));
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io("writing", e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing the directory of", e))?;
    }
    Ok(())
}

/// At start-up: removes each generated key the configuration now names a file for, audited
/// (`store.move_key` intent, the removal made durable, outcome). Nothing stored: nothing written.
pub(crate) async fn move_out(app: &App) -> Result<()> {
    let meta = app.state_db().open_tree(META_TREE)?;
    for key in GeneratedKey::ALL {
        let Some(file) = key.configured(app.config()) else {
            continue;
        };
        if meta.get(key.meta_key())?.is_none() {
            continue;
        }
        let mut entry = AuditEntry::new(Action::StoreMoveKey, Phase::Intent, &Scope::actor(ACTOR))
            .with_detail("key", key.config_key())
            .with_detail("file", file.display().to_string());
        entry.append(app.audit()).await?;
        // Once, at start-up, before serving: a blocking flush of its own is fine here.
        let removing = (meta.clone(), key.meta_key());
        let removed = tokio::task::spawn_blocking(move || -> Result<()> {
            let (meta, name) = removing;
            meta.remove(name)?;
            onboard_core::store::flush_durably_blocking(&meta)
                .map_err(|e| ServerError::Internal(e.to_string()))
        })
        .await
        .unwrap_or_else(|e| Err(ServerError::Internal(format!("key removal task: {e}"))));
        if let Err(e) = removed {
            entry.phase = Phase::Failed;
            let _ = entry.with_error(e.to_string()).append(app.audit()).await;
            return Err(e);
        }
        entry.phase = Phase::Succeeded;
        entry.append(app.audit()).await?;
        tracing::info!(
            key = key.config_key(),
            file = %file.display(),
            "the generated key kept in the state store was removed: the key file is used"
        );
    }
    Ok(())
}
