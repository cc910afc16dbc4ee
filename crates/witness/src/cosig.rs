//! C2SP tlog-cosignature v1 with Ed25519 (<https://c2sp.org/tlog-cosignature>).
//!
//! A cosignature is a signed-note signature line `— <name> base64(key id[4] || timestamp[8] ||
//! signature[64])`. The key id is the first four bytes of `SHA-256(name || "\n" || 0x04 ||
//! public key)`; the timestamp is big-endian POSIX seconds; the Ed25519 signature covers
//! `cosignature/v1\ntime <timestamp>\n` followed by the whole checkpoint body. Verifier keys are
//! `name+<hex key id>+base64(0x04 || public key)`.
//!
//! Key files use Go's `PRIVATE+KEY+<name>+<hex key id>+base64(type || seed)` form, written with
//! type 0x04; type 0x01 (what `note.GenerateKey` writes) is read too, as
//! `github.com/transparency-dev/formats/note` does, and the same seed then cosigns as 0x04.

use std::fmt;

use audit_log::Checkpoint;
use audit_log::note::{self, ALG_ED25519, NamedSigningKey, NamedVerifyingKey, SIG_PREFIX};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::error::WitnessError;

/// The signature type byte of Ed25519 cosignature/v1 keys and key ids.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Key id, timestamp and Ed25519 signature.
const COSIG_LEN: usize = 4 + 8 + 64;

/// The cosignature/v1 key id of an Ed25519 cosigner key with this name.
pub fn cosigner_key_id(name: &str, public: &VerifyingKey) -> u32 {
    note::key_hash(name, ALG_COSIGNATURE_V1, public)
}

/// The message a v1 cosignature signs: header line, timestamp line, then the checkpoint body.
pub fn signed_message(timestamp: u64, checkpoint_text: &str) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// The body must be a checkpoint (origin, size, root, optional extension lines) ending in `\n`.
fn check_body(checkpoint_text: &str) -> Result<(), WitnessError> {
    if !checkpoint_text.ends_with('\n') {
        return Err(WitnessError::MalformedRequest(
            "checkpoint body must end in a newline".into(),
        ));
    }
    Checkpoint::parse_text(checkpoint_text)?;
    Ok(())
}

/// Checks a key id read from a file or vkey against the key, for its declared type.
fn check_id(name: &str, alg: u8, id: u32, public: &VerifyingKey) -> Result<(), WitnessError> {
    match alg {
        ALG_COSIGNATURE_V1 | ALG_ED25519 => {
            let want = note::key_hash(name, alg, public);
            if want != id {
                return Err(WitnessError::Key(format!(
                    "key id {id:08x} does not match the key (want {want:08x})"
                )));
            }
            Ok(())
        }
        other => Err(WitnessError::Key(format!(
            "signature type 0x{other:02x} is not Ed25519 (0x01) or Ed25519 cosignature/v1 (0x04)"
        ))),
    }
}

/// A witness's signing key: a name and an Ed25519 key that cosigns checkpoints.
pub struct CosignerKey(
    /// The named key, of type 0x04 (its key id is the cosignature/v1 one).
    NamedSigningKey,
);

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignerKey({:?})", self.0)
    }
}

impl CosignerKey {
    /// A cosigner from a name and a key.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, WitnessError> {
        Ok(Self(NamedSigningKey::new(name, ALG_COSIGNATURE_V1, key)?))
    }

    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, WitnessError> {
        Ok(Self(NamedSigningKey::generate(name, ALG_COSIGNATURE_V1)?))
    }

    /// Reads a key file: `PRIVATE+KEY+<name>+<hex id>+base64(0x04 or 0x01 || seed)`.
    pub fn from_key_file_text(text: &str) -> Result<Self, WitnessError> {
        let rest = text
            .trim()
            .strip_prefix(note::PRIVATE_KEY_PREFIX)
            .ok_or_else(|| WitnessError::Key("expected a PRIVATE+KEY+… line".into()))?;
        let p = note::split_key(rest)?;
        let key = SigningKey::from_bytes(&p.bytes);
        check_id(p.name, p.alg, p.id, &key.verifying_key())?;
        Self::new(p.name, key)
    }

    /// The key in Go's private key form with type 0x04.
    pub fn to_go_private_key(&self) -> Zeroizing<String> {
        self.0.to_go_private_key()
    }

    /// The cosigner name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> CosignerVerifier {
        CosignerVerifier(self.0.verifier())
    }

    /// The cosignature line (ending in `\n`) over `checkpoint_text` at `timestamp`.
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> Result<String, WitnessError> {
        check_body(checkpoint_text)?;
        if timestamp > i64::MAX as u64 {
            return Err(WitnessError::Key(format!(
                "timestamp {timestamp} exceeds 2^63 - 1"
            )));
        }
        let sig = self
            .0
            .sign(signed_message(timestamp, checkpoint_text).as_bytes());
        Ok(Cosignature {
            name: self.0.name().to_owned(),
            key_id: self.0.key_id(),
            timestamp,
            signature: sig.to_bytes(),
        }
        .to_line())
    }
}

/// A witness's verifier key: `name+<hex key id>+base64(0x04 || public key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerVerifier(
    /// The named public key, of type 0x04 (its key id is the cosignature/v1 one).
    NamedVerifyingKey,
);

impl CosignerVerifier {
    /// Parses a verifier key. Type 0x04 is the cosignature/v1 form; a plain Ed25519 note key
    /// (type 0x01) of the same public key is accepted and converted, as Go's
    /// `NewVerifierForCosignatureV1` does. Either way the key id must match its type.
    pub fn parse(vkey: &str) -> Result<Self, WitnessError> {
        let p = note::split_key(vkey.trim())?;
        let key = NamedVerifyingKey::from_bytes(p.name, ALG_COSIGNATURE_V1, &p.bytes)?;
        check_id(p.name, p.alg, p.id, key.key())?;
        Ok(Self(key))
    }

    /// The cosigner name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The cosignature/v1 key id.
    pub fn key_id(&self) -> u32 {
        self.0.key_id()
    }

    /// Whether a signature line names this key (name and key id); such a line must verify.
    pub fn matches(&self, sig: &SignatureLine) -> bool {
        sig.name == self.name() && sig.key_id() == Some(self.key_id())
    }

    /// Checks a signature line naming this key against `checkpoint_text`; `None` if the line
    /// does not verify (wrong length, timestamp beyond 2^63 - 1, or a bad signature).
    pub fn verify(&self, checkpoint_text: &str, sig: &SignatureLine) -> Option<Cosignature> {
        let c = Cosignature::from_line(sig).ok()?;
        if c.name != self.name() || c.key_id != self.key_id() {
            return None;
        }
        let msg = signed_message(c.timestamp, checkpoint_text);
        self.0.verify(msg.as_bytes(), &c.signature).then_some(c)
    }
}

impl fmt::Display for CosignerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One signature line of a signed note, split but not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLine {
    /// The key name.
    pub name: String,
    /// The decoded signature bytes (key id first).
    pub raw: Vec<u8>,
}

impl SignatureLine {
    /// Parses `— <name> <base64>` (without the newline).
    pub fn parse(line: &str) -> Result<Self, WitnessError> {
        let bad = |m: &str| WitnessError::MalformedRequest(format!("signature line {line:?}: {m}"));
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("does not start with '— '"))?;
        let (name, b64) = rest.split_once(' ').ok_or_else(|| bad("no key name"))?;
        note::check_key_name(name).map_err(|_| bad("invalid key name"))?;
        // Go's lenient decoding, as `note::open` reads the same lines: a line it accepts (say,
        // non-zero trailing bits) must not make this parse fail.
        let raw = note::SIG_B64
            .decode(b64)
            .map_err(|_| bad("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(bad("signature is too short"));
        }
        Ok(Self {
            name: name.to_owned(),
            raw,
        })
    }

    /// The lines of a signature block (lines each ending in `\n`, at most `max`) by one of the
    /// `trusted` keys (same name and key id), in order. c2sp.org/signed-note: verifiers "MUST
    /// ignore signatures from unknown keys", and c2sp.org/tlog-witness: "The client MUST ignore
    /// any cosignatures from unknown keys"; so a line naming no trusted key is skipped whatever
    /// its signature holds. The block still fails on a line that is no signature line at all
    /// (no `— `), and on one that names a trusted key but does not parse, since its key id
    /// cannot be read and it may be that key's.
    pub fn parse_trusted_block(
        block: &str,
        max: usize,
        trusted: &[&CosignerVerifier],
    ) -> Result<Vec<Self>, WitnessError> {
        let body = block.strip_suffix('\n').ok_or_else(|| {
            WitnessError::MalformedRequest("signature lines must end in a newline".into())
        })?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() > max {
            return Err(WitnessError::MalformedRequest(format!(
                "{} signature lines (at most {max})",
                lines.len()
            )));
        }
        let mut out = Vec::new();
        for line in lines {
            match Self::parse(line) {
                Ok(l) if trusted.iter().any(|v| v.matches(&l)) => out.push(l),
                Ok(_) => {}
                Err(e) => {
                    let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
                        return Err(e);
                    };
                    let name = rest.split_once(' ').map_or(rest, |(n, _)| n);
                    if trusted.iter().any(|v| v.name() == name) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The key id: the signature's first four bytes.
    pub fn key_id(&self) -> Option<u32> {
        let id: [u8; 4] = self.raw.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(id))
    }
}

/// A decoded Ed25519 cosignature/v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The cosigner name.
    pub name: String,
    /// The cosigner key id.
    pub key_id: u32,
    /// When it was made, in POSIX seconds.
    pub timestamp: u64,
    /// The Ed25519 signature over [`signed_message`].
    pub signature: [u8; 64],
}

impl Cosignature {
    /// Decodes a signature line as a cosignature: exactly 76 bytes, timestamp at most 2^63 - 1.
    pub fn from_line(sig: &SignatureLine) -> Result<Self, WitnessError> {
        let bad =
            |m: String| WitnessError::MalformedRequest(format!("cosignature by {}: {m}", sig.name));
        if sig.raw.len() != COSIG_LEN {
            return Err(bad(format!(
                "{} bytes, want {COSIG_LEN} (key id, timestamp, Ed25519 signature)",
                sig.raw.len()
            )));
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&sig.raw[4..12]);
        let timestamp = u64::from_be_bytes(ts);
        if timestamp > i64::MAX as u64 {
            return Err(bad(format!("timestamp {timestamp} exceeds 2^63 - 1")));
        }
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&sig.raw[12..]);
        Ok(Self {
            name: sig.name.clone(),
            key_id: sig.key_id().unwrap_or_default(),
            timestamp,
            signature,
        })
    }

    /// The signature line, ending in `\n`.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(COSIG_LEN);
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.timestamp.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }
}

#[cfg(test)]
pub(crate) mod tests;
