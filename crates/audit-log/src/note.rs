//! C2SP signed notes with Ed25519 keys, and the key formats of golang.org/x/mod/sumdb/note.
//!
//! A note is UTF-8 text ending in `\n`, an empty line, then signature lines
//! `— <name> <base64(key id[4] || signature[64])>\n`. The key id is the first four bytes of
//! `SHA-256(name || "\n" || 0x01 || public key)`. Verifiers skip lines from unknown keys (that is
//! how rotation and witness cosignatures work), reject the note if a known key's signature fails,
//! and require at least one known key to have signed. Parsing follows Go's `note.Open`: no ASCII
//! control character but newline anywhere in the note, and every line well formed whoever signed
//! it; unlike Go, a known key's repeated lines are verified too (signed-note's MUST), and the
//! key counts once.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

mod key;

pub use key::{
    KeyParts, NamedSigningKey, NamedVerifyingKey, PRIVATE_KEY_PREFIX, check_key_name, key_hash,
    key_shown, split_key,
};

/// The algorithm byte for Ed25519 in note keys and key ids.
pub const ALG_ED25519: u8 = 0x01;
/// The em dash and space that start every signature line.
pub const SIG_PREFIX: &str = "\u{2014} ";
/// Go's limit on signature lines in one note; more is a resource-exhaustion attempt.
const MAX_SIGNATURES: usize = 100;

/// Why a key or a note was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key string or file is not in a format we read.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// The note's framing is wrong.
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// A known key's signature does not verify.
    #[error("invalid signature by key {name}+{key_id:08x}")]
    BadSignature {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
    },
    /// No signature from any key the verifier trusts.
    #[error("no signature by a known key (known: {known})")]
    NoKnownSignature {
        /// The trusted keys, for the message.
        known: String,
    },
}

/// The 4-byte key id of an Ed25519 key with this name.
pub fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    key_hash(name, ALG_ED25519, public)
}

/// Checks that a key string's type byte is plain Ed25519 (0x01).
fn check_alg(alg: u8, what: &str) -> Result<(), NoteError> {
    if alg != ALG_ED25519 {
        return Err(NoteError::MalformedKey(format!(
            "not an Ed25519 {what} (type 0x{alg:02x}, want 0x01)"
        )));
    }
    Ok(())
}

/// A note signing key: a name (the log origin) and an Ed25519 key.
pub struct NoteSigner(
    /// The named key, of type 0x01.
    NamedSigningKey,
);

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({:?})", self.0)
    }
}

impl NoteSigner {
    /// A signer from a name and a key.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        NamedSigningKey::new(name, ALG_ED25519, key).map(Self)
    }

    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        NamedSigningKey::generate(name, ALG_ED25519).map(Self)
    }

    /// Reads a key file: Go's `PRIVATE+KEY+<name>+<id>+<base64>` form (its name is used) or an
    /// Ed25519 PKCS#8 PEM (named `default_name`, the configured origin).
    pub fn from_key_file_text(text: &str, default_name: &str) -> Result<Self, NoteError> {
        let t = text.trim();
        if t.starts_with(PRIVATE_KEY_PREFIX) {
            Self::from_go_private_key(t)
        } else if t.starts_with("-----BEGIN") {
            let key = SigningKey::from_pkcs8_pem(t)
                .map_err(|e| NoteError::MalformedKey(format!("PKCS#8 PEM: {e}")))?;
            Self::new(default_name, key)
        } else {
            Err(NoteError::MalformedKey(
                "expected a PKCS#8 PEM or a PRIVATE+KEY+… line".into(),
            ))
        }
    }

    /// Parses Go's private key form `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn from_go_private_key(s: &str) -> Result<Self, NoteError> {
        let rest = s
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or_else(|| NoteError::MalformedKey("missing PRIVATE+KEY+ prefix".into()))?;
        let p = split_key(rest)?;
        check_alg(p.alg, "seed")?;
        let signer = Self::new(p.name, SigningKey::from_bytes(&p.bytes))?;
        if signer.0.key_id() != p.id {
            return Err(NoteError::MalformedKey(format!(
                "key id {:08x} does not match the key ({:08x})",
                p.id,
                signer.0.key_id()
            )));
        }
        Ok(signer)
    }

    /// The key in Go's private key form.
    pub fn to_go_private_key(&self) -> Zeroizing<String> {
        self.0.to_go_private_key()
    }

    /// The key as PKCS#8 PEM (the name is not part of it).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, NoteError> {
        self.0.to_pkcs8_pem()
    }

    /// The key name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier(self.0.verifier())
    }

    /// The signature line for `text` (ending in `\n`).
    pub fn signature_line(&self, text: &str) -> String {
        let sig = self.0.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.0.key_id().to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.0.name(), B64.encode(raw))
    }
}

/// A note verifier key: `<name>+<hex key id>+<base64(0x01 || public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier(
    /// The named public key (the name is the log origin), of type 0x01.
    NamedVerifyingKey,
);

impl NoteVerifier {
    /// Parses a verifier key string, checking that its id matches the key.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let p = split_key(vkey.trim())?;
        check_alg(p.alg, "verifier key")?;
        let key = NamedVerifyingKey::from_bytes(p.name, ALG_ED25519, &p.bytes)?;
        if key.key_id() != p.id {
            return Err(NoteError::MalformedKey(format!(
                "key id {:08x} does not match the key",
                p.id
            )));
        }
        Ok(Self(key))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.0.key_id()
    }

    fn verify(&self, text: &str, sig: &[u8; 64]) -> bool {
        self.0.verify(text.as_bytes(), sig)
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A note signed by one or more keys (text ending in `\n`).
pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    check_text(text)?;
    // c2sp.org/signed-note: the text is "followed by one or more signature lines".
    if signers.is_empty() {
        return Err(NoteError::MalformedNote(
            "a signed note needs at least one signature".into(),
        ));
    }
    let mut out = String::with_capacity(text.len() + 1 + signers.len() * 100);
    out.push_str(text);
    out.push('\n');
    for s in signers {
        out.push_str(&s.signature_line(text));
    }
    Ok(out)
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::MalformedNote(
            "text must end in a newline".into(),
        ));
    }
    check_controls(text, "text")
}

/// c2sp.org/signed-note: a note "MUST NOT contain any ASCII control characters (those below
/// U+0020) other than newline", signatures included. Only those: U+007F, the C1 controls and
/// U+2028 are allowed, as in Go's `note.Open`.
fn check_controls(s: &str, what: &str) -> Result<(), NoteError> {
    match s.char_indices().find(|&(_, c)| c < ' ' && c != '\n') {
        Some((at, c)) => Err(NoteError::MalformedNote(format!(
            "{what} contains the control character {c:?} at byte {at}"
        ))),
        None => Ok(()),
    }
}

/// A note whose signatures have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The signed text, ending in `\n`.
    pub text: String,
    /// Names and ids of the known keys whose signatures verified.
    pub verified_by: Vec<(String, u32)>,
    /// Distinct signature lines from keys the verifier does not know (witnesses, other logs).
    pub unknown_signatures: usize,
}

/// Signature bytes as Go's `base64.StdEncoding` reads them: padding required, but non-zero
/// trailing bits allowed (it is not `Strict`), so a line Go accepts is not malformed here.
/// Public so that every reader of signature lines (the witness crate's too) decodes alike.
pub const SIG_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Splits a note and checks its signatures against `known`, as Go's `note.Open` does: the whole
/// note is free of control characters, every signature line is well formed (a valid key name,
/// base64 of at least five bytes) whoever signed it, and identical lines by unknown keys count
/// once. Unlike Go's `Open`, which skips a known key's repeated lines unverified, every line of
/// a known key is verified (signed-note: "If the key name and ID match a known key, verifiers
/// MUST verify the signature"; one that fails rejects the note), and the key counts once.
pub fn open(note: &str, known: &[NoteVerifier]) -> Result<OpenedNote, NoteError> {
    check_controls(note, "note")?;
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| NoteError::MalformedNote("no blank line before signatures".into()))?;
    let text = &note[..split + 1];
    let sigs = note[split + 2..]
        .strip_suffix('\n')
        .ok_or_else(|| NoteError::MalformedNote("signature block must end in a newline".into()))?;
    let lines: Vec<&str> = sigs.split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(NoteError::MalformedNote(format!(
            "{} signature lines (at most {MAX_SIGNATURES})",
            lines.len()
        )));
    }
    let mut verified_by: Vec<(String, u32)> = Vec::new();
    let mut seen: Vec<(&str, u32)> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for line in lines {
        let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| {
            NoteError::MalformedNote(format!("signature line {line:?} does not start with '— '"))
        })?;
        let (name, b64) = rest.split_once(' ').unwrap_or((rest, ""));
        check_key_name(name)
            .map_err(|e| NoteError::MalformedNote(format!("signature line {line:?}: {e}")))?;
        let raw = SIG_B64
            .decode(b64)
            .map_err(|e| NoteError::MalformedNote(format!("signature by {name}: base64: {e}")))?;
        if raw.len() < 5 {
            return Err(NoteError::MalformedNote(format!(
                "signature by {name} is too short"
            )));
        }
        let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let Some(v) = known.iter().find(|k| k.name() == name && k.key_id() == id) else {
            if !unknown.contains(&rest) {
                unknown.push(rest);
            }
            continue;
        };
        let sig: Option<&[u8; 64]> = raw[4..].try_into().ok();
        if !sig.is_some_and(|s| v.verify(text, s)) {
            return Err(NoteError::BadSignature {
                name: name.to_owned(),
                key_id: id,
            });
        }
        if !seen.contains(&(name, id)) {
            seen.push((name, id));
            verified_by.push((name.to_owned(), id));
        }
    }
    if verified_by.is_empty() {
        return Err(NoteError::NoKnownSignature {
            known: known
                .iter()
                .map(|k| format!("{}+{:08x}", k.name(), k.key_id()))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(OpenedNote {
        text: text.to_owned(),
        verified_by,
        unknown_signatures: unknown.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PN_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PN_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PN_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PN_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn known_answer_peter_neumann() {
        let s = NoteSigner::from_go_private_key(PN_SKEY).unwrap();
        assert_eq!(s.verifier().to_string(), PN_VKEY);
        assert_eq!(s.signature_line(PN_TEXT), PN_SIG);
        assert_eq!(&*s.to_go_private_key(), PN_SKEY);
        let v = NoteVerifier::parse(PN_VKEY).unwrap();
        let note = format!("{PN_TEXT}\n{PN_SIG}");
        let opened = open(&note, &[v]).unwrap();
        assert_eq!(opened.text, PN_TEXT);
        assert_eq!(
            opened.verified_by,
            vec![("PeterNeumann".into(), 0xc74f20a3)]
        );
    }

    #[test]
    fn unknown_keys_are_skipped_but_one_known_is_required() {
        let a = NoteSigner::generate("log.example/a").unwrap();
        let b = NoteSigner::generate("witness.example").unwrap();
        let note = sign("hello\n", &[&a, &b]).unwrap();
        let opened = open(&note, &[a.verifier()]).unwrap();
        assert_eq!(opened.unknown_signatures, 1);
        let err = open(&note, &[NoteSigner::generate("x").unwrap().verifier()]).unwrap_err();
        assert!(matches!(err, NoteError::NoKnownSignature { .. }));
    }

    #[test]
    fn a_bad_signature_by_a_known_key_rejects_the_note() {
        let a = NoteSigner::generate("log.example/a").unwrap();
        let note = sign("hello\n", &[&a]).unwrap().replace("hello", "hellp");
        assert!(matches!(
            open(&note, &[a.verifier()]).unwrap_err(),
            NoteError::BadSignature { .. }
        ));
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let a = NoteSigner::generate("log.example/a").unwrap();
        let pem = a.to_pkcs8_pem().unwrap();
        let b = NoteSigner::from_key_file_text(&pem, "log.example/a").unwrap();
        assert_eq!(a.verifier(), b.verifier());
    }

    #[test]
    fn vkey_with_plus_in_base64_parses_and_wrong_id_is_rejected() {
        assert!(NoteVerifier::parse(PN_VKEY).is_ok());
        let bad = PN_VKEY.replace("c74f20a3", "c74f20a4");
        assert!(NoteVerifier::parse(&bad).is_err());
        assert!(NoteVerifier::parse("a+b").is_err());
        assert!(NoteVerifier::parse("na me+c74f20a3+AAAA").is_err());
    }

    #[test]
    fn a_key_of_another_type_is_named_as_unsupported() {
        // An ML-DSA-44 cosigner key (type 0x06, 1,312 bytes of public key).
        let mut raw = vec![0x06u8];
        raw.extend([7u8; 1312]);
        let vkey = format!("w.example+01020304+{}", B64.encode(&raw));
        let e = split_key(&vkey).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(
                |m| m.contains("key type 0x06 is not supported") && m.contains("Ed25519")
            ),
            "{e:?}"
        );
    }

    #[test]
    fn text_must_end_in_newline() {
        let a = NoteSigner::generate("n").unwrap();
        assert!(sign("no newline", &[&a]).is_err());
    }

    fn malformed(r: Result<OpenedNote, NoteError>) -> bool {
        matches!(r, Err(NoteError::MalformedNote(_)))
    }

    /// signed-note forbids only the ASCII controls below U+0020 (newline aside), as Go's `Open`
    /// does: DEL, the C1 controls and U+2028 are text like any other.
    #[test]
    fn only_ascii_controls_below_space_are_refused_in_the_text() {
        let a = NoteSigner::generate("log.example/a").unwrap();
        for text in [
            "del \u{7f}\n",
            "nel \u{85} c1 \u{9f}\n",
            "line separator \u{2028}\n",
        ] {
            let note = sign(text, &[&a]).unwrap();
            assert_eq!(open(&note, &[a.verifier()]).unwrap().text, text);
        }
        for text in ["tab\there\n", "cr\r\n", "nul\0\n", "esc\u{1b}\n"] {
            assert!(sign(text, &[&a]).is_err(), "{text:?}");
            let note = format!("{text}\n{}", a.signature_line(text));
            assert!(malformed(open(&note, &[a.verifier()])), "{text:?}");
        }
    }

    /// The whole note is checked, signature lines included: a control character in an unknown
    /// key's line (one the key-name rule lets through) makes the note malformed.
    #[test]
    fn a_control_character_in_any_signature_line_is_refused() {
        let a = NoteSigner::generate("log.example/a").unwrap();
        let note = sign("hello\n", &[&a]).unwrap();
        let good = open(&note, &[a.verifier()]).unwrap();
        assert_eq!(good.unknown_signatures, 0);
        let other = format!("{note}\u{2014} witness\u{1}example AAAAAAAAAAAAAAAA\n");
        assert!(malformed(open(&other, &[a.verifier()])));
        let other = format!("{note}\u{2014} witness.example AAAAAAAAAAAAAAAA\r\n");
        assert!(malformed(open(&other, &[a.verifier()])));
    }

    /// Every signature line's key name follows the key-name rule, whoever signed it.
    #[test]
    fn an_unknown_key_with_an_invalid_name_makes_the_note_malformed() {
        let a = NoteSigner::generate("log.example/a").unwrap();
        let note = sign("hello\n", &[&a]).unwrap();
        let ok = format!("{note}\u{2014} witness.example AAAAAAAAAAAAAAAA\n");
        assert_eq!(open(&ok, &[a.verifier()]).unwrap().unknown_signatures, 1);
        for line in [
            "\u{2014} wit+ness AAAAAAAAAAAAAAAA\n",
            "\u{2014}  AAAAAAAAAAAAAAAA\n",
            "\u{2014} wit\u{a0}ness AAAAAAAAAAAAAAAA\n",
            "\u{2014} wit\u{3000}ness AAAAAAAAAAAAAAAA\n",
            "\u{2014} witness.example\n",
        ] {
            let bad = format!("{note}{line}");
            assert!(malformed(open(&bad, &[a.verifier()])), "{line:?}");
        }
    }

    /// A known key's repeated lines are all verified (signed-note: "If the key name and ID match
    /// a known key, verifiers MUST verify the signature"; Go's `Open` skips them) and the key
    /// counts once; identical unknown lines count once.
    #[test]
    fn every_line_of_a_known_key_is_verified_and_the_key_counts_once() {
        let a = NoteSigner::generate("log.example/a").unwrap();
        let b = NoteSigner::generate("witness.example").unwrap();
        let text = "hello\n";
        let (la, lb) = (a.signature_line(text), b.signature_line(text));
        let note = format!("{text}\n{la}{lb}{la}{lb}");
        let opened = open(&note, &[a.verifier()]).unwrap();
        assert_eq!(
            opened.verified_by,
            vec![(a.name().to_owned(), a.verifier().key_id())]
        );
        assert_eq!(opened.unknown_signatures, 1);
        // A second line by the same key that does not verify rejects the note, wherever it is.
        let forged = a.signature_line("other\n");
        for note in [
            format!("{text}\n{la}{forged}"),
            format!("{text}\n{forged}{la}"),
        ] {
            assert!(
                matches!(
                    open(&note, &[a.verifier()]),
                    Err(NoteError::BadSignature { .. })
                ),
                "{note}"
            );
        }
    }

    /// Signature bytes are read as Go's (non-strict) `base64.StdEncoding` reads them.
    #[test]
    fn signature_base64_with_nonzero_trailing_bits_is_read_as_go_reads_it() {
        let a = NoteSigner::generate("log.example/a").unwrap();
        let note = sign("hello\n", &[&a]).unwrap();
        // 68 bytes end in `=`-padded base64 whose last character carries two unused bits.
        let line = a.signature_line("hello\n");
        let b64 = line.trim_end().rsplit(' ').next().unwrap();
        let last = b64.as_bytes()[b64.len() - 2];
        let twiddled = format!(
            "{}{}=",
            &b64[..b64.len() - 2],
            char::from(B64_ALPHABET[B64_ALPHABET.iter().position(|&c| c == last).unwrap() ^ 1])
        );
        assert_ne!(twiddled, b64);
        let note = note.replace(b64, &twiddled);
        assert_eq!(open(&note, &[a.verifier()]).unwrap().verified_by.len(), 1);
    }

    const B64_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}
