//! The C2SP tlog-witness wire format (<https://c2sp.org/tlog-witness>): the `add-checkpoint`
//! request body and the `409 Conflict` size body.
//!
//! Request: `old <size>\n`, zero to 63 lines of base64 consistency-proof hashes, an empty line,
//! then the signed checkpoint note. Sizes are ASCII decimal with no leading zeroes.

use audit_log::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::WitnessError;

/// The submission path under the witness's submission prefix.
pub const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";
/// The content type of a `409 Conflict` body carrying the witness's latest size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";
/// The most consistency-proof lines a client may send.
pub const MAX_PROOF_LINES: usize = 63;
/// The largest request body a witness reads (and answer a client reads). c2sp.org/signed-note:
/// verifiers "MUST accept at least up to 16 signatures. Remember that post-quantum signatures
/// can be up to nearly 5kB" (about 6.6 KB a line in base64), so 16 such lines, 63 proof lines
/// and the checkpoint need more than 100 KB: 128 KiB.
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;
/// The most signature lines a note may carry (Go's `sumdb/note` limit).
pub const MAX_SIGNATURES: usize = 100;

/// Decodes one base64 hash, requiring the canonical encoding of exactly 32 bytes.
fn parse_hash(s: &str) -> Option<Hash> {
    let raw = B64.decode(s).ok()?;
    let h: Hash = raw.try_into().ok()?;
    (B64.encode(h) == s).then_some(h)
}

/// A parsed `add-checkpoint` request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    /// The size of the checkpoint the client believes the witness last cosigned.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint_note: String,
}

impl AddCheckpointRequest {
    /// Parses a request body; every deviation from the wire format is an error naming it.
    pub fn parse(body: &[u8]) -> Result<Self, WitnessError> {
        let bad = |m: String| WitnessError::MalformedRequest(m);
        if body.len() > MAX_REQUEST_BYTES {
            return Err(bad(format!(
                "body of {} bytes exceeds {MAX_REQUEST_BYTES}",
                body.len()
            )));
        }
        let text = std::str::from_utf8(body).map_err(|e| bad(format!("body is not UTF-8: {e}")))?;
        let (first, mut rest) = text
            .split_once('\n')
            .ok_or_else(|| bad("no old size line".into()))?;
        let old = first
            .strip_prefix("old ")
            .ok_or_else(|| bad(format!("first line {first:?} is not `old <size>`")))?;
        let old_size = audit_log::canonical_decimal(old).map_err(|_| {
            bad(format!(
                "old size {old:?} is not a decimal without leading zeroes"
            ))
        })?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = rest
                .split_once('\n')
                .ok_or_else(|| bad("no empty line before the checkpoint".into()))?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad(format!(
                    "more than {MAX_PROOF_LINES} consistency proof lines"
                )));
            }
            let h = parse_hash(line).ok_or_else(|| {
                bad(format!(
                    "proof line {} is not the base64 of a 32-byte hash",
                    proof.len() + 1
                ))
            })?;
            proof.push(h);
        }
        if rest.is_empty() {
            return Err(bad("no checkpoint after the empty line".into()));
        }
        Ok(Self {
            old_size,
            proof,
            checkpoint_note: rest.to_owned(),
        })
    }

    /// The request body.
    pub fn encode(&self) -> String {
        let mut out =
            String::with_capacity(16 + self.proof.len() * 45 + self.checkpoint_note.len());
        out.push_str(&format!("old {}\n", self.old_size));
        audit_log::push_proof_and_note(&mut out, &self.proof, &self.checkpoint_note);
        out
    }
}

/// The body of a `409 Conflict` answer: the size in decimal and a newline.
pub fn encode_size_body(size: u64) -> String {
    format!("{size}\n")
}

/// Parses a `text/x.tlog.size` body: one decimal without leading zeroes, then exactly one `\n`.
pub fn parse_size_body(body: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(body).ok()?;
    audit_log::canonical_decimal(s.strip_suffix('\n')?).ok()
}

/// Splits a signed note into its text (ending in `\n`) and its signature block, at the last
/// blank line as Go's `note.Open` does.
pub fn split_note(note: &str) -> Result<(&str, &str), WitnessError> {
    let i = note.rfind("\n\n").ok_or_else(|| {
        WitnessError::MalformedRequest("note has no blank line before its signatures".into())
    })?;
    Ok((&note[..=i], &note[i + 2..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOTE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    #[test]
    fn parses_the_spec_example() {
        let body = format!(
            "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\n{NOTE}"
        );
        let r = AddCheckpointRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(r.old_size, 20852014);
        assert_eq!(r.proof.len(), 4);
        assert_eq!(r.checkpoint_note, NOTE);
        assert_eq!(r.encode(), body);
        let (text, sigs) = split_note(&r.checkpoint_note).unwrap();
        assert!(text.ends_with("jxq2I=\n"));
        assert!(sigs.starts_with('\u{2014}'));
    }

    #[test]
    fn rejects_each_framing_error() {
        let h = "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=";
        let cases = [
            format!("old 01\n\n{NOTE}"),
            format!("old -1\n\n{NOTE}"),
            format!("old 1 \n\n{NOTE}"),
            format!("Old 1\n\n{NOTE}"),
            format!("old 1\n{NOTE}"),
            "old 1\n\n".to_string(),
            "old 1\n".to_string(),
            format!("old 1\n{}\n\n{NOTE}", &h[..40]),
            format!("old 1\n{h}x\n\n{NOTE}"),
            // 33 bytes, and a non-canonical encoding of 32 bytes.
            format!("old 1\n{}\n\n{NOTE}", B64.encode([0u8; 33])),
            format!("old 1\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkax=\n\n{NOTE}"),
            format!("old 1\n{}\n{NOTE}", format!("{h}\n").repeat(64)),
            format!("old 18446744073709551616\n\n{NOTE}"),
        ];
        for c in cases {
            assert!(
                matches!(
                    AddCheckpointRequest::parse(c.as_bytes()),
                    Err(WitnessError::MalformedRequest(_))
                ),
                "{c:?}"
            );
        }
        let ok63 = format!("old 1\n{}\n{NOTE}", format!("{h}\n").repeat(63));
        assert_eq!(
            AddCheckpointRequest::parse(ok63.as_bytes())
                .unwrap()
                .proof
                .len(),
            63
        );
        assert!(AddCheckpointRequest::parse(&[b'o', 0xff, b'\n']).is_err());
    }

    #[test]
    fn size_bodies_are_strict() {
        assert_eq!(parse_size_body(b"0\n"), Some(0));
        assert_eq!(parse_size_body(b"50\n"), Some(50));
        assert_eq!(parse_size_body(encode_size_body(7).as_bytes()), Some(7));
        for bad in [
            &b""[..],
            b"50",
            b"050\n",
            b"50\n\n",
            b" 50\n",
            b"5 0\n",
            b"-1\n",
        ] {
            assert_eq!(parse_size_body(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_body_of_exactly_the_limit_parses_and_one_byte_more_does_not() {
        // 128 KiB: 16 post-quantum signature lines, 63 proof lines and a checkpoint fit.
        const LIMIT: usize = 128 * 1024;
        let body = |len: usize| {
            let mut b = format!("old 0\n\n{NOTE}").into_bytes();
            b.resize(len, b'x');
            b
        };
        let at = AddCheckpointRequest::parse(&body(LIMIT)).unwrap();
        assert_eq!(at.encode().len(), LIMIT);
        match AddCheckpointRequest::parse(&body(LIMIT + 1)) {
            Err(WitnessError::MalformedRequest(m)) => assert!(m.contains("exceeds"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn any_body_parses_or_errors_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = AddCheckpointRequest::parse(&body);
            let _ = parse_size_body(&body);
        }

        #[test]
        fn structured_mutations_never_panic(
            old in "[0-9 a-z-]{0,22}",
            lines in proptest::collection::vec("[A-Za-z0-9+/=]{0,46}", 0..70),
            note in "[ -~\n\u{2014}]{0,200}",
        ) {
            let body = format!("old {old}\n{}\n{note}", lines.join("\n"));
            if let Ok(r) = AddCheckpointRequest::parse(body.as_bytes()) {
                prop_assert!(r.proof.len() <= MAX_PROOF_LINES);
                prop_assert_eq!(r.encode(), body);
            }
        }

        #[test]
        fn encode_then_parse_round_trips(
            old in any::<u64>(),
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_PROOF_LINES),
        ) {
            let r = AddCheckpointRequest { old_size: old, proof, checkpoint_note: NOTE.into() };
            prop_assert_eq!(AddCheckpointRequest::parse(r.encode().as_bytes()).unwrap(), r);
        }
    }
}
