//! Sealing secrets at rest: XChaCha20-Poly1305 under a caller-held 32-byte key, with a random
//! 24-byte nonce per seal (large enough that random nonces never collide in practice) and the
//! owning record's id plus a [`Purpose`] as associated data, so a sealed value cannot be moved to
//! another record or field without failing to open.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::error::CoreError;

/// Nonce length of XChaCha20-Poly1305.
const NONCE_LEN: usize = 24;

/// What a sealed value is, bound into its associated data. The names are part of the stored
/// format: a value sealed under one purpose never opens under another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A client secret's value (onboarding records and managed registrations).
    ClientSecret,
    /// The signed-in admin's delegated access token kept with an onboarding.
    AdminToken,
    /// A tenant admin session's refresh token (day two).
    AdminRefreshToken,
}

impl Purpose {
    /// The name bound into the associated data.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::ClientSecret => "client_secret",
            Purpose::AdminToken => "admin_token",
            Purpose::AdminRefreshToken => "admin_refresh_token",
        }
    }
}

/// The key that seals client secrets and admin tokens in the state store.
pub struct SealingKey {
    /// The key bytes, wiped on drop.
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// Wraps the caller's key.
    pub fn new(key: impl Into<Zeroizing<[u8; 32]>>) -> Self {
        Self { key: key.into() }
    }

    /// The key that MACs state-store records ([`crate::store::RecordMac`]), derived from this
    /// one (HMAC-SHA-256 over a fixed label), so one key file protects both and neither key
    /// reveals the other.
    pub fn record_mac(&self) -> crate::store::RecordMac {
        crate::store::RecordMac::derive(&self.key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.key).into())
    }

    /// Seals `secret` for `(owner, purpose)`; returns base64(nonce || ciphertext). `owner` is
    /// the id of the record that holds the value (an onboarding, a registration, a tenant).
    pub fn seal(
        &self,
        owner: &str,
        purpose: Purpose,
        secret: &SecretString,
    ) -> Result<String, CoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| CoreError::Crypto(format!("no randomness for a nonce: {e}")))?;
        let aad = aad(owner, purpose);
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CoreError::Crypto("sealing failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(STANDARD.encode(out))
    }

    /// Opens what [`SealingKey::seal`] made for the same `(owner, purpose)`.
    pub fn open(
        &self,
        owner: &str,
        purpose: Purpose,
        sealed: &str,
    ) -> Result<SecretString, CoreError> {
        let raw = STANDARD
            .decode(sealed)
            .map_err(|_| CoreError::Crypto("sealed value is not base64".into()))?;
        if raw.len() < NONCE_LEN {
            return Err(CoreError::Crypto("sealed value is too short".into()));
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let aad = aad(owner, purpose);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| {
                    CoreError::Crypto(
                        "cannot open the sealed value (wrong key, or the record was altered)"
                            .into(),
                    )
                })?,
        );
        let text = std::str::from_utf8(&plain)
            .map_err(|_| CoreError::Crypto("sealed value is not UTF-8".into()))?;
        Ok(SecretString::from(text.to_owned()))
    }
}

/// The associated data. The `onboard/provision/v1` prefix predates this crate and stays: it is
/// part of every stored sealed value.
fn aad(owner: &str, purpose: Purpose) -> Vec<u8> {
    format!("onboard/provision/v1\n{owner}\n{}", purpose.as_str()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = SealingKey::new([9u8; 32]);
        let s = SecretString::from("s3cr3t~value".to_string());
        let sealed = k.seal("onb-1", Purpose::ClientSecret, &s).expect("seal");
        assert!(!sealed.contains("s3cr3t"));
        let back = k
            .open("onb-1", Purpose::ClientSecret, &sealed)
            .expect("open");
        assert_eq!(back.expose_secret(), "s3cr3t~value");
        // Bound to the record and purpose.
        assert!(k.open("onb-2", Purpose::ClientSecret, &sealed).is_err());
        assert!(k.open("onb-1", Purpose::AdminToken, &sealed).is_err());
        // Wrong key.
        assert!(
            SealingKey::new([8u8; 32])
                .open("onb-1", Purpose::ClientSecret, &sealed)
                .is_err()
        );
        // Fresh nonce each time.
        assert_ne!(
            sealed,
            k.seal("onb-1", Purpose::ClientSecret, &s).expect("seal")
        );
    }
}
