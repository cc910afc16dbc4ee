//! Configuration files: the witness server's (`onboard witness --config`) and the `[[witness]]`
//! entries a log's configuration lists for its submitter.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use audit_log::note::{self, NoteVerifier};
use serde::Deserialize;

use crate::client::WitnessEndpoint;
use crate::cosig::CosignerVerifier;
use crate::error::WitnessError;
use crate::witness::TrustedLog;

/// The default per-request timeout for a witness.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// `onboard witness --config FILE`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessServerConfig {
    /// Address to listen on, e.g. `0.0.0.0:7380`.
    pub listen: SocketAddr,
    /// The witness key file (`PRIVATE+KEY+…`, from `onboard witness keygen`).
    pub key: PathBuf,
    /// Where per-log state is persisted.
    pub state_dir: PathBuf,
    /// The logs this witness cosigns for.
    #[serde(rename = "log", default)]
    pub logs: Vec<LogEntry>,
}

/// One `[[log]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// The checkpoint origin line.
    pub origin: String,
    /// The log's verifier keys (`name+id+base64`); several during a key rotation.
    pub vkeys: Vec<String>,
}

impl WitnessServerConfig {
    /// Reads and checks a TOML file; relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Self, WitnessError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| WitnessError::io(format!("reading {}", path.display()), e))?;
        let mut c: Self = toml::from_str(&text)
            .map_err(|e| WitnessError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.key = base.join(&c.key);
        c.state_dir = base.join(&c.state_dir);
        c.trusted_logs()?;
        Ok(c)
    }

    /// The logs with their keys parsed.
    pub fn trusted_logs(&self) -> Result<Vec<TrustedLog>, WitnessError> {
        if self.logs.is_empty() {
            return Err(WitnessError::Config(
                "no [[log]] configured: the witness would refuse every checkpoint".into(),
            ));
        }
        self.logs
            .iter()
            .map(|l| {
                if l.origin.is_empty() || l.origin.contains('\n') {
                    return Err(WitnessError::Config(format!(
                        "log origin {:?} must be one non-empty line",
                        l.origin
                    )));
                }
                let verifiers = l
                    .vkeys
                    .iter()
                    .map(|k| {
                        NoteVerifier::parse(k).map_err(|e| {
                            WitnessError::Config(format!(
                                "log {:?}: vkey {}: {e}",
                                l.origin,
                                note::key_shown(k)
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if verifiers.is_empty() {
                    return Err(WitnessError::Config(format!(
                        "log {:?} has no vkeys",
                        l.origin
                    )));
                }
                Ok(TrustedLog {
                    origin: l.origin.clone(),
                    verifiers,
                })
            })
            .collect()
    }
}

/// One `[[witness]]` entry of a log's configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WitnessEndpointConfig {
    /// The witness's submission prefix (`http://` or `https://`).
    pub url: String,
    /// Its cosigner verifier key.
    pub vkey: String,
    /// Per-request timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl WitnessEndpointConfig {
    /// The checked endpoint.
    pub fn to_endpoint(&self) -> Result<WitnessEndpoint, WitnessError> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(WitnessError::Config(format!(
                "witness url {:?} must start with https:// or http://",
                self.url
            )));
        }
        if self.timeout_ms == 0 {
            return Err(WitnessError::Config(format!(
                "witness {}: timeout_ms must be positive",
                self.url
            )));
        }
        let verifier = CosignerVerifier::parse(&self.vkey)
            .map_err(|e| WitnessError::Config(format!("witness {}: vkey: {e}", self.url)))?;
        Ok(WitnessEndpoint {
            url: self.url.clone(),
            verifier,
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosig::CosignerKey;
    use audit_log::NoteSigner;

    #[test]
    fn server_config_parses_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let log = NoteSigner::generate("log.example/a").unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:0\"\nkey = \"w.key\"\nstate_dir = \"state\"\n[[log]]\norigin = \"log.example/a\"\nvkeys = [\"{}\"]\n",
                log.verifier()
            ),
        )
        .unwrap();
        let c = WitnessServerConfig::load(&path).unwrap();
        assert_eq!(c.key, dir.path().join("w.key"));
        assert_eq!(c.trusted_logs().unwrap()[0].verifiers, vec![log.verifier()]);
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:0\"\nkey = \"k\"\nstate_dir = \"s\"\n",
        )
        .unwrap();
        assert!(WitnessServerConfig::load(&path).is_err(), "no logs");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:0\"\nkey = \"k\"\nstate_dir = \"s\"\nbogus = 1\n",
        )
        .unwrap();
        assert!(WitnessServerConfig::load(&path).is_err(), "unknown key");
    }

    #[test]
    fn endpoint_config_checks_url_timeout_and_key() {
        let w = CosignerKey::generate("w.example")
            .unwrap()
            .verifier()
            .to_string();
        let c: WitnessEndpointConfig =
            toml::from_str(&format!("url = \"https://w.example\"\nvkey = \"{w}\"\n")).unwrap();
        assert_eq!(c.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(c.to_endpoint().unwrap().verifier.to_string(), w);
        let bad_url = WitnessEndpointConfig {
            url: "ftp://x".into(),
            ..c.clone()
        };
        assert!(bad_url.to_endpoint().is_err());
        let zero = WitnessEndpointConfig {
            timeout_ms: 0,
            ..c.clone()
        };
        assert!(zero.to_endpoint().is_err());
        let bad_key = WitnessEndpointConfig {
            vkey: "nope".into(),
            ..c
        };
        assert!(bad_key.to_endpoint().is_err());
    }
}
