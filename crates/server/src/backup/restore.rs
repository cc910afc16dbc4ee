//! `onboard restore`: an archive into a data directory no server holds.
//!
//! 1. The data directory must be empty, or `--force` (then no process may hold its sled
//!    stores: the same `flock` sled takes; the old `audit/` and `state/` are moved aside, never
//!    deleted).
//! 2. Everything is checked before anything is written: the manifest, every member's SHA-256
//!    and length, the audit records (contiguous entries rehashed into the root, every
//!    checkpoint signature, the last checkpoint equal to the manifest's), the configured
//!    signing key being the log's current one, the origin.
//! 3. The latest checkpoint known elsewhere — the witness store (`[witnessing] store`) and the
//!    head note of the data directory being replaced — must be covered by the archive (same
//!    root at its size); otherwise the restore is refused unless `--force --reason`.
//! 4. Both stores are written into a temporary directory beside them, made durable, and
//!    renamed into place; the log is opened with its full start-up check, the state store's
//!    anchor is checked against it (the server's own start-up rule), and a `store.restore`
//!    entry is appended (with `forced` and the reason).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use audit_log::snapshot::{Checked, SnapshotCheck};
use audit_log::{AuditError, AuditLog, LogConfig, SignedCheckpoint};
use onboard_core::audit::{Action, AuditEntry, Phase, Scope};

use super::format::{self, Manifest, Records};
use crate::error::{Result, ServerError};
use crate::{AUDIT_DIR, Config, STATE_DIR, integrity};

/// What `onboard restore` was asked.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The archive file.
    pub archive: PathBuf,
    /// Replace a non-empty data directory, and accept an archive older than (or different
    /// from) the latest checkpoint known.
    pub force: bool,
    /// Why (required with `force`; recorded in the `store.restore` entry).
    pub reason: String,
}

/// A checkpoint known outside the archive.
#[derive(Debug, Clone)]
struct Known {
    /// Where it was found.
    from: String,
    /// Its size.
    size: u64,
    /// Its root.
    root: audit_log::Hash,
}

fn bad_archive(path: &Path, detail: impl std::fmt::Display) -> ServerError {
    ServerError::FailedPrecondition(format!(
        "archive {}: {detail}; nothing was written",
        path.display()
    ))
}

/// Restores `req.archive` into the data directory of `config`. Returns a summary line.
pub async fn restore(config: Config, req: RestoreRequest) -> Result<String> {
    if req.force && req.reason.trim().is_empty() {
        return Err(ServerError::invalid("reason", "--force needs --reason"));
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
    for store in [AUDIT_DIR, STATE_DIR] {
        refuse_if_held(&data.join(store))?;
    }
    let signer = crate::app::load_signer(&config.audit.signing_key, &config.audit.origin)?;
    let mut known = Vec::new();
    let mut check = SnapshotCheck::default();
    // Pass 1: check everything, write nothing.
    let (manifest, checked, sha) = {
        let head = read_head_note(&data)?;
        let mut pending = PendingKnown {
            head,
            config: &config,
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
        && !req.force
    {
        return Err(ServerError::FailedPrecondition(format!(
            "refusing to restore an older snapshot: {why}; restoring it would roll the audit log back. If that is intended (the newer data is lost), run again with --force --reason \"…\" (recorded in the audit log)"
        )));
    }
    if !existing.is_empty() && !req.force {
        return Err(ServerError::FailedPrecondition(format!(
            "{} is not empty ({}); restore into an empty directory, or replace it with --force --reason (the old contents are moved aside)",
            data.display(),
            existing.join(", ")
        )));
    }
    // Pass 2: write into a temporary directory, then move into place.
    crate::storage::prepare_data_dir(&data)?;
    let tmp = data.join(format!(".restore-{}", std::process::id()));
    let written = write_stores(&req.archive, &manifest, &tmp);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let moved_aside = swap_in(&data, &tmp, &existing)?;
    crate::storage::tighten(&data)?;
    // The server's own start-up checks, then the record of the restore.
    let known_best = known.iter().max_by_key(|k| k.size);
    let audit = AuditLog::open(
        LogConfig::new(data.join(AUDIT_DIR), config.audit.origin.clone()),
        signer,
    )?;
    let anchored = check_anchor(&config, &audit, &data);
    if let Err(e) = anchored {
        audit.close();
        return Err(e);
    }
    let entry = AuditEntry::new(
        Action::StoreRestore,
        Phase::Succeeded,
        &Scope::actor("onboard:operator"),
    )
    .with_detail("reason", req.reason.clone())
    .with_detail("forced", stale.is_some())
    .with_detail("archive_sha256", sha.clone())
    .with_detail("size", manifest.audit.size)
    .with_detail("root", manifest.audit.root.clone())
    .with_detail("known_size", known_best.map_or(0, |k| k.size))
    .with_detail(
        "known_root",
        known_best.map(|k| hex::encode(k.root)).unwrap_or_default(),
    )
    .with_detail(
        "known_from",
        known_best.map(|k| k.from.clone()).unwrap_or_default(),
    )
    .with_detail("created_at", manifest.created_at.clone());
    let appended = entry.append(&audit).await;
    let size = audit.size();
    audit.close();
    appended?;
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

/// Refuses a sled store another process holds (sled `flock`s its `db` file while open).
fn refuse_if_held(store: &Path) -> Result<()> {
    let db = store.join("db");
    let file = match File::open(&db) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ServerError::io(format!("opening {}", db.display()), e)),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(ServerError::FailedPrecondition(format!(
            "{} is in use (a running server holds its lock); stop the server first, or restore into another directory",
            store.display()
        ))),
        Err(e) => Err(ServerError::io(
            format!("locking {}", db.display()),
            e.into(),
        )),
    }
}

/// The head note of the data directory being replaced, if any.
fn read_head_note(data: &Path) -> Result<Option<String>> {
    let p = data.join(AUDIT_DIR).join("audit-head.note");
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::io(format!("reading {}", p.display()), e)),
    }
}

/// Sources of known checkpoints, opened once the archive's verifier keys are known.
struct PendingKnown<'a> {
    /// The replaced data directory's head note.
    head: Option<String>,
    /// For `[witnessing]`.
    config: &'a Config,
}

impl PendingKnown<'_> {
    /// The checkpoints known elsewhere, verified with the log's keys.
    fn resolve(&self, verifiers: &[audit_log::NoteVerifier], origin: &str) -> Result<Vec<Known>> {
        let mut out = Vec::new();
        if let Some(note) = &self.head {
            let from = format!(
                "the head note of {}",
                self.config.storage.data_dir.join(AUDIT_DIR).display()
            );
            match SignedCheckpoint::open(note, verifiers) {
                Ok(cp) => out.push(Known {
                    from,
                    size: cp.checkpoint.size,
                    root: cp.checkpoint.root,
                }),
                Err(e) => {
                    return Err(ServerError::FailedPrecondition(format!(
                        "{from} does not verify with the archived log's keys ({e}): the data directory holds another log; move it away first"
                    )));
                }
            }
        }
        if let Some(w) = crate::auditors::settings::witnessing(self.config)? {
            let keys: Vec<_> = w.endpoints.iter().map(|e| e.verifier.clone()).collect();
            let stored = witness::CosignatureStore::new(&w.store)
                .load(origin, verifiers, &keys)
                .map_err(|e| ServerError::Config(format!("witnessing.store: {e}")))?;
            let from = format!("the witness store {}", w.store.display());
            for cp in stored
                .latest
                .iter()
                .map(|l| l.checkpoint.clone())
                .chain(stored.witnesses.values().map(|r| r.checkpoint.clone()))
            {
                out.push(Known {
                    from: from.clone(),
                    size: cp.size,
                    root: cp.root,
                });
            }
        }
        Ok(out)
    }
}

/// Pass 1: reads the archive, checks the manifest, every checksum and the audit records.
fn verify(
    path: &Path,
    check: &mut SnapshotCheck,
    pending: &mut PendingKnown<'_>,
    known: &mut Vec<Known>,
) -> Result<(Manifest, Checked, String)> {
    let file =
        File::open(path).map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?;
    let mut whole = format::Hashing::new(BufReader::new(file));
    let manifest;
    let checked;
    {
        let mut tar = tar::Archive::new(&mut whole);
        let mut entries = tar.entries().map_err(|e| bad_archive(path, e))?;
        manifest = read_manifest(path, &mut entries)?;
        // The known checkpoints are verified with the keys the archive names; their sizes
        // are the roots the audit check must compute on the way.
        let mut seen = Vec::new();
        for (i, m) in manifest.members.iter().enumerate() {
            let entry = entries
                .next()
                .ok_or_else(|| bad_archive(path, format!("member {} is missing", m.name)))?
                .map_err(|e| bad_archive(path, format!("reading member {}: {e}", m.name)))?;
            let name = entry
                .path()
                .map_err(|e| bad_archive(path, e))?
                .to_string_lossy()
                .into_owned();
            if name != m.name {
                return Err(bad_archive(
                    path,
                    format!(
                        "member {} is {name:?}, the manifest lists {:?}",
                        i + 1,
                        m.name
                    ),
                ));
            }
            let mut h = format::Hashing::new(entry);
            // A damaged member is reported by its checksum (the cause), not by whatever
            // parsing stumbled on first: parse, read the rest, compare, then report.
            let parsed = if m.name == format::AUDIT_MEMBER {
                feed_audit(path, &mut h, check, pending, known, &manifest)
            } else {
                Records::new(&mut h)
                    .try_for_each(|r| r.map(drop))
                    .map_err(|e| bad_archive(path, format!("member {}: {e}", m.name)))
            };
            std::io::copy(&mut h, &mut std::io::sink())
                .map_err(|e| bad_archive(path, format!("reading member {}: {e}", m.name)))?;
            let (sha, bytes) = h.finish();
            let damaged = sha != m.sha256 || bytes != m.bytes;
            if !damaged {
                parsed?;
            }
            if damaged {
                return Err(bad_archive(
                    path,
                    format!(
                        "member {} fails its checksum: {bytes} bytes with SHA-256 {sha}, the manifest says {} bytes with SHA-256 {}",
                        m.name, m.bytes, m.sha256
                    ),
                ));
            }
            seen.push(m.name.clone());
        }
        if let Some(extra) = entries.next() {
            let name = extra
                .ok()
                .and_then(|e| e.path().ok().map(|p| p.to_string_lossy().into_owned()))
                .unwrap_or_default();
            return Err(bad_archive(
                path,
                format!("member {name:?} is not in the manifest"),
            ));
        }
        for want in [format::AUDIT_MEMBER, format::STATE_MEMBER] {
            if !seen.iter().any(|s| s == want) {
                return Err(bad_archive(path, format!("the manifest lists no {want}")));
            }
        }
        checked = std::mem::take(check)
            .finish()
            .map_err(|e| bad_archive(path, format!("member {}: {e}", format::AUDIT_MEMBER)))?;
    }
    std::io::copy(&mut whole, &mut std::io::sink()).map_err(|e| bad_archive(path, e))?;
    let cp = &checked.checkpoint;
    if cp.note != manifest.audit.checkpoint
        || cp.checkpoint.size != manifest.audit.size
        || hex::encode(cp.checkpoint.root) != manifest.audit.root
    {
        return Err(bad_archive(
            path,
            "the audit records' checkpoint differs from the manifest's",
        ));
    }
    Ok((manifest, checked, whole.finish().0))
}

fn read_manifest<R: Read>(path: &Path, entries: &mut tar::Entries<'_, R>) -> Result<Manifest> {
    let mut first = entries
        .next()
        .ok_or_else(|| bad_archive(path, "empty archive"))?
        .map_err(|e| bad_archive(path, format!("reading the first member: {e}")))?;
    let name = first
        .path()
        .map_err(|e| bad_archive(path, e))?
        .to_string_lossy()
        .into_owned();
    if name != format::MANIFEST {
        return Err(bad_archive(
            path,
            format!("the first member is {name:?}, not {}", format::MANIFEST),
        ));
    }
    if first.size() > 1 << 20 {
        return Err(bad_archive(path, "the manifest is larger than 1 MiB"));
    }
    let mut json = Vec::new();
    first
        .read_to_end(&mut json)
        .map_err(|e| bad_archive(path, e))?;
    let m: Manifest = serde_json::from_slice(&json).map_err(|e| {
        bad_archive(
            path,
            format!("{} is not a backup manifest: {e}", format::MANIFEST),
        )
    })?;
    if m.format != format::FORMAT || m.version != format::VERSION {
        return Err(bad_archive(
            path,
            format!(
                "format {:?} version {} is not {:?} version {}",
                m.format,
                m.version,
                format::FORMAT,
                format::VERSION
            ),
        ));
    }
    Ok(m)
}

/// Feeds the audit member to the check; once the metadata records are read, resolves the
/// known checkpoints so the check computes the roots at their sizes.
fn feed_audit(
    path: &Path,
    input: &mut impl Read,
    check: &mut SnapshotCheck,
    pending: &mut PendingKnown<'_>,
    known: &mut Vec<Known>,
    manifest: &Manifest,
) -> Result<()> {
    let mut verifiers: Option<Vec<audit_log::NoteVerifier>> = None;
    for r in Records::new(input) {
        let (tree, key, value) =
            r.map_err(|e| bad_archive(path, format!("member {}: {e}", format::AUDIT_MEMBER)))?;
        if tree != format::AUDIT_TREE.as_bytes() {
            return Err(bad_archive(path, "an audit record names another tree"));
        }
        if verifiers.is_none() && key.first() != Some(&b'm') {
            // Metadata comes first: the keys are known now.
            let keys = verifier_keys(path, check)?;
            *known = pending.resolve(&keys, &manifest.origin)?;
            for k in known.iter() {
                check.want_root_at(k.size);
            }
            verifiers = Some(keys);
        }
        check
            .feed(&key, &value)
            .map_err(|e| bad_archive(path, format!("member {}: {e}", format::AUDIT_MEMBER)))?;
    }
    Ok(())
}

/// The verifier keys the check has read so far (from `m/verifiers`).
fn verifier_keys(path: &Path, check: &SnapshotCheck) -> Result<Vec<audit_log::NoteVerifier>> {
    let keys = check.verifiers().to_vec();
    if keys.is_empty() {
        return Err(bad_archive(path, "the audit records name no verifier key"));
    }
    Ok(keys)
}

/// Why the archive does not cover a known checkpoint, if it does not.
fn stale(checked: &Checked, known: &[Known]) -> Option<String> {
    let size = checked.checkpoint.checkpoint.size;
    for k in known {
        if k.size > size {
            return Some(format!(
                "the archive holds {size} entries but {} has a signed checkpoint of {} entries",
                k.from, k.size
            ));
        }
        match checked.roots_at.iter().find(|(s, _)| *s == k.size) {
            Some((_, root)) if *root == k.root => {}
            _ => {
                return Some(format!(
                    "the archive's root at size {} differs from the checkpoint in {}",
                    k.size, k.from
                ));
            }
        }
    }
    None
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
    let db = sled::open(dir)?;
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

/// The server's start-up rule: the state store's anchor (MAC checked with the configured
/// sealing key) must be covered by the restored log.
fn check_anchor(config: &Config, audit: &AuditLog, data: &Path) -> Result<()> {
    let db = open_waiting(&data.join(STATE_DIR))?;
    let key = crate::app::sealing_key(&db, config)?;
    let mac = onboard_core::SealingKey::new(*key).record_mac();
    let anchor = integrity::read_anchor(&db.open_tree(integrity::META_TREE)?, &mac).map_err(|e| {
        ServerError::Config(format!(
            "the restored state store's anchor does not open with storage.sealing_key ({e}): configure the sealing key the backed-up server used"
        ))
    })?;
    integrity::check_after_open(anchor.as_ref(), audit, data)
}

/// Opens a sled store this process just closed: sled's threads let go of its lock shortly
/// after the last handle is dropped.
fn open_waiting(dir: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(dir) {
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
