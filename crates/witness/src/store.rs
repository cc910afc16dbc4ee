//! The submitter's persisted cosignatures: per witness, the latest checkpoint it cosigned and
//! its cosignature line, plus the latest cosigned note served to readers. One JSON file,
//! replaced atomically. It is evidence for the rollback check, so keep it outside the audit
//! data directory (a restored backup of that directory must not restore this file too).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use audit_log::note::NoteVerifier;
use audit_log::{Checkpoint, SignedCheckpoint};
use serde::{Deserialize, Serialize};

use crate::cosig::{CosignerVerifier, SignatureLine};
use crate::error::WitnessError;
use crate::fsutil;

/// The file format version.
const VERSION: u32 = 1;

/// The JSON document.
#[derive(Debug, Serialize, Deserialize)]
struct StoreFile {
    /// Format version, for later changes.
    version: u32,
    /// The log's origin; a file for another log is refused.
    origin: String,
    /// Per witness verifier key (`name+id+base64`), its latest cosignature.
    witnesses: BTreeMap<String, StoredCosignature>,
    /// The latest cosigned note (log signature plus cosignatures), if any.
    latest: Option<String>,
}

/// One witness's latest cosignature as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCosignature {
    /// The cosigned checkpoint body.
    checkpoint: String,
    /// The cosignature line, ending in `\n`.
    cosignature: String,
}

/// A witness's latest cosignature, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessRecord {
    /// The checkpoint the witness cosigned.
    pub checkpoint: Checkpoint,
    /// The checkpoint body exactly as cosigned (extension lines included).
    pub text: String,
    /// Its cosignature line, ending in `\n`.
    pub cosignature: String,
}

/// What the store holds, checked against the configured keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    /// Latest cosignature per configured witness, by its verifier key string.
    pub witnesses: BTreeMap<String, WitnessRecord>,
    /// The latest cosigned note.
    pub latest: Option<SignedCheckpoint>,
}

/// The store file.
#[derive(Debug, Clone)]
pub struct CosignatureStore {
    /// Where the JSON document lives.
    path: PathBuf,
}

impl CosignatureStore {
    /// A store at `path` (created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads and verifies the store: every record of a configured witness must verify with its
    /// key and be for `origin`; the latest note must verify with the log's keys. Records of
    /// witnesses no longer configured are dropped. A missing file is an empty store; a file
    /// that does not verify is an error.
    pub fn load(
        &self,
        origin: &str,
        log_keys: &[NoteVerifier],
        witnesses: &[CosignerVerifier],
    ) -> Result<StoredState, WitnessError> {
        let Some(text) = fsutil::read_optional(&self.path)? else {
            return Ok(StoredState::default());
        };
        let bad = |detail: String| WitnessError::State {
            path: self.path.display().to_string(),
            detail,
        };
        let file: StoreFile = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a cosignature store: {e}")))?;
        if file.version != VERSION {
            return Err(bad(format!("unsupported version {}", file.version)));
        }
        if file.origin != origin {
            return Err(bad(format!(
                "holds cosignatures for origin {:?}, not {origin:?}",
                file.origin
            )));
        }
        let mut out = StoredState::default();
        for (vkey, rec) in file.witnesses {
            let Some(v) = witnesses.iter().find(|w| w.to_string() == vkey) else {
                continue;
            };
            let checkpoint = Checkpoint::parse_text(&rec.checkpoint)
                .map_err(|e| bad(format!("record of {vkey}: {e}")))?;
            let line = SignatureLine::parse(rec.cosignature.trim_end_matches('\n'))
                .map_err(|e| bad(format!("record of {vkey}: {e}")))?;
            if checkpoint.origin != origin || v.verify(&rec.checkpoint, &line).is_none() {
                return Err(bad(format!(
                    "the cosignature recorded for {vkey} does not verify"
                )));
            }
            out.witnesses.insert(
                vkey,
                WitnessRecord {
                    checkpoint,
                    text: rec.checkpoint,
                    cosignature: rec.cosignature,
                },
            );
        }
        if let Some(note) = file.latest {
            let cp = SignedCheckpoint::open(&note, log_keys)
                .map_err(|e| bad(format!("latest cosigned note: {e}")))?;
            out.latest = Some(cp);
        }
        Ok(out)
    }

    /// Durably replaces the store with `state`.
    pub fn save(&self, origin: &str, state: &StoredState) -> Result<(), WitnessError> {
        let file = StoreFile {
            version: VERSION,
            origin: origin.to_owned(),
            witnesses: state
                .witnesses
                .iter()
                .map(|(k, r)| {
                    (
                        k.clone(),
                        StoredCosignature {
                            checkpoint: r.text.clone(),
                            cosignature: r.cosignature.clone(),
                        },
                    )
                })
                .collect(),
            latest: state.latest.as_ref().map(|c| c.note.clone()),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| WitnessError::Config(format!("encoding the cosignature store: {e}")))?;
        fsutil::write_atomic(&self.path, &json)
    }
}
