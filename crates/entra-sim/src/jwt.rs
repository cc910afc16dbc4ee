//! RS256 JSON Web Tokens as the Microsoft identity platform issues them, and the JWKS that
//! publishes the verification key.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sha2::Digest;

use crate::SimError;

/// The token-signing key of this process.
pub struct SigningKey {
    /// RSA-2048 private key; RS256 is what Entra signs with.
    key: KeyPair,
    /// Public modulus and exponent, published in the JWKS.
    public: PublicKeyComponents<Vec<u8>>,
    /// Key id placed in each token header so verifiers pick the right JWKS entry.
    kid: String,
}

static KEY: OnceLock<Result<Arc<SigningKey>, String>> = OnceLock::new();

fn from_key(key: KeyPair) -> SigningKey {
    let public = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
    // Like Entra's kid/x5t: a short, url-safe thumbprint of the public key.
    let digest = sha2::Sha256::digest(&public.n);
    let kid = B64.encode(&digest[..20]);
    SigningKey { key, public, kid }
}

/// The process-wide signing key. RSA key generation is slow in debug builds, so every emulator
/// started by a test binary shares one key.
pub fn signing_key() -> Result<Arc<SigningKey>, SimError> {
    KEY.get_or_init(|| {
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|e| e.to_string())?;
        Ok(Arc::new(from_key(key)))
    })
    .clone()
    .map_err(SimError::Crypto)
}

/// The signing key kept in `state_dir`, so tokens issued before a restart still verify after
/// it; created there (from the process key) on first use.
pub fn signing_key_in(state_dir: Option<&Path>) -> Result<Arc<SigningKey>, SimError> {
    let Some(dir) = state_dir else {
        return signing_key();
    };
    let path = dir.join("token-signing-key.der");
    if let Ok(der) = std::fs::read(&path)
        && let Ok(key) = KeyPair::from_pkcs8(&der)
    {
        return Ok(Arc::new(from_key(key)));
    }
    let key = signing_key()?;
    let der = key
        .key
        .as_der()
        .map_err(|e| SimError::Crypto(e.to_string()))?;
    std::fs::create_dir_all(dir)?;
    crate::tls::write_private(&path, der.as_ref())?;
    Ok(key)
}

impl SigningKey {
    /// Key id used in token headers and the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` as a compact JWS with header `{"typ":"JWT","alg":"RS256","kid":…}`.
    pub fn sign(&self, claims: &Value) -> Result<String, SimError> {
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": self.kid, "x5t": self.kid});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut sig)
            .map_err(|e| SimError::Crypto(e.to_string()))?;
        Ok(format!("{signing_input}.{}", B64.encode(sig)))
    }

    /// Checks the signature of a token this key issued and returns its claims.
    /// Expiry and audience are the caller's business: Graph reports them with distinct errors.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let sig = B64.decode(s).ok()?;
        self.public
            .verify(
                &RSA_PKCS1_2048_8192_SHA256,
                format!("{h}.{c}").as_bytes(),
                &sig,
            )
            .ok()?;
        serde_json::from_slice(&B64.decode(c).ok()?).ok()
    }

    /// The JWKS document served at `/{tenant}/discovery/v2.0/keys`.
    pub fn jwks(&self, issuer: &str) -> Value {
        json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": self.kid,
                "x5t": self.kid,
                "n": B64.encode(&self.public.n),
                "e": B64.encode(&self.public.e),
                "issuer": issuer,
            }]
        })
    }
}

/// Reads a token's claims without checking the signature (for tests and diagnostics).
pub fn decode_claims_unverified(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&B64.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_round_trips_and_tampering_fails() {
        let k = signing_key().unwrap();
        let t = k.sign(&json!({"tid": "t1", "roles": ["A"]})).unwrap();
        assert_eq!(k.verify(&t).unwrap()["tid"], "t1");
        let header: Value =
            serde_json::from_slice(&B64.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], k.kid());
        // Swap in other claims under the same signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(json!({"tid": "t2"}).to_string());
        parts[1] = &forged;
        assert!(k.verify(&parts.join(".")).is_none());
    }

    #[test]
    fn key_in_state_dir_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = signing_key_in(Some(dir.path())).unwrap();
        let t = a.sign(&json!({"x": 1})).unwrap();
        let b = signing_key_in(Some(dir.path())).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_eq!(b.verify(&t).unwrap()["x"], 1);
    }

    #[test]
    fn jwks_publishes_the_signing_kid() {
        let k = signing_key().unwrap();
        let j = k.jwks("https://issuer");
        assert_eq!(j["keys"][0]["kid"], k.kid());
        assert_eq!(j["keys"][0]["e"], "AQAB");
    }
}
