//! C2SP tlog-checkpoint bodies and signed checkpoints.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::hash::Hash;
use crate::note::{self, NoteError, NoteSigner, NoteVerifier};

/// A tree head: the log's origin, its size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity (a schema-less URL); also the signing key's name.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 6962 root over the first `size` entries.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, decimal size, base64 root, each ending in `\n`.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// The body of a signed checkpoint note, parsed without checking any signature: the text
    /// before the note's last blank line, where C2SP signed-note puts the signatures (as
    /// `note::open` splits it). For reports and for comparing with a tree of one's own; never
    /// for trusting what the note says.
    pub fn parse_unverified_note(note: &str) -> Result<Self, NoteError> {
        let split = note.rfind("\n\n").ok_or_else(|| {
            NoteError::MalformedNote(
                "not a signed note (no blank line before the signatures)".into(),
            )
        })?;
        Self::parse_text(&note[..=split])
    }

    /// Parses a checkpoint body; extension lines after the root are allowed and ignored, but
    /// each must be non-empty.
    pub fn parse_text(text: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::MalformedNote(format!("checkpoint: {m}"));
        // Each line, the last one too, ends in a newline (c2sp.org/signed-note: the text ends
        // in one; tlog-checkpoint's lines are separated by them).
        let Some(text) = text.strip_suffix('\n') else {
            return Err(bad("the text does not end in a newline"));
        };
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("empty origin"))?;
        let size_s = lines.next().ok_or_else(|| bad("missing size line"))?;
        let size = crate::canonical_decimal(size_s).map_err(|e| match e {
            crate::DecimalError::TooLarge => bad(&format!("size {size_s:?} {e}")),
            _ => bad(&format!(
                "size {size_s:?} is not a decimal without leading zeros"
            )),
        })?;
        let root_s = lines.next().ok_or_else(|| bad("missing root line"))?;
        let root: Hash = B64
            .decode(root_s)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("root is not base64 of 32 bytes"))?;
        // c2sp.org/tlog-checkpoint: "Extension lines, if any, MUST be non-empty."
        for (number, line) in (4..).zip(lines) {
            if line.is_empty() {
                return Err(bad(&format!(
                    "line {number} (an extension line) is empty; extension lines must be non-empty"
                )));
            }
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Signs this checkpoint with every key in `signers`.
    pub fn sign(&self, signers: &[&NoteSigner]) -> Result<SignedCheckpoint, NoteError> {
        let note = note::sign(&self.to_text(), signers)?;
        Ok(SignedCheckpoint {
            checkpoint: self.clone(),
            note,
        })
    }
}

/// A checkpoint with its signed-note bytes, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed body.
    pub checkpoint: Checkpoint,
    /// The signed note exactly as signed and stored; auditors get these bytes.
    pub note: String,
}

impl SignedCheckpoint {
    /// Opens a signed checkpoint: signatures checked against `known` (at least one must have
    /// signed, none may fail) and the body parsed. The signing key's name need not be the
    /// origin: tlog-checkpoint only says it "SHOULD match the origin line" (Onboard's own keys
    /// always do: `AuditLog::open` and key rotation refuse any other name), so a checkpoint of
    /// another log is read as its keys sign it. Which keys belong to which log is the caller's.
    pub fn open(note_text: &str, known: &[NoteVerifier]) -> Result<Self, NoteError> {
        let opened = note::open(note_text, known)?;
        let checkpoint = Checkpoint::parse_text(&opened.text)?;
        Ok(Self {
            checkpoint,
            note: note_text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_strict_size() {
        let c = Checkpoint {
            origin: "onboard.example.net/audit".into(),
            size: 1234,
            root: [7u8; 32],
        };
        let t = c.to_text();
        assert_eq!(t.lines().count(), 3);
        assert_eq!(Checkpoint::parse_text(&t).unwrap(), c);
        assert!(Checkpoint::parse_text(&t.replace("1234", "01234")).is_err());
        assert!(Checkpoint::parse_text(&t.replace("1234", "-1")).is_err());
        assert!(Checkpoint::parse_text("o\n1\nAAAA\n").is_err());
    }

    /// c2sp.org/tlog-checkpoint: "Extension lines, if any, MUST be non-empty."
    #[test]
    fn extension_lines_must_be_non_empty() {
        let t = Checkpoint {
            origin: "log.example".into(),
            size: 5,
            root: [7u8; 32],
        }
        .to_text();
        let with = |ext: &str| Checkpoint::parse_text(&format!("{t}{ext}"));
        assert_eq!(with("ext one\next two\n").unwrap().size, 5);
        // Every line ends in a newline, the last one too.
        for cut in [t.trim_end_matches('\n').to_owned(), format!("{t}ext")] {
            let e = Checkpoint::parse_text(&cut).unwrap_err().to_string();
            assert!(e.contains("does not end in a newline"), "{cut:?}: {e}");
        }
        // A signed note carries at least one signature (c2sp.org/signed-note).
        assert!(crate::note::sign(&t, &[]).is_err());
        for (ext, line) in [("\n", 4), ("ext\n\n", 5), ("\next\n", 4), ("a\n\nb\n", 5)] {
            let e = with(ext).unwrap_err().to_string();
            assert!(
                e.contains(&format!("line {line} (an extension line) is empty")),
                "{ext:?}: {e}"
            );
        }
    }

    #[test]
    fn checkpoint_bodies_parse_without_keys() {
        let note =
            "o.example/log\n3\nrrFfbW3kqAJA3TIl9fGbFVl/jHrwjYl9K6GXtEHF7EU=\n\n\u{2014} o x\n";
        assert_eq!(Checkpoint::parse_unverified_note(note).unwrap().size, 3);
        assert!(Checkpoint::parse_unverified_note("o\n3\n").is_err());
        // A blank line inside the text is not where the signatures start: the body up to the
        // last one is parsed, and a checkpoint body may not hold an empty line.
        let inner_blank = format!(
            "o\n3\n{}\n\nextra\n\n\u{2014} k AAAA\n",
            "A".repeat(43) + "="
        );
        assert!(Checkpoint::parse_unverified_note(&inner_blank).is_err());
    }

    /// tlog-checkpoint: the key name "SHOULD match the origin line", so one that does not is
    /// still read (its signature verified like any other).
    #[test]
    fn a_key_named_other_than_the_origin_still_opens() {
        let k = NoteSigner::generate("other.example").unwrap();
        let c = Checkpoint {
            origin: "log.example".into(),
            size: 1,
            root: [0; 32],
        };
        let s = c.sign(&[&k]).unwrap();
        let opened = SignedCheckpoint::open(&s.note, &[k.verifier()]).unwrap();
        assert_eq!(opened.checkpoint, c);
        let stranger = NoteSigner::generate("log.example").unwrap();
        assert!(SignedCheckpoint::open(&s.note, &[stranger.verifier()]).is_err());
    }
}
