//! The witness's persisted state: per log, the latest checkpoint it cosigned, as a signed note
//! (the log's signatures as submitted, then this witness's cosignature) in
//! `<state dir>/<hex SHA-256(origin)>.checkpoint`, replaced atomically. The directory is locked
//! so that two witness processes never share it.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use audit_log::{Checkpoint, Hash};
use sha2::{Digest, Sha256};

use crate::error::WitnessError;
use crate::fsutil;
use crate::protocol::split_note;

/// The lock file inside the state directory.
const LOCK_FILE: &str = "witness.lock";

/// What the witness last cosigned for one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// The cosigned checkpoint body.
    pub checkpoint: Checkpoint,
    /// The note as persisted: the submitted checkpoint note plus this witness's cosignature.
    pub note: String,
}

impl LogState {
    /// The cosigned size.
    pub fn size(&self) -> u64 {
        self.checkpoint.size
    }

    /// The cosigned root.
    pub fn root(&self) -> Hash {
        self.checkpoint.root
    }
}

/// The state directory, locked for this process.
#[derive(Debug)]
pub(crate) struct StateDir {
    /// Where the state files live.
    dir: PathBuf,
    /// Held open (and locked) for the witness's lifetime; the OS drops the lock on exit.
    _lock: File,
}

fn file_name(origin: &str) -> String {
    format!(
        "{}.checkpoint",
        hex::encode(Sha256::digest(origin.as_bytes()))
    )
}

impl StateDir {
    /// Creates (if needed) and locks the directory.
    pub(crate) fn open(dir: &Path) -> Result<Self, WitnessError> {
        fs::create_dir_all(dir).map_err(|e| {
            WitnessError::io(format!("creating state directory {}", dir.display()), e)
        })?;
        let path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| WitnessError::io(format!("opening {}", path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(WitnessError::Config(format!(
                    "state directory {} is in use by another witness process",
                    dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(WitnessError::io(format!("locking {}", path.display()), e));
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// The persisted state of `origin`, if the witness ever cosigned it. A file that does not
    /// parse, or that belongs to another origin, is an error: starting from zero would let the
    /// log roll back.
    pub(crate) fn load(&self, origin: &str) -> Result<Option<LogState>, WitnessError> {
        let path = self.dir.join(file_name(origin));
        let Some(note) = fsutil::read_optional(&path)? else {
            return Ok(None);
        };
        let bad = |detail: String| WitnessError::State {
            path: path.display().to_string(),
            detail,
        };
        let (text, _) = split_note(&note).map_err(|e| bad(e.to_string()))?;
        let checkpoint = Checkpoint::parse_text(text).map_err(|e| bad(e.to_string()))?;
        if checkpoint.origin != origin {
            return Err(bad(format!(
                "holds a checkpoint for origin {:?}, not {origin:?}",
                checkpoint.origin
            )));
        }
        Ok(Some(LogState { checkpoint, note }))
    }

    /// Durably replaces the state of the state's origin.
    pub(crate) fn store(&self, state: &LogState) -> Result<(), WitnessError> {
        let path = self.dir.join(file_name(&state.checkpoint.origin));
        fsutil::write_atomic(&path, state.note.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_lock_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        assert!(
            StateDir::open(dir.path()).is_err(),
            "the directory is locked"
        );
        assert_eq!(s.load("log.example").unwrap(), None);
        let cp = Checkpoint {
            origin: "log.example".into(),
            size: 3,
            root: [5; 32],
        };
        let st = LogState {
            note: format!("{}\n\u{2014} w AAAAAAA=\n", cp.to_text()),
            checkpoint: cp,
        };
        s.store(&st).unwrap();
        assert_eq!(s.load("log.example").unwrap(), Some(st.clone()));
        fs::write(dir.path().join(file_name("log.example")), "garbage").unwrap();
        assert!(matches!(
            s.load("log.example"),
            Err(WitnessError::State { .. })
        ));
        fs::write(dir.path().join(file_name("other")), &st.note).unwrap();
        assert!(
            s.load("other").is_err(),
            "a file for another origin is refused"
        );
    }
}
