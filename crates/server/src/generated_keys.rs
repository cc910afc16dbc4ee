//! Keys the server generated into its state store, and their way out.
//!
//! With `[storage] sealing_key` or `[invitations] token_key` unset (release 0.1's example
//! configuration, `demo`, trials), the server generates the key at its first start and keeps
//! it in the state store's `meta` tree, next to what it protects. `onboard keys export` (the
//! server stopped) writes such a key to a file, unchanged; once the configuration names that
//! file, the next start removes the stored copy, audited as `store.move_key` (intent, then the
//! removal made durable, then the outcome). Nothing is re-sealed: the key stays the same.
//!
//! A key file other than the stored key is refused at start-up ([`check_files`]): a sealing
//! key would open nothing the store holds, and a token key would end every invitation issued
//! while the removal took the generated key's only copy. Before removing a copy the start
//! makes the file durable and reads it again.

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
    for (_, file) in wanted {
        outside(data, file)?;
    }
    let store = data.join(crate::STATE_DIR);
    // A running server holds the store: said as such, not as sled's lock error; and a data
    // directory without a store (a wrong path) is not given an empty one.
    if crate::storage::hold_if_free(&store, "")?.is_none() {
        return Err(ServerError::FailedPrecondition(format!(
            "no state store at {}: check storage.data_dir",
            store.display()
        )));
    }
    let db = crate::storage::open_state(&store)?;
    let meta = db.open_tree(META_TREE)?;
    let mut keys = Vec::new();
    for (key, file) in wanted {
        let Some(stored) = meta.get(key.meta_key())? else {
            return Err(ServerError::FailedPrecondition(format!(
                "{} holds no generated {}: nothing to export (a key file is used, or this store never generated one)",
                store.display(),
                key.config_key()
            )));
        };
        let bytes: Zeroizing<[u8; 32]> =
            Zeroizing::new(stored.as_ref().try_into().map_err(|_| {
                ServerError::Internal(format!("the stored {} is not 32 bytes", key.config_key()))
            })?);
        keys.push((*key, file, bytes));
    }
    drop(meta);
    drop(db);
    let mut said = Vec::new();
    for (key, file, bytes) in keys {
        write_new_key_file(file, &bytes)?;
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

/// Refuses a key file at `file` inside `data` (symbolic links and `..` resolved through the
/// directories that exist): a key file lives apart from what it protects.
fn outside(data: &Path, file: &Path) -> Result<()> {
    let resolve = |p: &Path| -> PathBuf {
        // The deepest existing ancestor, resolved, with the rest appended.
        let mut rest = Vec::new();
        let mut at = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        loop {
            if let Ok(real) = at.canonicalize() {
                return rest
                    .iter()
                    .rev()
                    .fold(real, |acc: PathBuf, part| acc.join(part));
            }
            match (at.file_name().map(ToOwned::to_owned), at.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    at = parent.to_path_buf();
                }
                _ => return at,
            }
        }
    };
    if resolve(file).starts_with(resolve(data)) {
        return Err(ServerError::invalid(
            "file",
            format!(
                "{} is inside storage.data_dir: a key file lives apart from what it protects",
                file.display()
            ),
        ));
    }
    Ok(())
}

/// Writes `key` as 64 hex digits and a newline to a new key file at `path`
/// ([`onboard_core::key_file::write_new`]).
fn write_new_key_file(path: &Path, key: &[u8; 32]) -> Result<()> {
    let mut text = Zeroizing::new([b'\n'; 65]);
    hex::encode_to_slice(key, &mut text[..64])
        .map_err(|e| ServerError::Internal(format!("hex: {e}")))?;
    onboard_core::key_file::write_new(path, text.as_slice())
        .map_err(|e| ServerError::io(format!("writing {}", path.display()), e))
}

/// The key in the key file at `path`, read as the server reads key files
/// ([`onboard_core::key_file::parse`]); with `durable`, the file and its directory entry are
/// synced first.
fn file_key(path: &Path, durable: bool) -> Result<Zeroizing<[u8; 32]>> {
    let io = |what: &str, e| ServerError::io(format!("{what} {}", path.display()), e);
    if durable {
        let f = std::fs::File::open(path).map_err(|e| io("opening", e))?;
        f.sync_all().map_err(|e| io("syncing", e))?;
        onboard_core::key_file::sync_dir_of(path).map_err(|e| io("syncing the directory of", e))?;
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| io("reading", e))?);
    onboard_core::key_file::parse(&bytes).ok_or_else(|| {
        ServerError::Config(format!(
            "{}: a key is 32 raw bytes or 64 hex digits",
            path.display()
        ))
    })
}

/// At start-up, before anything reads the store: refuses a configured key file that is not
/// the key the store generated and keeps. A sealing key would open nothing the store holds; a
/// token key would end every invitation issued while the start removed the generated key's
/// only copy (replacing it is done once the generated one is moved out).
pub(crate) fn check_files(db: &sled::Db, config: &Config) -> Result<()> {
    let meta = db.open_tree(META_TREE)?;
    for key in GeneratedKey::ALL {
        let Some(path) = key.configured(config) else {
            continue;
        };
        let Some(stored) = meta.get(key.meta_key())? else {
            continue;
        };
        // An unreadable file is left to the loader that reads it next, in its own words.
        let Ok(read) = file_key(path, false) else {
            continue;
        };
        if read.as_slice() != stored.as_ref() {
            return Err(ServerError::Config(match key {
                GeneratedKey::Sealing => format!(
                    "storage.sealing_key: {} is not the key this state store was sealed with (a generated one is kept in it): set the file `onboard keys export --sealing-key` wrote, or unset storage.sealing_key",
                    path.display()
                ),
                GeneratedKey::InvitationToken => format!(
                    "invitations.token_key: {} is not the invitation token key this state store generated (it is kept in the store): set the file `onboard keys export --token-key` wrote, start once, then replace the key if you mean to (invitations issued before stop working)",
                    path.display()
                ),
            }));
        }
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
        let Some(stored) = meta.get(key.meta_key())? else {
            continue;
        };
        // The file is durable, and holds the stored key, before the only other copy goes (the
        // start checked the key it read; the file may have changed since).
        if file_key(file, true)?.as_slice() != stored.as_ref() {
            return Err(ServerError::Config(format!(
                "{}: {} no longer holds the key the state store keeps; the stored copy stays",
                key.config_key(),
                file.display()
            )));
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
