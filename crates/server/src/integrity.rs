//! Integrity across the two stores of a data directory: the audit log (`DATA_DIR/audit`) and
//! the state store (`DATA_DIR/state`).
//!
//! - **The anchor.** The state store records the audit log's latest signed size and root
//!   (`meta/audit_anchor`, MACed): at start-up, every few seconds while serving when the log
//!   grew, and when the log is closed. At start-up, before the log is opened, a recorded size
//!   above zero with the audit directory or its head note (`audit-head.note`) missing is
//!   refused; after it is opened, a log shorter than recorded, or whose root at the recorded
//!   size differs, is refused. Each refusal names what was found and the recovery: restore
//!   `DATA_DIR/audit` from the backup taken with the state store, or accept the loss with
//!   `onboard audit reanchor --config FILE --reason TEXT` ([`reanchor`], itself an audit entry,
//!   `store.reanchor`). The anchor trails the log by up to [`ANCHOR_EVERY`] after a crash, never
//!   leads it (it is written from sizes the log has made durable).
//! - **Record MACs.** State records carry a MAC keyed from the sealing key
//!   (`onboard_core::store::RecordMac`); a record that fails it is refused, never used. A data
//!   directory written by release 0.1 has records without one: they are readable until
//!   [`migrate_records`] (run by `serve` before it answers anything) gives each one a MAC, in an
//!   audited `store.migrate` step, and marks the directory migrated; from then on a record
//!   without a MAC is refused like a corrupted one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use audit_log::AuditLog;
use onboard_core::audit::{Action, AuditEntry, Phase, Scope};
use onboard_core::store::{RecordMac, flush_durably_blocking, legacy_records, seal_legacy_records};
use serde::{Deserialize, Serialize};

use crate::App;
use crate::error::{Result, ServerError};

/// The state store's metadata tree.
pub(crate) const META_TREE: &str = "meta";
/// The anchor's key in it.
const ANCHOR_KEY: &str = "audit_anchor";
/// Set once every record carries a MAC (the directory is migrated, or was made by this release).
const MIGRATED_KEY: &str = "record_mac_v1";
/// The audit log's head note, beside its sled files.
const HEAD_NOTE: &str = "audit-head.note";
/// How often a serving process records the anchor when the log grew.
pub(crate) const ANCHOR_EVERY: Duration = Duration::from_secs(2);
/// The trees whose records carry MACs, by the name they are MACed under.
pub(crate) const MAC_TREES: &[&str] = &[
    "provision",
    "credentials",
    "invitations",
    "invitation_tokens",
    "onboarding_invitations",
];
/// The audit actor of the migration.
const ACTOR: &str = "onboard:start-up";

/// What the state store last saw of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Anchor {
    /// The signed size.
    size: u64,
    /// The root at that size, hex.
    root: String,
}

fn recovery(data: &Path) -> String {
    format!(
        "restore {audit} (with {audit}/{HEAD_NOTE}) from the backup taken together with {state}; if the audit log is lost for good, accept it as it is with `onboard audit reanchor --config <the server's config file> --reason \"…\"` (recorded in the audit log)",
        audit = data.join(crate::AUDIT_DIR).display(),
        state = data.join(crate::STATE_DIR).display(),
    )
}

/// The recorded anchor, if any.
pub(crate) fn read_anchor(meta: &sled::Tree, mac: &RecordMac) -> Result<Option<Anchor>> {
    let Some(stored) = meta.get(ANCHOR_KEY)? else {
        return Ok(None);
    };
    let json = mac
        .open(META_TREE, ANCHOR_KEY.as_bytes(), &stored)
        .map_err(|e| ServerError::Config(e.to_string()))?;
    serde_json::from_slice(json)
        .map(Some)
        .map_err(|e| ServerError::Config(format!("the recorded audit anchor is unreadable: {e}")))
}

/// Before the audit log is opened (opening would create an empty one): refuses a missing audit
/// directory or head note when the state store recorded entries.
pub(crate) fn check_before_open(anchor: Option<&Anchor>, data: &Path) -> Result<()> {
    let Some(a) = anchor.filter(|a| a.size > 0) else {
        return Ok(());
    };
    let audit = data.join(crate::AUDIT_DIR);
    let missing = if !audit.join("db").exists() {
        format!("{} is missing", audit.display())
    } else if !audit.join(HEAD_NOTE).exists() {
        format!("its head note {} is gone", audit.join(HEAD_NOTE).display())
    } else {
        return Ok(());
    };
    Err(ServerError::Config(format!(
        "the state store records an audit log of {} entries (root {}), but {missing}; refusing to start: {}",
        a.size,
        a.root,
        recovery(data)
    )))
}

/// After the audit log is opened: refuses a log shorter than recorded, or one whose root at the
/// recorded size differs.
pub(crate) fn check_after_open(
    anchor: Option<&Anchor>,
    audit: &AuditLog,
    data: &Path,
) -> Result<()> {
    let Some(a) = anchor else { return Ok(()) };
    let size = audit.size();
    if size < a.size {
        return Err(ServerError::Config(format!(
            "the audit log holds {size} entries but the state store recorded {} (root {}): the log is shorter than it was; refusing to start: {}",
            a.size,
            a.root,
            recovery(data)
        )));
    }
    let root = hex::encode(audit.root_at(a.size)?);
    if root != a.root {
        return Err(ServerError::Config(format!(
            "the audit log's root at size {} is {root} but the state store recorded {}: this is not the log the state store was written with; refusing to start: {}",
            a.size,
            a.root,
            recovery(data)
        )));
    }
    Ok(())
}

/// Records the log's current signed size and root, durably.
pub(crate) fn record_anchor(meta: &sled::Tree, mac: &RecordMac, audit: &AuditLog) -> Result<()> {
    let cp = audit.checkpoint();
    let anchor = Anchor {
        size: cp.checkpoint.size,
        root: hex::encode(cp.checkpoint.root),
    };
    let json = serde_json::to_vec(&anchor)
        .map_err(|e| ServerError::Internal(format!("encoding the anchor: {e}")))?;
    meta.insert(
        ANCHOR_KEY,
        mac.seal(META_TREE, ANCHOR_KEY.as_bytes(), &json),
    )?;
    flush_durably_blocking(meta).map_err(|e| ServerError::Internal(e.to_string()))
}

/// Whether the state store's records all carry MACs (or it was just created).
pub(crate) fn migrated(meta: &sled::Tree, fresh: bool) -> Result<bool> {
    if fresh {
        meta.insert(MIGRATED_KEY, b"1".as_slice())?;
        flush_durably_blocking(meta).map_err(|e| ServerError::Internal(e.to_string()))?;
        return Ok(true);
    }
    Ok(meta.get(MIGRATED_KEY)?.is_some())
}

/// Gives every record without a MAC one (release 0.1's data directory), audited: a
/// `store.migrate` intent with the counts per tree, the rewrite, the outcome. Then records
/// without a MAC are refused. Nothing to do (the usual case) writes nothing.
pub async fn migrate_records(app: &App) -> Result<usize> {
    let mac = app.record_mac().clone();
    if !mac.legacy_allowed() {
        return Ok(0);
    }
    let db = app.state_db().clone();
    let mut counts = BTreeMap::new();
    for name in MAC_TREES {
        let n = legacy_records(&db.open_tree(name)?)
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        if n > 0 {
            counts.insert((*name).to_owned(), n);
        }
    }
    let total: usize = counts.values().sum();
    let mut entry = AuditEntry::new(Action::StoreMigrate, Phase::Intent, &Scope::actor(ACTOR))
        .with_detail("records", serde_json::to_value(&counts).unwrap_or_default());
    if total > 0 {
        entry.append(app.audit()).await?;
    }
    let sealed = {
        let (db, mac) = (db.clone(), mac.clone());
        tokio::task::spawn_blocking(move || -> Result<usize> {
            let mut n = 0;
            for name in MAC_TREES {
                n += seal_legacy_records(&db.open_tree(name)?, name, &mac)
                    .map_err(|e| ServerError::Internal(e.to_string()))?;
            }
            let meta = db.open_tree(META_TREE)?;
            meta.insert(MIGRATED_KEY, b"1".as_slice())?;
            flush_durably_blocking(&meta).map_err(|e| ServerError::Internal(e.to_string()))?;
            Ok(n)
        })
        .await
        .map_err(|e| ServerError::Internal(format!("migration task: {e}")))?
    };
    match sealed {
        Ok(n) => {
            mac.allow_legacy(false);
            if total > 0 {
                entry.phase = Phase::Succeeded;
                entry.append(app.audit()).await?;
                tracing::info!(records = n, "state records without a MAC were given one");
            }
            Ok(n)
        }
        Err(e) => {
            if total > 0 {
                entry.phase = Phase::Failed;
                let _ = entry.with_error(e.to_string()).append(app.audit()).await;
            }
            Err(e)
        }
    }
}

/// Records the anchor every [`ANCHOR_EVERY`] while the log grows, until shutdown begins.
pub(crate) fn spawn_anchor(app: &App) {
    let app = app.clone();
    let stop = app.shutdown();
    tokio::spawn(async move {
        let mut last = app.audit().size();
        loop {
            tokio::select! {
                () = stop.recv() => return,
                () = tokio::time::sleep(ANCHOR_EVERY) => {}
            }
            let size = app.audit().size();
            if size == last {
                continue;
            }
            let a = app.clone();
            match tokio::task::spawn_blocking(move || a.record_anchor()).await {
                Ok(Ok(())) => last = size,
                Ok(Err(e)) => tracing::error!(error = %e, "recording the audit anchor failed"),
                Err(e) => tracing::error!(error = %e, "recording the audit anchor failed"),
            }
        }
    });
}

/// `onboard audit reanchor`: accepts the audit log as it is after the state store recorded a
/// longer or different one (the log was lost and not restored). Appends a `store.reanchor`
/// entry with both and the reason, then records the new anchor. The server must be stopped.
pub async fn reanchor(config: crate::Config, reason: &str) -> Result<String> {
    if reason.trim().is_empty() {
        return Err(ServerError::invalid(
            "reason",
            "say why the audit log was lost",
        ));
    }
    let data = config.storage.data_dir.clone();
    crate::storage::check_keys(&config)?;
    let db = crate::storage::open_state(&data.join(crate::STATE_DIR))?;
    let key = crate::app::sealing_key(&db, &config)?;
    let mac = onboard_core::SealingKey::new(*key).record_mac();
    let meta = db.open_tree(META_TREE)?;
    let recorded = read_anchor(&meta, &mac)?;
    let signer = crate::app::load_signer(&config.audit.signing_key, &config.audit.origin)?;
    let audit = AuditLog::open(
        audit_log::LogConfig::new(data.join(crate::AUDIT_DIR), config.audit.origin.clone()),
        signer,
    )?;
    let (rsize, rroot) = recorded
        .as_ref()
        .map_or((0, String::new()), |a| (a.size, a.root.clone()));
    let cp = audit.checkpoint();
    let (size, root) = (cp.checkpoint.size, hex::encode(cp.checkpoint.root));
    AuditEntry::new(
        Action::StoreReanchor,
        Phase::Succeeded,
        &Scope::actor("onboard:operator"),
    )
    .with_detail("reason", reason)
    .with_detail("recorded_size", rsize)
    .with_detail("recorded_root", rroot.clone())
    .with_detail("size", size)
    .with_detail("root", root.clone())
    .append(&audit)
    .await?;
    record_anchor(&meta, &mac, &audit)?;
    let after = audit.size();
    audit.close();
    Ok(format!(
        "the state store recorded {rsize} entries (root {rroot}); it now anchors the log as it is ({after} entries, the reanchor entry included)"
    ))
}
