//! Who may read: the `[audit_http]` settings, and the TLS configuration they imply.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::HttpError;

/// The access setting as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessKind {
    /// Anyone who can reach the listener may read (a public log, or one behind a CDN).
    Open,
    /// A bearer token whose SHA-256 is listed in `token_sha256`.
    Bearer,
    /// A client certificate issued by `client_ca` (TLS is then required).
    Mtls,
}

/// `[audit_http]` in the server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the read-only tiles API listens (its own port, apart from gRPC).
    pub listen: SocketAddr,
    /// Who may read: `open`, `bearer` or `mtls`. No default: an audit log may hold personal
    /// data, so opening it to everyone must be a decision.
    pub access: AccessKind,
    /// For `bearer`: the SHA-256 (64 hex digits) of each accepted token; tokens themselves are
    /// never configured, so the configuration file holds nothing that grants access.
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// Server certificate chain (PEM); with `tls_key`, the API is served over HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// For `mtls`: the CA (PEM) whose client certificates are accepted.
    pub client_ca: Option<PathBuf>,
}

/// Who may read, resolved.
#[derive(Clone)]
pub enum Access {
    /// Anyone.
    Open,
    /// Callers presenting `Authorization: Bearer <token>` with one of these SHA-256 hashes.
    Bearer {
        /// SHA-256 of each accepted token; only hashes are held.
        token_sha256: Arc<HashSet<[u8; 32]>>,
    },
    /// Callers whose client certificate the TLS handshake verified.
    Mtls,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open => f.write_str("Open"),
            Self::Bearer { token_sha256 } => write!(f, "Bearer({} tokens)", token_sha256.len()),
            Self::Mtls => f.write_str("Mtls"),
        }
    }
}

impl Access {
    /// Bearer access for these tokens (hashed here; the tokens are not kept).
    pub fn bearer_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Self {
        Self::Bearer {
            token_sha256: Arc::new(
                tokens
                    .into_iter()
                    .map(|t| Sha256::digest(t.as_bytes()).into())
                    .collect(),
            ),
        }
    }

    /// Whether responses may be kept by shared caches (CDNs): only when anyone may read.
    pub(crate) fn public(&self) -> bool {
        matches!(self, Self::Open)
    }
}

/// Everything [`crate::serve`] needs besides the log and the listener.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Who may read.
    pub access: Access,
    /// HTTPS when set (required for [`Access::Mtls`], whose client verification lives here).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The checkpoint `/checkpoint` serves: `None` for the log's own latest, or a feed of
    /// checkpoints a witness quorum cosigned (the note with their cosignature lines; the log's
    /// own latest until the feed has one).
    pub feed: Option<audit_log::CheckpointFeed>,
}

impl Settings {
    /// Checks the settings and loads the TLS material they name.
    pub fn build(&self) -> Result<HttpConfig, HttpError> {
        let tls_pair = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => {
                return Err(HttpError::Config(
                    "tls_cert and tls_key must be given together".into(),
                ));
            }
        };
        let access = match self.access {
            AccessKind::Open => Access::Open,
            AccessKind::Bearer => {
                if self.token_sha256.is_empty() {
                    return Err(HttpError::Config(
                        "access = \"bearer\" needs at least one token_sha256".into(),
                    ));
                }
                let mut set = HashSet::new();
                for (i, h) in self.token_sha256.iter().enumerate() {
                    let mut hash = [0u8; 32];
                    hex::decode_to_slice(h.trim(), &mut hash).map_err(|_| {
                        HttpError::Config(format!(
                            "token_sha256[{i}] must be 64 hex digits (the SHA-256 of the token)"
                        ))
                    })?;
                    set.insert(hash);
                }
                Access::Bearer {
                    token_sha256: Arc::new(set),
                }
            }
            AccessKind::Mtls => Access::Mtls,
        };
        if !matches!(self.access, AccessKind::Bearer) && !self.token_sha256.is_empty() {
            return Err(HttpError::Config(
                "token_sha256 is only used with access = \"bearer\"".into(),
            ));
        }
        let client_ca = match (&self.client_ca, self.access) {
            (Some(ca), AccessKind::Mtls) => Some(read(ca)?),
            (None, AccessKind::Mtls) => {
                return Err(HttpError::Config(
                    "access = \"mtls\" needs client_ca (and tls_cert, tls_key)".into(),
                ));
            }
            (Some(_), _) => {
                return Err(HttpError::Config(
                    "client_ca is only used with access = \"mtls\"".into(),
                ));
            }
            (None, _) => None,
        };
        let tls = match tls_pair {
            Some((cert, key)) => Some(server_tls(&cert, &key, client_ca.as_deref())?),
            None if client_ca.is_some() => {
                return Err(HttpError::Config(
                    "access = \"mtls\" needs tls_cert and tls_key".into(),
                ));
            }
            None => None,
        };
        Ok(HttpConfig {
            access,
            tls,
            feed: None,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, HttpError> {
    std::fs::read(path).map_err(|e| HttpError::io(format!("reading {}", path.display()), e))
}

/// A rustls server configuration (aws-lc, the workspace's one provider) from PEM: the
/// certificate chain, its key and, for mTLS, the CA whose client certificates are required.
pub fn server_tls(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>, HttpError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| HttpError::Tls(format!("{what}: {e}"));
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls("tls_cert", &e))?;
    if certs.is_empty() {
        return Err(HttpError::Tls(
            "tls_cert: no certificate in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| tls("tls_key", &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("protocol versions", &e))?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots
                    .add(c.map_err(|e| tls("client_ca", &e))?)
                    .map_err(|e| tls("client_ca", &e))?;
            }
            if roots.is_empty() {
                return Err(HttpError::Tls(
                    "client_ca: no certificate in the file".into(),
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls("client_ca", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls("tls_cert/tls_key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> Result<HttpConfig, String> {
        let s: Settings = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        s.build().map_err(|e| e.to_string())
    }

    #[test]
    fn settings_are_checked() {
        let ok = settings("listen = \"127.0.0.1:0\"\naccess = \"open\"").unwrap();
        assert!(matches!(ok.access, Access::Open) && ok.tls.is_none());
        let h = hex::encode(Sha256::digest(b"t"));
        let b = settings(&format!(
            "listen = \"127.0.0.1:0\"\naccess = \"bearer\"\ntoken_sha256 = [\"{h}\"]"
        ))
        .unwrap();
        assert_eq!(format!("{:?}", b.access), "Bearer(1 tokens)");
        for (text, want) in [
            ("access = \"open\"", "missing field `listen`"),
            ("listen = \"127.0.0.1:0\"", "missing field `access`"),
            (
                "listen = \"127.0.0.1:0\"\naccess = \"everyone\"",
                "unknown variant",
            ),
            (
                "listen = \"127.0.0.1:0\"\naccess = \"bearer\"",
                "at least one token_sha256",
            ),
            (
                "listen = \"127.0.0.1:0\"\naccess = \"bearer\"\ntoken_sha256 = [\"abc\"]",
                "token_sha256[0] must be 64 hex digits",
            ),
            (
                "listen = \"127.0.0.1:0\"\naccess = \"open\"\ntoken_sha256 = [\"abc\"]",
                "only used with access = \"bearer\"",
            ),
            (
                "listen = \"127.0.0.1:0\"\naccess = \"mtls\"",
                "needs client_ca",
            ),
            (
                "listen = \"127.0.0.1:0\"\naccess = \"open\"\ntls_cert = \"/x\"",
                "must be given together",
            ),
            (
                "listen = \"127.0.0.1:0\"\naccess = \"open\"\nport = 1",
                "unknown field `port`",
            ),
        ] {
            let e = settings(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
