//! Invitation tokens: 32 random bytes and a truncated HMAC-SHA256 tag, base64url.
//!
//! The tag lets a forged or mistyped token be rejected before any storage lookup; the random
//! part makes each token unguessable. Only the SHA-256 of the whole token string is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{InvitationError, Result};

/// Random bytes per token: 256 bits, unguessable.
const NONCE_LEN: usize = 32;
/// Tag bytes kept: 128 bits is plenty against forgery and keeps links short.
const TAG_LEN: usize = 16;
/// Separates this MAC's inputs from any other use of the key.
const DOMAIN: &[u8] = b"onboard invitation token v1\n";
/// Separates the derivation of a keyed create's random part (`TokenKey::mint_for`).
const IDEMPOTENT_DOMAIN: &[u8] = b"onboard invitation idempotent token v1\n";

/// The server's token MAC key.
pub struct TokenKey {
    /// 32 secret bytes; zeroed when dropped.
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

/// A freshly minted token with the hash that is stored instead of it.
pub struct MintedToken {
    /// The token string, handed out once.
    pub token: Zeroizing<String>,
    /// SHA-256 of `token`, the only form the server keeps.
    pub hash: [u8; 32],
}

impl TokenKey {
    /// A key from 32 bytes.
    pub fn new(key: impl Into<Zeroizing<[u8; 32]>>) -> Self {
        Self { key: key.into() }
    }

    /// A new random key.
    pub fn generate() -> Result<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut())
            .map_err(|e| InvitationError::Internal(format!("no system randomness: {e}")))?;
        Ok(Self { key })
    }

    /// The raw bytes, for storing a generated key.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// HMAC-SHA256 under the key, its input starting with `domain`.
    fn mac_in(&self, domain: &[u8]) -> Result<Hmac<Sha256>> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.as_ref())
            .map_err(|_| InvitationError::Internal("HMAC key length".into()))?;
        m.update(domain);
        Ok(m)
    }

    /// The tag's MAC.
    fn mac(&self) -> Result<Hmac<Sha256>> {
        self.mac_in(DOMAIN)
    }

    /// Mints a new token.
    pub fn mint(&self) -> Result<MintedToken> {
        let mut raw = Zeroizing::new([0u8; NONCE_LEN + TAG_LEN]);
        getrandom::fill(&mut raw[..NONCE_LEN])
            .map_err(|e| InvitationError::Internal(format!("no system randomness: {e}")))?;
        self.finish(raw)
    }

    /// The token of `caller`'s create with idempotency key `key`: the same for the same
    /// three inputs, so a retried create finds its invitation by the stored hash. Its random
    /// part is HMAC-SHA256 under the server's key (a pseudorandom function: unguessable
    /// without the key, as a random token is), in a domain of its own; the tag is as any
    /// token's, so it verifies the same way.
    pub fn mint_for(&self, caller: &str, key: &str) -> Result<MintedToken> {
        let mut m = self.mac_in(IDEMPOTENT_DOMAIN)?;
        // Length-prefixed, so no two (caller, key) pairs give the same input.
        m.update(&(caller.len() as u64).to_be_bytes());
        m.update(caller.as_bytes());
        m.update(key.as_bytes());
        let nonce = m.finalize().into_bytes();
        let mut raw = Zeroizing::new([0u8; NONCE_LEN + TAG_LEN]);
        raw[..NONCE_LEN].copy_from_slice(&nonce[..NONCE_LEN]);
        self.finish(raw)
    }

    /// Tags the random part in `raw` and encodes the token.
    fn finish(&self, mut raw: Zeroizing<[u8; NONCE_LEN + TAG_LEN]>) -> Result<MintedToken> {
        let mut m = self.mac()?;
        m.update(&raw[..NONCE_LEN]);
        let tag = m.finalize().into_bytes();
        raw[NONCE_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_ref()));
        let hash = token_hash(&token);
        Ok(MintedToken { token, hash })
    }

    /// Checks a token's tag (in constant time) and returns the hash to look it up by.
    pub fn verify(&self, token: &str) -> Result<[u8; 32]> {
        let invalid = || InvitationError::invalid("token", "not a valid invitation token");
        let raw = Zeroizing::new(URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?);
        if raw.len() != NONCE_LEN + TAG_LEN {
            return Err(invalid());
        }
        let mut m = self.mac()?;
        m.update(&raw[..NONCE_LEN]);
        m.verify_truncated_left(&raw[NONCE_LEN..])
            .map_err(|_| invalid())?;
        Ok(token_hash(token))
    }
}

/// SHA-256 of the token string.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_tampered_ones_do_not() {
        let k = TokenKey::generate().expect("key");
        let t = k.mint().expect("mint");
        assert_eq!(k.verify(&t.token).expect("valid"), t.hash);
        // Flip one character of the random part.
        let mut s = t.token.to_string();
        let c = if s.starts_with('A') { "B" } else { "A" };
        s.replace_range(0..1, c);
        assert!(k.verify(&s).is_err());
        // Another key's token.
        let other = TokenKey::generate().expect("key").mint().expect("mint");
        assert!(k.verify(&other.token).is_err());
        assert!(k.verify("not base64 !").is_err());
        // A keyed create's token: the same for the same caller and key, verifies like any
        // other, and differs for another caller, key or server key.
        let a = k.mint_for("op", "key-1").expect("mint");
        assert_eq!(*a.token, *k.mint_for("op", "key-1").expect("mint").token);
        assert_eq!(k.verify(&a.token).expect("valid"), a.hash);
        for (caller, key) in [("op", "key-2"), ("op2", "key-1"), ("opk", "ey-1")] {
            assert_ne!(*a.token, *k.mint_for(caller, key).expect("mint").token);
        }
        let other = TokenKey::generate().expect("key");
        assert_ne!(
            *a.token,
            *other.mint_for("op", "key-1").expect("mint").token
        );
        assert!(k.verify("").is_err());
    }
}
