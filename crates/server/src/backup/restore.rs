//! `onboard restore`: an archive into a data directory no server holds.
//!
//! 1. The data directory must be empty, or `--force` (then no process may hold its sled
//!    stores: the restore takes the same `flock` sled takes and holds it to the end; the old
//!    `audit/` and `state/` are moved aside, never deleted).
//! 2. Everything is checked before anything is written: the manifest, every member's SHA-256
//!    and length, the audit records (contiguous entries rehashed into the root, every
//!    checkpoint signature, the last checkpoint equal to the manifest's), the configured
//!    signing key being the log's current one, the origin.
//! 3. The latest checkpoint known elsewhere — the witness store (`[witnessing] store`) and the
//!    head note of the data directory being replaced — must be covered by the archive (same
//!    root at its size); otherwise the restore is refused unless `--allow-rollback --reason`
//!    (`--force` only replaces a non-empty directory).
//! 4. Both stores are written into a temporary directory beside them and made durable; there
//!    the log is opened with its full start-up check, the state store's anchor is checked
//!    against it (the server's own start-up rule), and a `store.restore` entry is appended
//!    (with `forced` and the reason). Only then are they renamed into place: a refusal up to
//!    here leaves the data directory as it was.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use audit_log::snapshot::SnapshotCheck;
use audit_log::{AuditError, AuditLog, LogConfig};
use onboard_core::audit::{Action, AuditEntry, Phase, Scope};

use super::check::{PendingKnown, bad_archive, read_head_note, stale, verify};
use super::format::{self, Manifest, Records};
use crate::error::{Result, ServerError};
use crate::{AUDIT_DIR, Config, STATE_DIR, integrity};

/// What `onboard restore` was asked.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The archive file.
    pub archive: PathBuf,
    /// Replace a non-empty data directory (its stores are moved aside).
    pub force: bool,
    /// Accept an archive older than (or different from) the latest checkpoint known: a
    /// rollback of the audit log. Separate from `force`, which the recipe for a volume that
    /// is never empty always passes.
    pub allow_rollback: bool,
    /// Why (required with `force` or `allow_rollback`; recorded in the `store.restore` entry).
    pub reason: String,
}

/// Restores `req.archive` into the data directory of `config`. Returns a summary line.
pub async fn restore(config: Config, req: RestoreRequest) -> Result<String> {
    if (req.force || req.allow_rollback) && req.reason.trim().is_empty() {
        return Err(ServerError::invalid(
            "reason",
            "--force and --allow-rollback need --reason",
        ));
    }
    crate::storage::check_keys(&config)?;
    for (set, key) in [
        (config.storage.sealing_key.is_some(), "storage.sealing_key"),
        (
            config.invitations.token_key.is_some(),
            "invitations.token_key",
        ),
    ] {
        if !set {
            return Err(ServerError::Config(format!(
                "{key} is not set: archives never carry keys, so the restored state needs the key file the backed-up server used"
            )));
        }
    }
    let data = config.storage.data_dir.clone();
    let existing = occupied(&data)?;
    // Held until the restore ends: no server opens the old stores while they are replaced.
    let mut _held = Vec::new();
    for store in [AUDIT_DIR, STATE_DIR] {
        _held.extend(crate::storage::hold_if_free(
            &data.join(store),
            ", or restore into another directory",
        )?);
    }
    let signer = crate::app::load_signer(&config.audit.signing_key, &config.audit.origin)?;
    let mut known = Vec::new();
    let mut check = SnapshotCheck::default();
    // Pass 1: check everything, write nothing.
    let (manifest, checked, sha) = {
        let head = read_head_note(&data)?;
        let mut pending = PendingKnown {
            head,
            config: Some(&config),
        };
        verify(&req.archive, &mut check, &mut pending, &mut known)?
    };
    if manifest.origin != config.audit.origin {
        return Err(bad_archive(
            &req.archive,
            format!(
                "it holds the log of origin {:?}, the configuration says {:?}",
                manifest.origin, config.audit.origin
            ),
        ));
    }
    if checked.verifiers.last() != Some(&signer.verifier()) {
        return Err(ServerError::Config(format!(
            "audit.signing_key is not the archived log's current key ({}); configure the key the backed-up server used",
            checked
                .verifiers
                .last()
                .map(ToString::to_string)
                .unwrap_or_default()
        )));
    }
    let stale = stale(&checked, &known);
    if let Some(why) = &stale
        && !req.allow_rollback
    {
        return Err(ServerError::FailedPrecondition(format!(
            "refusing to restore an older snapshot: {why}; restoring it would roll the audit log back. If that is intended (the newer data is lost), run again with --allow-rollback --reason \"…\" (recorded in the audit log)"
        )));
    }
    if !existing.is_empty() && !req.force {
        return Err(ServerError::FailedPrecondition(format!(
            "{} is not empty ({}); restore into an empty directory, or replace it with --force --reason (the old contents are moved aside)",
            data.display(),
            existing.join(", ")
        )));
    }
    let mut entry = AuditEntry::new(
        Action::StoreRestore,
        Phase::Succeeded,
        &Scope::actor("onboard:operator"),
    )
    .with_detail("reason", req.reason.clone())
    .with_detail("forced", stale.is_some())
    .with_detail("archive_sha256", sha.clone())
    .with_detail("size", manifest.audit.size)
    .with_detail("root", manifest.audit.root.clone())
    .with_detail("created_at", manifest.created_at.clone());
    // The latest checkpoint known before, when one was (schema v2 leaves out what has no
    // value, rather than writing 0 and "").
    if let Some(k) = known.iter().max_by_key(|k| k.size) {
        entry = entry
            .with_detail("known_size", k.size)
            .with_detail("known_root", hex::encode(k.root))
            .with_detail("known_from", k.from.clone());
    }
    // Pass 2: write into a temporary directory; there, the server's own start-up checks and
    // the record of the restore, before the restored stores replace anything: a failure (a
    // damaged member, a wrong sealing key, a log that does not open) deletes the temporary
    // directory and leaves the data directory exactly as it was.
    crate::storage::prepare_data_dir(&data)?;
    let tmp = data.join(format!(".restore-{}", std::process::id()));
    let restored = async {
        write_stores(&req.archive, &manifest, &tmp)?;
        check_and_record(&config, signer, &tmp, &data, entry).await
    }
    .await;
    let size = match restored {
        Ok(size) => size,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let moved_aside = swap_in(&data, &tmp, &existing)?;
    crate::storage::tighten(&data)?;
    let aside = if moved_aside.is_empty() {
        String::new()
    } else {
        format!(
            "; the replaced stores were moved to {}",
            moved_aside.join(", ")
        )
    };
    Ok(format!(
        "restored {} audit entries (root {}) and {} state records from {} (taken {}){}{aside}; the log now holds {size} entries with the store.restore entry",
        manifest.audit.size,
        manifest.audit.root,
        manifest.state.trees.values().sum::<u64>(),
        req.archive.display(),
        manifest.created_at,
        if stale.is_some() {
            " — forced over a newer checkpoint"
        } else {
            ""
        },
    ))
}

/// Opens the restored log in `dir` with its full start-up check, checks the restored state
/// store's anchor against it (the server's start-up rule), marks fresh apps for re-reading and
/// appends `entry` (the `store.restore` record). `data` is the directory they will move to (for
/// messages). Returns the log's size after the entry.
async fn check_and_record(
    config: &Config,
    signer: audit_log::NoteSigner,
    dir: &Path,
    data: &Path,
    entry: AuditEntry,
) -> Result<u64> {
    let audit = AuditLog::open(
        LogConfig::new(dir.join(AUDIT_DIR), config.audit.origin.clone()),
        signer,
    )?;
    let appended = async {
        let mac = check_anchor(config, &audit, dir, data)?;
        // Entra may be ahead of the archived runs: every resumed step reads before it writes.
        distrust_fresh_apps(dir, mac).await?;
        entry.append(&audit).await?;
        Ok::<_, ServerError>(())
    }
    .await;
    let size = audit.size();
    audit.close();
    appended.map(|()| size)
}

/// What the data directory holds (names), ignoring nothing.
fn occupied(data: &Path) -> Result<Vec<String>> {
    match std::fs::read_dir(data) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ServerError::io(format!("listing {}", data.display()), e)),
        Ok(dir) => {
            let mut names = Vec::new();
            for e in dir {
                let e = e.map_err(|e| ServerError::io(format!("listing {}", data.display()), e))?;
                names.push(e.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        }
    }
}

/// Pass 2: writes both stores under `tmp`, checking every member's checksum again.
fn write_stores(path: &Path, manifest: &Manifest, tmp: &Path) -> Result<()> {
    std::fs::create_dir_all(tmp)
        .map_err(|e| ServerError::io(format!("creating {}", tmp.display()), e))?;
    let file =
        File::open(path).map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?;
    let mut tar = tar::Archive::new(BufReader::new(file));
    let entries = tar.entries().map_err(|e| bad_archive(path, e))?;
    for (i, entry) in entries.enumerate().skip(1) {
        let entry = entry.map_err(|e| bad_archive(path, e))?;
        let m = manifest
            .members
            .get(i - 1)
            .ok_or_else(|| bad_archive(path, "the archive changed since it was checked"))?;
        let mut h = format::Hashing::new(entry);
        if m.name == format::AUDIT_MEMBER {
            let records = Records::new(&mut h).map(|r| {
                r.map(|(_, k, v)| (k, v)).map_err(|e| AuditError::Io {
                    context: format!("reading {}", format::AUDIT_MEMBER),
                    source: e,
                })
            });
            audit_log::snapshot::restore(
                &tmp.join(AUDIT_DIR),
                records,
                &manifest.audit.checkpoint,
            )?;
        } else {
            write_state(&tmp.join(STATE_DIR), Records::new(&mut h))?;
        }
        std::io::copy(&mut h, &mut std::io::sink()).map_err(|e| bad_archive(path, e))?;
        if h.finish().0 != m.sha256 {
            return Err(bad_archive(
                path,
                "the archive changed since it was checked",
            ));
        }
    }
    Ok(())
}

fn write_state(dir: &Path, records: Records<impl Read>) -> Result<()> {
    let db = crate::storage::open_state(dir)?;
    let _durable = crate::storage::register_state(dir)?;
    for r in records {
        let (tree, k, v) =
            r.map_err(|e| ServerError::io(format!("reading {}", format::STATE_MEMBER), e))?;
        db.open_tree(&tree)?.insert(k, v)?;
    }
    onboard_core::store::flush_durably_blocking(&db.open_tree(integrity::META_TREE)?)
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    Ok(())
}

/// Moves `existing` aside (if any), then the restored stores into place. Returns where the
/// old ones went.
fn swap_in(data: &Path, tmp: &Path, existing: &[String]) -> Result<Vec<String>> {
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut aside = Vec::new();
    for name in existing {
        if name.starts_with(".restore-") {
            continue;
        }
        let from = data.join(name);
        let to = data.join(format!("{name}.replaced-{stamp}"));
        std::fs::rename(&from, &to)
            .map_err(|e| ServerError::io(format!("moving {} aside", from.display()), e))?;
        aside.push(to.display().to_string());
    }
    for store in [AUDIT_DIR, STATE_DIR] {
        let (from, to) = (tmp.join(store), data.join(store));
        std::fs::rename(&from, &to)
            .map_err(|e| ServerError::io(format!("moving {} into place", to.display()), e))?;
    }
    std::fs::remove_dir(tmp)
        .map_err(|e| ServerError::io(format!("removing {}", tmp.display()), e))?;
    File::open(data)
        .and_then(|d| d.sync_all())
        .map_err(|e| ServerError::io(format!("syncing {}", data.display()), e))?;
    Ok(aside)
}

/// See `provision::store::Store::distrust_after_restore`.
async fn distrust_fresh_apps(data: &Path, mac: onboard_core::store::RecordMac) -> Result<usize> {
    let db = open_waiting(&data.join(STATE_DIR))?;
    let _durable = crate::storage::register_state(&data.join(STATE_DIR))?;
    let tree = db.open_tree(crate::app::PROVISION_TREE)?;
    Ok(provision::store::distrust_after_restore(tree, mac).await?)
}

/// The server's start-up rule: the state store in `dir`'s anchor (MAC checked with the
/// configured sealing key) must be covered by the restored log. `data` names the data
/// directory in messages. Returns the record MAC.
fn check_anchor(
    config: &Config,
    audit: &AuditLog,
    dir: &Path,
    data: &Path,
) -> Result<onboard_core::store::RecordMac> {
    let db = open_waiting(&dir.join(STATE_DIR))?;
    let key = crate::app::sealing_key(&db, config)?;
    let mac = onboard_core::SealingKey::new(*key).record_mac();
    let anchor = integrity::read_anchor(&db.open_tree(integrity::META_TREE)?, &mac).map_err(|e| {
        ServerError::Config(format!(
            "the restored state store's anchor does not open with storage.sealing_key ({e}): configure the sealing key the backed-up server used"
        ))
    })?;
    integrity::check_after_open(anchor.as_ref(), audit, data)?;
    Ok(mac)
}

/// Opens a sled store this process just closed: sled's threads let go of its lock shortly
/// after the last handle is dropped.
fn open_waiting(dir: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match crate::storage::open_state(dir) {
            Ok(db) => return Ok(db),
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
