//! C2SP tlog-proof files: offline evidence that one entry is in the log.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::hash::Hash;

/// The first line of every tlog-proof.
const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Appends `proof` (one base64 hash a line), an empty line, then `checkpoint_note`: how a
/// tlog-proof file and a tlog-witness `add-checkpoint` body both end.
pub fn push_proof_and_note(out: &mut String, proof: &[Hash], checkpoint_note: &str) {
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(checkpoint_note);
}

/// A parsed `.tlog-proof`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Optional opaque application data (the `extra` line).
    pub extra: Option<Vec<u8>>,
    /// The entry's index.
    pub index: u64,
    /// The inclusion proof against the checkpoint's tree, leaf first.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint_note: String,
}

impl TlogProof {
    /// The file text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        push_proof_and_note(&mut out, &self.proof, &self.checkpoint_note);
        out
    }

    /// Parses the file text (the checkpoint signature is not checked here).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (head, checkpoint_note) = text
            .split_once("\n\n")
            .ok_or("no blank line before the checkpoint")?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(format!("first line is not {HEADER}"));
        }
        let mut line = lines.next().ok_or("missing index line")?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(e).map_err(|e| format!("extra: {e}"))?);
            line = lines.next().ok_or("missing index line")?;
        }
        let index = line
            .strip_prefix("index ")
            .ok_or_else(|| format!("line {line:?} is not `index <decimal>`"))
            .and_then(|i| crate::canonical_decimal(i).map_err(|e| format!("index {i:?} {e}")))?;
        let proof = lines
            .map(|l| {
                B64.decode(l)
                    .ok()
                    .and_then(|h| Hash::try_from(h).ok())
                    .ok_or_else(|| format!("proof line {l:?} is not base64 of 32 bytes"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint_note: checkpoint_note.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = TlogProof {
            extra: Some(b"x".to_vec()),
            index: 7,
            proof: vec![[1; 32], [2; 32]],
            checkpoint_note: "o\n8\nAAAA\n\n\u{2014} o AAAA\n".into(),
        };
        assert_eq!(TlogProof::parse(&p.to_text()).unwrap(), p);
        let mut q = p.clone();
        q.extra = None;
        q.proof.clear();
        assert_eq!(TlogProof::parse(&q.to_text()).unwrap(), q);
    }

    #[test]
    fn the_index_is_a_decimal_without_sign_or_leading_zeroes() {
        let p = TlogProof {
            extra: None,
            index: 7,
            proof: vec![[1; 32]],
            checkpoint_note: "o\n8\nAAAA\n\n\u{2014} o AAAA\n".into(),
        };
        let text = p.to_text();
        let with = |index: &str| text.replace("index 7\n", &format!("index {index}\n"));
        assert_eq!(TlogProof::parse(&with("0")).unwrap().index, 0);
        assert_eq!(
            TlogProof::parse(&with("18446744073709551615"))
                .unwrap()
                .index,
            u64::MAX
        );
        for (index, why) in [
            ("+7", "not an ASCII decimal"),
            ("-7", "not an ASCII decimal"),
            (" 7", "not an ASCII decimal"),
            ("7 ", "not an ASCII decimal"),
            ("", "not an ASCII decimal"),
            ("007", "leading zero"),
            ("00", "leading zero"),
            ("18446744073709551616", "does not fit"),
        ] {
            let e = TlogProof::parse(&with(index)).unwrap_err();
            assert!(
                e.contains(why) && e.contains(&format!("{index:?}")),
                "{index:?}: {e}"
            );
        }
        assert!(
            TlogProof::parse(&text.replace("index 7", "index: 7"))
                .unwrap_err()
                .contains("is not `index <decimal>`")
        );
    }

    proptest::proptest! {
        /// Whatever index line parses is the index's one spelling.
        #[test]
        fn a_parsed_index_has_one_spelling(index in "[-+ ]?0{0,2}[0-9]{0,20}") {
            let text = format!("{HEADER}\nindex {index}\n\no\n1\nAAAA\n\n\u{2014} o AAAA\n");
            if let Ok(p) = TlogProof::parse(&text) {
                proptest::prop_assert_eq!(p.index.to_string(), index);
                proptest::prop_assert_eq!(p.to_text(), text);
            }
        }
    }
}
