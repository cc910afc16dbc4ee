//! Throwaway keys: the audit log's signing key and the sealing key. Fixed bytes, so a test that
//! reopens a directory opens it with the same key; never used outside tests.

use std::path::Path;

use anyhow::Result;
use audit_log::NoteSigner;

/// The audit log origin every test log and test server uses.
pub const ORIGIN: &str = "onboard.test/audit";

/// The key that seals client secrets and admin tokens at rest in engine-level tests.
pub const SEALING_KEY: [u8; 32] = [42u8; 32];

/// The fixed Ed25519 key of test audit logs (the same on every call).
pub fn log_signer() -> NoteSigner {
    NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]))
        .expect("the test origin is a valid key name")
}

/// Writes a fresh signing key for [`ORIGIN`] to `path` (PKCS#8 PEM, as `onboard keygen` does)
/// and returns its verifier key (`name+id+base64`), for `onboard audit verify --vkey`.
pub fn write_signing_key(path: &Path) -> Result<String> {
    let signer = NoteSigner::generate(ORIGIN)?;
    write_key_file(path, signer.to_pkcs8_pem()?.as_bytes())?;
    Ok(signer.verifier().to_string())
}

/// Writes a key file readable by its owner only (`0600`), as the server requires of keys.
pub fn write_key_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}
