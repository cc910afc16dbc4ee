//! The archive format: a plain tar file (ustar, readable with `tar tf`) whose members are, in
//! this order:
//!
//! - `manifest.json` ([`Manifest`]): format version, when and by which server version it was
//!   made, the log's origin, the archived log's size, root and signed checkpoint note, the
//!   state store's trees, and the size and SHA-256 of every other member;
//! - `audit.records`: the audit log's sled records as of that checkpoint (metadata, the
//!   checkpoint notes, the entries with the tree nodes they complete), framed as below;
//! - `state.records`: every record of every tree of the state store, framed as below, with the
//!   two keys a server generates when none is configured left out (the backup refuses to run
//!   in that case anyway).
//!
//! A record is `u16 tree length, tree, u32 key length, key, u32 value length, value`, lengths
//! big-endian. Nothing in the archive is a key: signing, sealing, invitation and TLS keys live
//! in files named by the configuration, which a backup never opens.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The first member.
pub const MANIFEST: &str = "manifest.json";
/// The audit log's records.
pub const AUDIT_MEMBER: &str = "audit.records";
/// The state store's records.
pub const STATE_MEMBER: &str = "state.records";
/// What `format` says.
pub const FORMAT: &str = "onboard-backup";
/// The format version this build writes and reads. The manifest's types refuse unknown
/// fields, so that an archive is never half understood: any field added to them raises this,
/// and a reader of the old version then refuses the new archive by its version, not a field.
pub const VERSION: u32 = 1;
/// The tree name the audit log's records carry.
pub const AUDIT_TREE: &str = "audit";
/// Metadata keys of keys the server generated into the state store; never archived.
pub const GENERATED_KEYS: &[(&str, &str)] = &[
    ("meta", "provision_sealing_key"),
    ("meta", "invitation_token_key"),
];
/// The longest tree name, key and value a record may have (sled's own limits are larger; ours
/// bound what a damaged archive can make us allocate).
const MAX_TREE: usize = 1024;
/// See [`MAX_TREE`].
const MAX_VALUE: usize = 64 << 20;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`], so a stray JSON file is not taken for a manifest.
    pub format: String,
    /// [`VERSION`]; a reader refuses versions it does not know.
    pub version: u32,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The `onboard` version that took it, for support.
    pub server_version: String,
    /// The audit log's origin; a restore refuses a configuration with another one.
    pub origin: String,
    /// The archived audit log.
    pub audit: AuditPart,
    /// The archived state store.
    pub state: StatePart,
    /// Every member after the manifest, in archive order, with its checksum.
    pub members: Vec<Member>,
}

/// The audit log in the archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditPart {
    /// Entries archived (the checkpoint's size).
    pub size: u64,
    /// The root at that size, hex.
    pub root: String,
    /// The signed checkpoint note for that size, verbatim (restored as the head note).
    pub checkpoint: String,
    /// Records in `audit.records`.
    pub records: u64,
}

/// The state store in the archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatePart {
    /// Records per tree.
    pub trees: std::collections::BTreeMap<String, u64>,
    /// How many exports it took until two in a row agreed (1 = the first pair).
    pub export_rounds: u32,
    /// How long audit appends were paused for the export, in milliseconds.
    pub pause_ms: u64,
}

/// One member after the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its name in the tar file.
    pub name: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// Writes one framed record.
pub fn write_record(out: &mut impl Write, tree: &[u8], key: &[u8], value: &[u8]) -> io::Result<()> {
    write_framed(out, 2, tree)?;
    write_framed(out, 4, key)?;
    write_framed(out, 4, value)
}

/// Writes `bytes` after its length, big-endian in `width` bytes (2 or 4, as
/// [`Records`] reads it).
fn write_framed(out: &mut impl Write, width: usize, bytes: &[u8]) -> io::Result<()> {
    let len = bytes.len().to_be_bytes();
    let (high, low) = len.split_at(len.len().saturating_sub(width));
    if high.iter().any(|b| *b != 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "record too long",
        ));
    }
    out.write_all(low)?;
    out.write_all(bytes)
}

/// The framed length of a record.
pub fn record_len(tree: &[u8], key: &[u8], value: &[u8]) -> u64 {
    (2 + tree.len() + 4 + key.len() + 4 + value.len()) as u64
}

/// One framed record as read: tree, key, value.
pub type Framed = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Reads framed records from `input` until it ends (a record cut short is an error).
pub struct Records<R> {
    /// The member's bytes.
    input: R,
    /// Records read so far (for error messages).
    count: u64,
}

impl<R: Read> Records<R> {
    /// Records from `input`.
    pub fn new(input: R) -> Self {
        Self { input, count: 0 }
    }

    fn read_len(&mut self, width: usize, first: bool) -> io::Result<Option<usize>> {
        let mut buf = [0u8; 4];
        let buf = &mut buf[..width];
        if first {
            let n = self.input.read(&mut buf[..1])?;
            if n == 0 {
                return Ok(None);
            }
            self.input.read_exact(&mut buf[1..])?;
        } else {
            self.input.read_exact(buf)?;
        }
        Ok(Some(
            buf.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b)),
        ))
    }

    fn read_bytes(&mut self, len: usize, max: usize) -> io::Result<Vec<u8>> {
        if len > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "record {}: a length of {len} bytes is beyond {max}",
                    self.count
                ),
            ));
        }
        let mut v = vec![0u8; len];
        self.input.read_exact(&mut v)?;
        Ok(v)
    }

    fn next_record(&mut self) -> io::Result<Option<Framed>> {
        let Some(tree_len) = self.read_len(2, true)? else {
            return Ok(None);
        };
        let tree = self.read_bytes(tree_len, MAX_TREE)?;
        let key_len = self.read_len(4, false)?.unwrap_or(0);
        let key = self.read_bytes(key_len, MAX_VALUE)?;
        let value_len = self.read_len(4, false)?.unwrap_or(0);
        let value = self.read_bytes(value_len, MAX_VALUE)?;
        self.count += 1;
        Ok(Some((tree, key, value)))
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = io::Result<Framed>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record {} is cut short", self.count),
            ))),
            Err(e) => Some(Err(e)),
        }
    }
}

/// A reader that hashes what passes through it.
pub struct Hashing<R> {
    /// The underlying reader.
    pub inner: R,
    /// SHA-256 so far.
    pub hasher: sha2::Sha256,
    /// Bytes so far.
    pub bytes: u64,
}

impl<R> Hashing<R> {
    /// Hashes `inner`'s bytes.
    pub fn new(inner: R) -> Self {
        use sha2::Digest;
        Self {
            inner,
            hasher: sha2::Sha256::new(),
            bytes: 0,
        }
    }

    /// The hex SHA-256 and length of everything read.
    pub fn finish(self) -> (String, u64) {
        use sha2::Digest;
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_cut_record_is_an_error() {
        let mut buf = Vec::new();
        write_record(&mut buf, b"t", b"k1", b"v1").unwrap();
        write_record(&mut buf, b"tree2", b"", b"value").unwrap();
        assert_eq!(
            record_len(b"t", b"k1", b"v1") + record_len(b"tree2", b"", b"value"),
            buf.len() as u64
        );
        let all: Vec<_> = Records::new(buf.as_slice())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(all[1], (b"tree2".to_vec(), vec![], b"value".to_vec()));
        let cut = &buf[..buf.len() - 1];
        let err = Records::new(cut)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert!(err.to_string().contains("record 1 is cut short"), "{err}");
    }

    #[test]
    fn a_tree_name_beyond_two_length_bytes_is_refused_unwritten() {
        let mut buf = Vec::new();
        let name = vec![b't'; 65_536];
        let err = write_record(&mut buf, &name, b"k", b"v").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(buf.is_empty());
        write_record(&mut buf, &name[1..], b"k", b"v").unwrap();
        assert_eq!(&buf[..2], [0xff, 0xff]);
    }
}
