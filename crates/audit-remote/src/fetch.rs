//! Reading a log from a [`Source`] without its data directory: verification, a local copy in
//! the export layout, and per-entry tlog-proofs computed from the tiles.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit_log::merkle::{inclusion_proof, verify_inclusion};
use audit_log::tile_id::tiles_of_size;
use audit_log::tile_source::{partial_from_full, read_tile};
use audit_log::verify::{VerifyOptions, VerifyReport, verify_tiles};
use audit_log::{
    Checkpoint, ExportSummary, NoteVerifier, TileId, TileKind, TileNodes, TileReader, TlogProof,
    leaf_hash,
};
use futures_util::TryStreamExt;

use crate::error::RemoteError;
use crate::source::{BlockingReader, Source};

/// Parallel downloads of a copy.
const COPY_CONCURRENCY: usize = 16;

/// The body of a signed checkpoint note once its signature verifies with `keys`: before any
/// tile is fetched for it (tlog-tiles: "Clients MUST NOT fetch arbitrary partial tiles without
/// verifying a checkpoint with a size that requires their existence").
pub fn verified_checkpoint(note: &str, keys: &[NoteVerifier]) -> Result<Checkpoint, RemoteError> {
    audit_log::SignedCheckpoint::open(note, keys)
        .map(|cp| cp.checkpoint)
        .map_err(|e| RemoteError::Invalid {
            location: "checkpoint".into(),
            detail: format!("its signature does not verify with the keys given: {e}"),
        })
}

/// Fetches the checkpoint, then verifies the log at that size by reading its tiles (see
/// [`verify_at`]). Returns the checkpoint note verified and the report.
pub async fn verify_source(
    source: Arc<Source>,
    keys: Vec<NoteVerifier>,
    since: Option<String>,
    options: VerifyOptions,
) -> Result<(String, VerifyReport), RemoteError> {
    let note = source.checkpoint().await?;
    let report = verify_at(source, note.clone(), keys, since, options).await?;
    Ok((note, report))
}

/// Verifies the log at the checkpoint `note` (fetched earlier) by reading its tiles from
/// `source` on blocking threads; call from async code. `since` is a checkpoint saved earlier;
/// `incremental` checks only what was added since it (see [`VerifyOptions`]).
pub async fn verify_at(
    source: Arc<Source>,
    note: String,
    keys: Vec<NoteVerifier>,
    since: Option<String>,
    options: VerifyOptions,
) -> Result<VerifyReport, RemoteError> {
    let reader = BlockingReader::new(source, tokio::runtime::Handle::current());
    tokio::task::spawn_blocking(move || {
        verify_tiles(&reader, &note, &keys, since.as_deref(), options)
    })
    .await
    .map_err(|e| RemoteError::Conflict(format!("verifier task: {e}")))
}

async fn write_atomic(dir: &Path, rel: &str, data: &[u8]) -> Result<(), RemoteError> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| RemoteError::io(format!("creating {}", parent.display()), e))?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    tokio::fs::write(&tmp, data)
        .await
        .map_err(|e| RemoteError::io(format!("writing {}", tmp.display()), e))?;
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| RemoteError::io(format!("renaming {}", path.display()), e))
}

/// Whether `out` holds a copy of the log `source` serves (at `size` entries now) whose full
/// tiles may be kept: its checkpoint verifies with `keys`, is no larger, and its root is the
/// source's tree's at its size (computed from the source's tiles). An error when it holds
/// another log or history; false when it holds no checkpoint.
async fn earlier_copy_of(
    source: &Arc<Source>,
    out: &Path,
    keys: &[NoteVerifier],
    size: u64,
) -> Result<bool, RemoteError> {
    let path = out.join("checkpoint");
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(RemoteError::io(format!("reading {}", path.display()), e)),
    };
    let refuse = |why: String| RemoteError::Invalid {
        location: out.display().to_string(),
        detail: format!("{why}; copy into an empty directory or an earlier copy of this log"),
    };
    let old = verified_checkpoint(&text, keys)
        .map_err(|_| refuse("it holds a copy of another log".into()))?;
    if old.size > size {
        return Err(refuse(format!(
            "it holds a copy of {} entries, more than the source's {size}",
            old.size
        )));
    }
    let reader = BlockingReader::new(source.clone(), tokio::runtime::Handle::current());
    let old_size = old.size;
    let root = tokio::task::spawn_blocking(move || {
        audit_log::merkle::root(&TileNodes::new(&reader, size), old_size)
    })
    .await
    .map_err(|e| RemoteError::Conflict(format!("root reader task: {e}")))??;
    if root != old.root {
        return Err(refuse(format!(
            "it holds a copy of another history of this log (its checkpoint of {old_size} \
             entries is not in the source's tree)"
        )));
    }
    Ok(true)
}

/// Copies the log from `source` into `out` in the export layout (what `onboard audit export`
/// writes from a data directory), as of the checkpoint fetched first, which must verify with
/// `keys` before any tile is fetched; the checkpoint is written last. Full tiles already in
/// `out` are kept (they never change) when `out` holds an earlier copy of the same log (its
/// checkpoint verifies with `keys` and the source's tree had its root at its size); another
/// log's or history's copy is refused, and tiles without a checkpoint are fetched again. Hash
/// tiles are checked for length; run the verifier on the copy to check everything else.
pub async fn copy_to_dir(
    source: &Arc<Source>,
    out: &Path,
    keys: &[NoteVerifier],
) -> Result<ExportSummary, RemoteError> {
    let note = source.checkpoint().await?;
    let size = verified_checkpoint(&note, keys)?.size;
    let keep_full = earlier_copy_of(source, out, keys, size).await?;
    let mut summary = ExportSummary {
        size,
        ..Default::default()
    };
    let mut wanted = Vec::new();
    for id in tiles_of_size(size) {
        let rel = id.path();
        let full_len = match id.kind {
            TileKind::Hash { .. } => Some(256 * 32),
            TileKind::Entries => None,
        };
        let present = keep_full
            && id.is_full()
            && match (tokio::fs::metadata(out.join(&rel)).await, full_len) {
                (Ok(m), Some(len)) => m.len() == len,
                (Ok(_), None) => true,
                (Err(_), _) => false,
            };
        if present {
            summary.skipped += 1;
        } else {
            wanted.push(id);
        }
    }
    let written: Vec<TileId> = futures_util::stream::iter(wanted.into_iter().map(Ok))
        .map_ok(|id| async move {
            let rel = id.path();
            let data = match source.get(&rel).await {
                // c2sp.org/tlog-tiles: a log "MAY delete any partial tile once the
                // corresponding full tile is available"; the copy then cuts it from the full
                // one, as the verifier does (`read_tile`, which is blocking). A bucket whose
                // anonymous readers may not list it answers the missing partial tile 403.
                Err(missing @ (RemoteError::NotFound { .. } | RemoteError::Forbidden { .. }))
                    if !id.is_full() =>
                {
                    let full = TileId { width: 256, ..id };
                    match source.get(&full.path()).await {
                        Ok(bytes) => bytes::Bytes::from(partial_from_full(&id, &bytes)?),
                        // Neither is there: the partial tile is the one missing.
                        Err(RemoteError::NotFound { .. } | RemoteError::Forbidden { .. }) => {
                            return Err(missing);
                        }
                        Err(e) => return Err(e),
                    }
                }
                read => read?,
            };
            if let TileKind::Hash { .. } = id.kind
                && data.len() != usize::from(id.width) * 32
            {
                return Err(RemoteError::Invalid {
                    location: rel,
                    detail: format!("{} bytes, want {}", data.len(), usize::from(id.width) * 32),
                });
            }
            write_atomic(out, &rel, &data).await?;
            Ok(id)
        })
        .try_buffer_unordered(COPY_CONCURRENCY)
        .try_collect()
        .await?;
    for id in written {
        match id.kind {
            TileKind::Entries => summary.bundles_written += 1,
            TileKind::Hash { .. } => summary.hash_tiles_written += 1,
        }
    }
    write_atomic(out, "checkpoint", note.as_bytes()).await?;
    Ok(summary)
}

/// The entries of a bundle, in order.
pub fn split_bundle(data: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let len = data
            .get(pos..pos + 2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .ok_or_else(|| format!("truncated length at byte {pos}"))?;
        let entry = data
            .get(pos + 2..pos + 2 + len)
            .ok_or_else(|| format!("entry {} is truncated", out.len()))?;
        out.push(entry);
        pos += 2 + len;
    }
    Ok(out)
}

/// A C2SP tlog-proof for entry `seq` against the checkpoint `note`, computed from the hash
/// tiles `reader` serves (blocking). The proof is checked against the checkpoint's root, and the
/// entry's bytes from its bundle against the leaf hash, before it is returned. The checkpoint
/// must verify with `keys` before any tile is read.
pub fn tlog_proof_from_tiles(
    reader: &dyn TileReader,
    note: &str,
    keys: &[NoteVerifier],
    seq: u64,
) -> Result<TlogProof, RemoteError> {
    let cp = verified_checkpoint(note, keys)?;
    if seq >= cp.size {
        return Err(RemoteError::Invalid {
            location: format!("entry {seq}"),
            detail: format!("the log has {} entries", cp.size),
        });
    }
    let nodes = TileNodes::new(reader, cp.size);
    let leaf = audit_log::merkle::NodeSource::node(&nodes, 0, seq)?;
    let proof: Vec<audit_log::Hash> = inclusion_proof(&nodes, seq, cp.size)?;
    verify_inclusion(seq, cp.size, &leaf, &proof, &cp.root).map_err(|e| RemoteError::Invalid {
        location: format!("hash tiles for entry {seq}"),
        detail: format!("they do not lead to the checkpoint's root: {e}"),
    })?;
    let n = seq / 256;
    let width = (cp.size - n * 256).min(256) as u16;
    let rel = TileId::entries(n, width).path();
    // A partial bundle the log deleted is read from its full bundle.
    let bundle = read_tile(reader, &TileId::entries(n, width))?;
    let entries = split_bundle(&bundle).map_err(|detail| RemoteError::Invalid {
        location: rel.clone(),
        detail,
    })?;
    let entry = entries
        .get((seq % 256) as usize)
        .ok_or_else(|| RemoteError::Invalid {
            location: rel.clone(),
            detail: format!("holds {} entries", entries.len()),
        })?;
    if leaf_hash(entry) != leaf {
        return Err(RemoteError::Invalid {
            location: format!("entry {seq}"),
            detail: format!("its bytes in {rel} do not hash to its leaf in the hash tile"),
        });
    }
    Ok(TlogProof {
        extra: None,
        index: seq,
        proof,
        checkpoint_note: note.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_split_and_truncation_is_named() {
        let data = [0u8, 2, b'a', b'b', 0, 0, 0, 1, b'c'];
        let e = split_bundle(&data).unwrap();
        assert_eq!(e, vec![&b"ab"[..], &b""[..], &b"c"[..]]);
        assert!(split_bundle(&data[..8]).unwrap_err().contains("entry 2"));
        assert!(split_bundle(&data[..1]).unwrap_err().contains("byte 0"));
    }
}
