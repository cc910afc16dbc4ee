//! The emulator's own little PKI: a CA that clients trust and a loopback server certificate.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::SimError;

/// Certificates and keys for one emulator run.
pub struct TlsMaterial {
    /// The CA certificate, which clients add to their trust store (also written to `ca.pem`).
    pub ca_pem: String,
    /// rustls configuration serving the leaf certificate signed by that CA.
    pub server_config: Arc<rustls::ServerConfig>,
}

fn ca_params() -> Result<CertificateParams, SimError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Onboard Entra emulator CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Onboard test fixtures");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn tls_err(e: impl std::fmt::Display) -> SimError {
    SimError::Tls(e.to_string())
}

/// Loads the CA from `state_dir` when an earlier run left one (so clients that trusted it keep
/// working after a restart), otherwise makes a new one and saves it there.
fn load_or_make_ca(state_dir: Option<&Path>) -> Result<(String, KeyPair), SimError> {
    if let Some(dir) = state_dir {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca-key.pem");
        if let (Ok(cert), Ok(key)) = (
            std::fs::read_to_string(&cert_path),
            std::fs::read_to_string(&key_path),
        ) && let Ok(kp) = KeyPair::from_pem(&key)
        {
            return Ok((cert, kp));
        }
    }
    let key = KeyPair::generate().map_err(tls_err)?;
    let cert = ca_params()?.self_signed(&key).map_err(tls_err)?;
    let pem = cert.pem();
    if let Some(dir) = state_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.pem"), &pem)?;
        write_private(&dir.join("ca-key.pem"), key.serialize_pem())?;
    }
    Ok((pem, key))
}

/// Writes a private key readable by the owner only.
#[cfg(unix)]
pub fn write_private(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), SimError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_ref())?;
    Ok(())
}

/// Writes a private key (no permission bits to set on this platform).
#[cfg(not(unix))]
pub fn write_private(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), SimError> {
    std::fs::write(path, contents)?;
    Ok(())
}

/// Builds the CA (or reloads it) and a fresh server certificate for 127.0.0.1, ::1 and localhost.
pub fn build(state_dir: Option<&Path>) -> Result<TlsMaterial, SimError> {
    let (ca_pem, ca_key) = load_or_make_ca(state_dir)?;
    // An issuer rebuilt from the same name and key signs leaf certificates that chain to the
    // saved CA, so clients that trusted it before a restart still do.
    let issuer = Issuer::new(ca_params()?, ca_key);

    let mut leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(tls_err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "Entra emulator");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate().map_err(tls_err)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(tls_err)?;

    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
        rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
    );
    // An explicit provider: the emulator chooses no process-wide one (its host does).
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key_der)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem,
        server_config: Arc::new(config),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_saved_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = build(Some(dir.path())).unwrap();
        let on_disk = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        assert_eq!(first.ca_pem, on_disk);
        assert!(on_disk.starts_with("-----BEGIN CERTIFICATE-----"));
        let second = build(Some(dir.path())).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
    }
}
