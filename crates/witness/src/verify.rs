//! Verification of a cosigned checkpoint against the log's keys and a witness quorum.

use audit_log::Checkpoint;
use audit_log::note::{self, NoteVerifier};

use crate::cosig::{CosignerVerifier, SignatureLine};
use crate::error::WitnessError;
use crate::protocol::{MAX_SIGNATURES, split_note};

/// A checkpoint whose log signature and witness quorum verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint body.
    pub checkpoint: Checkpoint,
    /// The log keys (`name+id`) whose signatures verified.
    pub log_signers: Vec<String>,
    /// The trusted witnesses whose cosignatures verified: verifier key and timestamp.
    pub cosigners: Vec<(String, u64)>,
}

/// Verifies `note`: at least one signature by a log key (a bad one by a known key fails it),
/// and cosignatures by at least `quorum` distinct trusted witnesses. A cosignature line naming
/// a trusted witness key that does not verify fails the note; lines by other keys are ignored.
pub fn verify_cosigned(
    note: &str,
    log_vkeys: &[NoteVerifier],
    witness_vkeys: &[CosignerVerifier],
    quorum: usize,
) -> Result<VerifiedCheckpoint, WitnessError> {
    let opened = note::open(note, log_vkeys)?;
    let checkpoint = Checkpoint::parse_text(&opened.text)?;
    let (text, sigs) = split_note(note)?;
    let mut trusted: Vec<&CosignerVerifier> = Vec::new();
    for w in witness_vkeys {
        if !trusted.contains(&w) {
            trusted.push(w);
        }
    }
    let lines = SignatureLine::parse_trusted_block(sigs, MAX_SIGNATURES, &trusted)?;
    let mut cosigners: Vec<(String, u64)> = Vec::new();
    for line in &lines {
        let Some(w) = trusted.iter().find(|w| w.matches(line)) else {
            continue;
        };
        let c = w
            .verify(text, line)
            .ok_or_else(|| WitnessError::BadCosignature {
                name: w.name().to_owned(),
                key_id: w.key_id(),
            })?;
        let key = w.to_string();
        if !cosigners.iter().any(|(k, _)| *k == key) {
            cosigners.push((key, c.timestamp));
        }
    }
    if cosigners.len() < quorum {
        let names = |keys: Vec<&str>| {
            if keys.is_empty() {
                "none".to_owned()
            } else {
                keys.join(", ")
            }
        };
        let cosigned: Vec<&str> = trusted
            .iter()
            .filter(|w| cosigners.iter().any(|(k, _)| *k == w.to_string()))
            .map(|w| w.name())
            .collect();
        let missing: Vec<&str> = trusted
            .iter()
            .filter(|w| !cosigners.iter().any(|(k, _)| *k == w.to_string()))
            .map(|w| w.name())
            .collect();
        return Err(WitnessError::Quorum {
            have: cosigners.len(),
            need: quorum,
            cosigned: names(cosigned),
            missing: names(missing),
        });
    }
    Ok(VerifiedCheckpoint {
        checkpoint,
        log_signers: opened
            .verified_by
            .iter()
            .map(|(n, id)| format!("{n}+{id:08x}"))
            .collect(),
        cosigners,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosig::CosignerKey;
    use audit_log::NoteSigner;

    fn setup() -> (NoteSigner, String, Vec<CosignerKey>) {
        let log = NoteSigner::generate("log.example/a").unwrap();
        let cp = Checkpoint {
            origin: "log.example/a".into(),
            size: 10,
            root: [3; 32],
        };
        let note = cp.sign(&[&log]).unwrap().note;
        let ws = (1..=3)
            .map(|i| CosignerKey::generate(&format!("w{i}.example")).unwrap())
            .collect();
        (log, note, ws)
    }

    fn cosign(note: &str, w: &CosignerKey) -> String {
        let (text, _) = split_note(note).unwrap();
        format!("{note}{}", w.cosign(text, 1_700_000_000).unwrap())
    }

    #[test]
    fn quorum_counts_distinct_trusted_witnesses() {
        let (log, note, ws) = setup();
        let trusted: Vec<_> = ws.iter().map(CosignerKey::verifier).collect();
        let two = cosign(&cosign(&note, &ws[0]), &ws[1]);
        let v = verify_cosigned(&two, &[log.verifier()], &trusted, 2).unwrap();
        assert_eq!(v.cosigners.len(), 2);
        assert_eq!(v.checkpoint.size, 10);
        let err = verify_cosigned(&two, &[log.verifier()], &trusted, 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "checkpoint cosigned by 2 of the 3 trusted witnesses required (cosigned: w1.example, w2.example; missing: w3.example)"
        );
        // The same witness twice is one witness; an untrusted witness does not count.
        let dup = cosign(&cosign(&note, &ws[0]), &ws[0]);
        assert!(verify_cosigned(&dup, &[log.verifier()], &trusted, 2).is_err());
        let stranger = CosignerKey::generate("w1.example").unwrap();
        let with_stranger = cosign(&cosign(&note, &ws[0]), &stranger);
        assert!(verify_cosigned(&with_stranger, &[log.verifier()], &trusted, 2).is_err());
        assert!(verify_cosigned(&with_stranger, &[log.verifier()], &trusted, 1).is_ok());
        assert!(verify_cosigned(&note, &[log.verifier()], &trusted, 0).is_ok());
    }

    #[test]
    fn a_bad_cosignature_or_log_signature_fails() {
        let (log, note, ws) = setup();
        let trusted: Vec<_> = ws.iter().map(CosignerKey::verifier).collect();
        let one = cosign(&note, &ws[0]);
        // Cosign another body, then graft the line onto this note.
        let other = Checkpoint {
            origin: "log.example/a".into(),
            size: 11,
            root: [3; 32],
        };
        let grafted = format!("{note}{}", ws[1].cosign(&other.to_text(), 5).unwrap());
        assert!(matches!(
            verify_cosigned(&grafted, &[log.verifier()], &trusted, 1),
            Err(WitnessError::BadCosignature { .. })
        ));
        let forged_log = NoteSigner::generate("log.example/a").unwrap();
        assert!(verify_cosigned(&one, &[forged_log.verifier()], &trusted, 1).is_err());
        assert!(verify_cosigned("garbage", &[log.verifier()], &trusted, 0).is_err());
    }

    /// c2sp.org/signed-note: verifiers "MUST ignore signatures from unknown keys". A line by
    /// an unknown key that Go's `note.Open` (and `note::open`) accepts, with non-zero trailing
    /// base64 bits, does not fail the note; a trusted witness's such line counts.
    #[test]
    fn an_unknown_keys_line_go_accepts_does_not_fail_the_note() {
        use crate::cosig::tests::with_trailing_bits;
        let (log, note, ws) = setup();
        let trusted: Vec<_> = ws.iter().map(CosignerKey::verifier).collect();
        let stranger = CosignerKey::generate("stranger.example").unwrap();
        let (text, _) = split_note(&note).unwrap();
        let odd = with_trailing_bits(&stranger.cosign(text, 1).unwrap());
        let mine = with_trailing_bits(&ws[0].cosign(text, 2).unwrap());
        let full = format!("{}{odd}{mine}", cosign(&note, &ws[1]));
        assert!(note::open(&full, &[log.verifier()]).is_ok());
        let v = verify_cosigned(&full, &[log.verifier()], &trusted, 2).unwrap();
        assert_eq!(v.cosigners.len(), 2);
    }
}
