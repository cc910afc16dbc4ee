//! Fuzz bodies for what the audit log reads from outside: signed notes and verifier keys,
//! checkpoints, tlog-proof files, entry bundles of a tiles export, and whole exports. Each takes
//! arbitrary bytes and must not panic (nor hang, nor allocate without bound); where it gets an
//! answer it checks what must hold of it (round trips, the fast entry-header reader agreeing
//! with a JSON parser). The `cargo fuzz` targets in `fuzz/` call these, and this crate's unit
//! tests run them over proptest inputs on stable (`cfg(test)`); the module is otherwise only
//! built with the `fuzzing` feature.

use std::sync::OnceLock;

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::note::{self, NoteSigner, NoteVerifier};
use crate::proof_file::TlogProof;
use crate::verify;

/// The origin of the fixed key the bodies verify with.
pub const ORIGIN: &str = "fuzz.example/log";

/// A fixed signing key named [`ORIGIN`] (seeds can hold notes it signed).
pub fn signer() -> &'static NoteSigner {
    static KEY: OnceLock<NoteSigner> = OnceLock::new();
    KEY.get_or_init(|| {
        match NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])) {
            Ok(k) => k,
            Err(e) => panic!("fixed key: {e}"),
        }
    })
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A signed note, and a verifier key string.
pub fn note(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let known = [signer().verifier()];
    if let Ok(opened) = note::open(t, &known) {
        assert!(
            t.starts_with(&opened.text),
            "the signed text is the note's start"
        );
        assert!(!opened.verified_by.is_empty());
    }
    if let Ok(v) = NoteVerifier::parse(t) {
        assert_eq!(NoteVerifier::parse(&v.to_string()).ok(), Some(v));
    }
}

/// A checkpoint body and a signed checkpoint.
pub fn checkpoint(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(cp) = Checkpoint::parse_text(t) {
        assert_eq!(Checkpoint::parse_text(&cp.to_text()).ok(), Some(cp));
    }
    if let Ok(s) = SignedCheckpoint::open(t, &[signer().verifier()]) {
        assert_eq!(s.checkpoint.origin, ORIGIN);
    }
}

/// A `.tlog-proof` file. Every field has one spelling (the index a decimal without leading
/// zeroes, hashes and extra data canonical base64), so whatever parses is written back as is.
pub fn proof(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(p) = TlogProof::parse(t) {
        assert_eq!(
            p.to_text(),
            t,
            "a parsed proof is written back byte for byte"
        );
        assert_eq!(TlogProof::parse(&p.to_text()).ok(), Some(p));
    }
}

/// An entry bundle of `width` entries (first byte, 1–256), as the verifier reads it; and each
/// entry's header read fast and by a JSON parser.
pub fn bundle(data: &[u8]) {
    let Some((w, bytes)) = data.split_first() else {
        return;
    };
    let width = u64::from(*w) + 1;
    let b = verify::parse_bundle("tile/entries/000", bytes, 0, width);
    assert_eq!(b.leaves.len(), b.good.len());
    // Well formed: exactly `width` entries and nothing after them; else a problem says why.
    if b.well_formed {
        assert_eq!(b.leaves.len() as u64, width);
    } else {
        assert!(!b.problems.is_empty());
    }
    entry_head(bytes);
}

/// The verifier's fast reader of an entry's `seq`, `time` and `action` agrees with a JSON
/// parser on every entry the parser accepts.
pub fn entry_head(data: &[u8]) {
    if let (Some(fast), Some(slow)) = (verify::fast_head(data), verify::json_head(data)) {
        assert_eq!(Some(fast.0), slow.0, "seq");
        assert_eq!(Some(fast.1), slow.1.as_deref(), "time");
        assert_eq!(fast.2, slow.2.as_deref(), "action");
    }
}

/// A whole export: `data` split at the first NUL into the `checkpoint` file and one entry
/// bundle, verified from a temporary directory. Must answer (with problems), never hang on a
/// size the files cannot back.
pub fn export(data: &[u8]) {
    let (cp, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let entries = dir.path().join("tile").join("entries");
    if std::fs::create_dir_all(&entries).is_err()
        || std::fs::write(dir.path().join("checkpoint"), cp).is_err()
        || std::fs::write(entries.join("000"), rest).is_err()
    {
        return;
    }
    let r = verify::verify_export(dir.path(), &[signer().verifier()], None, 1);
    assert!(r.entries_valid <= r.size);
    assert!(r.ok() || !r.problems.is_empty());
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use proptest::prelude::*;

    use super::*;

    /// Valid inputs of each kind, to mutate.
    fn seeds() -> Vec<Vec<u8>> {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: 3,
            root: [5; 32],
        };
        let signed = cp.sign(&[signer()]).map(|s| s.note).unwrap_or_default();
        let proof = TlogProof {
            extra: Some(b"x".to_vec()),
            index: 2,
            proof: vec![[1; 32], [2; 32]],
            checkpoint_note: signed.clone(),
        };
        let entry =
            br#"{"v":1,"seq":0,"time":"2026-11-29T12:00:00Z","action":"app.create","actor":"a"}"#;
        let mut bundle = vec![0u8]; // width 1
        bundle.extend_from_slice(&(entry.len() as u16).to_be_bytes());
        bundle.extend_from_slice(entry);
        vec![
            signed.clone().into_bytes(),
            cp.to_text().into_bytes(),
            proof.to_text().into_bytes(),
            signer().verifier().to_string().into_bytes(),
            bundle,
            entry.to_vec(),
            format!(
                "{ORIGIN}\n18446744073709551615\n{}\n\n\u{2014} {ORIGIN} AAAAAAAA\n",
                B64.encode([0u8; 32])
            )
            .into_bytes(),
            [signed.as_bytes(), b"\0", &entry[..]].concat(),
        ]
    }

    /// A seed with a few bytes overwritten, inserted or cut: most mutants stay close to the
    /// format, so the parsers' later branches run.
    fn mutant() -> impl Strategy<Value = Vec<u8>> {
        let n = seeds().len();
        (
            0..n,
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
        )
            .prop_map(|(i, edits)| {
                let mut s = seeds()[i].clone();
                for (at, byte, op) in edits {
                    let pos = if s.is_empty() { 0 } else { at.index(s.len()) };
                    match op {
                        0 if !s.is_empty() => s[pos] = byte,
                        1 => s.insert(pos, byte),
                        _ => s.truncate(pos),
                    }
                }
                s
            })
    }

    fn input() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![4 => mutant(), 1 => prop::collection::vec(any::<u8>(), 0..64)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn note(data in input()) { super::note(&data) }
        #[test]
        fn checkpoint(data in input()) { super::checkpoint(&data) }
        #[test]
        fn proof(data in input()) { super::proof(&data) }
        #[test]
        fn bundle(data in input()) { super::bundle(&data) }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn export(data in input()) { super::export(&data) }
    }

    #[test]
    fn the_seeds_are_valid() {
        let s = seeds();
        assert!(note::open(std::str::from_utf8(&s[0]).unwrap(), &[signer().verifier()]).is_ok());
        assert!(Checkpoint::parse_text(std::str::from_utf8(&s[1]).unwrap()).is_ok());
        assert!(TlogProof::parse(std::str::from_utf8(&s[2]).unwrap()).is_ok());
        assert!(NoteVerifier::parse(std::str::from_utf8(&s[3]).unwrap()).is_ok());
        let b = verify::parse_bundle("b", &s[4][1..], 0, 1);
        assert!(b.well_formed && b.problems.is_empty(), "{:?}", b.problems);
        assert!(verify::fast_head(&s[5]).is_some());
    }

    #[test]
    fn an_export_claiming_2_pow_64_entries_is_refused_at_once() {
        let start = std::time::Instant::now();
        super::export(&seeds()[6]);
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }
}
