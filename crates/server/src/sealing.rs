//! Sealed delivery (`proto/onboard/v1/delivery.proto`): a client secret leaves in an answer
//! either in the clear, protected by the connection's TLS only, or sealed with HPKE (RFC 9180:
//! base mode, single shot; DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the
//! X25519 key the request named, `info` [`INFO`] and `aad` the secret's key id, so that only
//! the holder of the private key reads it and a sealed secret moved to another key id does not
//! open. rust-hpke does the cryptography.
//!
//! Architecture invariant: the key is checked when the request is read, before anything is
//! claimed or changed (its length, then a trial seal: a low-order point makes every shared
//! secret zero, which RFC 9180 §7.1.4 refuses); a refused key is INVALID_ARGUMENT on
//! `seal_to.x25519_public_key`.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeS, Serializable};
use onboard_core::audit::{Action, AuditEntry, Phase, Scope, Target};
use onboard_proto::v1 as pb;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Result, ServerError};

/// HPKE's `info` for every sealed client secret.
pub const INFO: &[u8] = b"onboard.v1 client secret";

/// The field a refused key is named by.
const FIELD: &str = "seal_to.x25519_public_key";

/// The recipient's public key, checked.
type PublicKey = <X25519HkdfSha256 as Kem>::PublicKey;

/// How a secret leaves in an answer.
#[derive(Clone)]
pub enum Delivery {
    /// In the clear (the answer's `secret`).
    Clear,
    /// Sealed to this key (the answer's `sealed`; `secret` empty).
    Sealed(PublicKey),
}

impl Delivery {
    /// The delivery a request's `seal_to` asks for; INVALID_ARGUMENT for a key no secret can
    /// be sealed to.
    pub fn from_request(seal_to: Option<&pb::SealTo>) -> Result<Self> {
        let Some(to) = seal_to else {
            return Ok(Self::Clear);
        };
        let bytes = &to.x25519_public_key;
        if bytes.len() != 32 {
            return Err(ServerError::invalid(
                FIELD,
                format!(
                    "is {} bytes; an X25519 public key (RFC 9180 SerializePublicKey) is 32",
                    bytes.len()
                ),
            ));
        }
        let key = PublicKey::from_bytes(bytes)
            .map_err(|e| ServerError::invalid(FIELD, format!("is not an X25519 key: {e}")))?;
        seal(&key, b"", "").map_err(|_| {
            ServerError::invalid(
                FIELD,
                "is a low-order point: every shared secret with it is zero (RFC 9180 §7.1.4)",
            )
        })?;
        Ok(Self::Sealed(key))
    }

    /// How the `secret.hand_over` audit entry names it: `clear` or `sealed`.
    fn name(&self) -> &'static str {
        match self {
            Self::Clear => "clear",
            Self::Sealed(_) => "sealed",
        }
    }

    /// The `secret.hand_over` entry of secret `target` put in an answer to `scope`'s actor this
    /// way (`delivery`), with a correlation id of its own (an intent's outcome reuses it).
    pub fn hand_over_entry(&self, phase: Phase, scope: &Scope, target: Target) -> AuditEntry {
        AuditEntry::new(Action::SecretHandOver, phase, scope)
            .with_target(target)
            .with_request_ids(None, Some(uuid::Uuid::new_v4().to_string()))
            .with_detail("delivery", self.name())
    }

    /// The secret as the answer carries it: `(secret, sealed)`, one of them empty.
    pub fn deliver(
        &self,
        secret: &SecretString,
        key_id: &str,
    ) -> Result<(String, Option<pb::SealedSecret>)> {
        match self {
            Self::Clear => Ok((secret.expose_secret().to_owned(), None)),
            Self::Sealed(key) => {
                let sealed = seal(key, secret.expose_secret().as_bytes(), key_id)
                    .map_err(|e| ServerError::Internal(format!("sealing the secret: {e}")))?;
                Ok((String::new(), Some(sealed)))
            }
        }
    }
}

/// `plaintext` sealed to `key` with [`INFO`] and `key_id` as `aad`.
fn seal(
    key: &PublicKey,
    plaintext: &[u8],
    key_id: &str,
) -> Result<pb::SealedSecret, hpke::HpkeError> {
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeS::Base,
        key,
        INFO,
        plaintext,
        key_id.as_bytes(),
    )?;
    Ok(pb::SealedSecret {
        enc: enc.to_bytes().to_vec(),
        ciphertext,
    })
}
