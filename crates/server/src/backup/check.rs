//! Pass 1 of `onboard restore`: reading an archive and checking all of it (manifest, member
//! checksums, the audit records rehashed into the signed root) and the checkpoints known
//! outside it (the replaced head note, the witness store), before anything is written.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use audit_log::SignedCheckpoint;
use audit_log::snapshot::{Checked, SnapshotCheck};

use super::format::{self, Manifest, Records};
use crate::error::{Result, ServerError};
use crate::{AUDIT_DIR, Config};

/// A checkpoint known outside the archive.
#[derive(Debug, Clone)]
pub(super) struct Known {
    /// Where it was found.
    pub(super) from: String,
    /// Its size.
    pub(super) size: u64,
    /// Its root.
    pub(super) root: audit_log::Hash,
}

pub(super) fn bad_archive(path: &Path, detail: impl std::fmt::Display) -> ServerError {
    ServerError::FailedPrecondition(format!(
        "archive {}: {detail}; nothing was written",
        path.display()
    ))
}

/// The head note of the data directory being replaced, if any.
pub(super) fn read_head_note(data: &Path) -> Result<Option<String>> {
    let p = data.join(AUDIT_DIR).join("audit-head.note");
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::io(format!("reading {}", p.display()), e)),
    }
}

/// Sources of known checkpoints, opened once the archive's verifier keys are known.
pub(super) struct PendingKnown<'a> {
    /// The replaced data directory's head note.
    pub(super) head: Option<String>,
    /// For `[witnessing]` and the data directory's name; `None` when nothing outside the
    /// archive is consulted ([`check_archive`]).
    pub(super) config: Option<&'a Config>,
}

impl PendingKnown<'_> {
    /// The checkpoints known elsewhere, verified with the log's keys.
    fn resolve(&self, verifiers: &[audit_log::NoteVerifier], origin: &str) -> Result<Vec<Known>> {
        let mut out = Vec::new();
        if let Some(note) = &self.head {
            let dir = self.config.map(|c| c.storage.data_dir.join(AUDIT_DIR));
            let from = format!("the head note of {}", dir.unwrap_or_default().display());
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
        if let Some(config) = self.config
            && let Some(w) = crate::auditors::settings::witnessing(config)?
        {
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

/// What a sound archive holds ([`check_archive`]).
#[derive(Debug, Clone)]
pub struct ArchiveSummary {
    /// Audit entries in it (the size of its signed checkpoint).
    pub entries: u64,
    /// The log's root at that size (hex).
    pub root: String,
    /// State records in it, all trees.
    pub state_records: u64,
}

/// Checks all of archive `path` as `onboard restore`'s first pass does (the manifest, every
/// member's checksum and length, the audit records rehashed into the archive's own signed
/// checkpoint), consulting nothing outside it: how `onboard backup` checks what it received
/// before giving it its name. Reads the whole file; a refusal says what is wrong.
pub fn check_archive(path: &Path) -> Result<ArchiveSummary> {
    let mut pending = PendingKnown {
        head: None,
        config: None,
    };
    let mut check = SnapshotCheck::default();
    let (manifest, _, _) = verify(path, &mut check, &mut pending, &mut Vec::new())?;
    Ok(ArchiveSummary {
        entries: manifest.audit.size,
        root: manifest.audit.root,
        state_records: manifest.state.trees.values().sum(),
    })
}

/// Pass 1: reads the archive, checks the manifest, every checksum and the audit records.
pub(super) fn verify(
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
pub(super) fn stale(checked: &Checked, known: &[Known]) -> Option<String> {
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
