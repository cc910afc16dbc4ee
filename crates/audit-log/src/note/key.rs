//! Named Ed25519 keys as signed notes use them, for any signature type: the key name, the key id
//! `SHA-256(name || "\n" || type || public key)[:4]`, and the key strings of
//! golang.org/x/mod/sumdb/note (`<name>+<hex id>+base64(type || key)`, private ones after
//! `PRIVATE+KEY+`). Plain note signatures (type 0x01, [`super::NoteSigner`]) and the witness
//! crate's C2SP tlog-cosignature/v1 keys (type 0x04) are both built on these.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::NoteError;

/// The prefix of Go's private key strings.
pub const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// `s`, a key string given where a verifier key belongs, as an error may name it: quoted, but a
/// private key given by mistake is never repeated (errors reach terminals and logs).
pub fn key_shown(s: &str) -> String {
    if s.contains(PRIVATE_KEY_PREFIX) {
        "a private key (PRIVATE+KEY+…, not repeated here; give its verifier key)".into()
    } else {
        format!("{s:?}")
    }
}

/// A key name as the note format allows: non-empty, no white space, no `+`.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::MalformedKey(format!(
            "key name {name:?} must be non-empty with no '+' or white space"
        )));
    }
    Ok(())
}

/// `SHA-256(name || "\n" || alg || public key)[:4]` as a big-endian integer: the key id of a key
/// of signature type `alg`.
pub fn key_hash(name: &str, alg: u8, public: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A key string split into its parts.
pub struct KeyParts<'a> {
    /// The key name.
    pub name: &'a str,
    /// The key id as written.
    pub id: u32,
    /// The signature type byte.
    pub alg: u8,
    /// The 32 key bytes (a seed or a public key); zeroised on drop.
    pub bytes: Zeroizing<[u8; 32]>,
}

/// Splits `<name>+<hex id>+<base64>` on the first two `+` (base64 may contain `+`) and decodes
/// the key material into its type byte and 32 key bytes.
pub fn split_key(s: &str) -> Result<KeyParts<'_>, NoteError> {
    let bad = |m: String| NoteError::MalformedKey(m);
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("want <name>+<hex key id>+<base64 key>".into()));
    };
    check_key_name(name)?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("key id {id:?} is not 8 hex digits")));
    }
    let id = u32::from_str_radix(id, 16).map_err(|e| bad(format!("key id: {e}")))?;
    let raw = Zeroizing::new(B64.decode(key).map_err(|e| bad(format!("base64: {e}")))?);
    if let Some(&alg) = raw.first().filter(|&&a| a != 0x01 && a != 0x04) {
        return Err(bad(format!(
            "key type 0x{alg:02x} is not supported: only Ed25519 keys are (type 0x01, or 0x04 \
             for cosignature/v1); ML-DSA-44 (0x06) and other types are not"
        )));
    }
    if raw.len() != 33 {
        return Err(bad(format!(
            "want a type byte and 32 key bytes, got {} bytes",
            raw.len()
        )));
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    bytes.copy_from_slice(&raw[1..]);
    Ok(KeyParts {
        name,
        id,
        alg: raw[0],
        bytes,
    })
}

/// `<name>+<hex id>+base64(alg || key)`.
fn encode_key(name: &str, key_id: u32, alg: u8, key: &[u8; 32]) -> Zeroizing<String> {
    let mut raw = Zeroizing::new(Vec::with_capacity(33));
    raw.push(alg);
    raw.extend_from_slice(key);
    Zeroizing::new(format!("{name}+{key_id:08x}+{}", B64.encode(&*raw)))
}

/// An Ed25519 signing key with the name and key id its signature lines carry, for one signature
/// type.
pub struct NamedSigningKey {
    /// The key name; signature lines carry it and the key id commits to it.
    name: String,
    /// The signature type byte the key id and the key strings are made with.
    alg: u8,
    /// Cached key id, written into every signature.
    key_id: u32,
    /// The secret key; zeroised on drop and never printed.
    key: SigningKey,
}

impl fmt::Debug for NamedSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:08x}", self.name, self.key_id)
    }
}

impl NamedSigningKey {
    /// A key of signature type `alg` from a name and a key.
    pub fn new(name: &str, alg: u8, key: SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            alg,
            key_id: key_hash(name, alg, &key.verifying_key()),
            key,
        })
    }

    /// A fresh random key of signature type `alg`.
    pub fn generate(name: &str, alg: u8) -> Result<Self, NoteError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|e| NoteError::MalformedKey(format!("no system randomness: {e}")))?;
        Self::new(name, alg, SigningKey::from_bytes(&seed))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.key.sign(msg)
    }

    /// The key in Go's private key form, with this key's type byte.
    pub fn to_go_private_key(&self) -> Zeroizing<String> {
        let body = encode_key(&self.name, self.key_id, self.alg, self.key.as_bytes());
        Zeroizing::new(format!("{PRIVATE_KEY_PREFIX}{}", &*body))
    }

    /// The key as PKCS#8 PEM (the name is not part of it).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, NoteError> {
        self.key
            .to_pkcs8_pem(Default::default())
            .map_err(|e| NoteError::MalformedKey(format!("PKCS#8 encode: {e}")))
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> NamedVerifyingKey {
        NamedVerifyingKey {
            name: self.name.clone(),
            alg: self.alg,
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }
}

/// An Ed25519 public key with its name and key id, for one signature type; displayed as the
/// verifier key string `<name>+<hex id>+base64(type || public key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedVerifyingKey {
    /// The key name, matched against each signature line's name.
    name: String,
    /// The signature type byte the key id and the key string are made with.
    alg: u8,
    /// The key id, matched against each signature's first four bytes.
    key_id: u32,
    /// The public key.
    key: VerifyingKey,
}

impl NamedVerifyingKey {
    /// A verifier key of signature type `alg` from a name and 32 public key bytes; its key id is
    /// computed (compare it with a written one). Weak keys are refused.
    pub fn from_bytes(name: &str, alg: u8, bytes: &[u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|e| NoteError::MalformedKey(format!("Ed25519 public key: {e}")))?;
        if key.is_weak() {
            return Err(NoteError::MalformedKey("weak Ed25519 public key".into()));
        }
        Ok(Self {
            name: name.to_owned(),
            alg,
            key_id: key_hash(name, alg, &key),
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether `sig` is this key's signature of `msg` (strict Ed25519 verification).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.key
            .verify_strict(msg, &Signature::from_bytes(sig))
            .is_ok()
    }
}

impl fmt::Display for NamedVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = encode_key(&self.name, self.key_id, self.alg, self.key.as_bytes());
        f.write_str(&body)
    }
}
