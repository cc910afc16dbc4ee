//! What one resource read from afar may hold, and the gzip coding of entry bundles in object
//! stores.
//!
//! Every read stops at a cap that depends on the resource, before the whole body is held, so a
//! hostile or broken server or bucket cannot exhaust the reader's memory: a checkpoint is a
//! signed note of at most [`MAX_CHECKPOINT_BYTES`] (signed-note: verifiers SHOULD bound a
//! note's size), a hash tile at most 256 hashes (tlog-tiles: "Full tiles MUST be exactly 256
//! hashes wide, or 8,192 bytes"), an entry bundle at most 256 entries of at most
//! [`audit_log::MAX_ENTRY_BYTES`] each behind its 2-byte length. A body past its cap is
//! [`RemoteError::Invalid`]: what the place holds is wrong, which is not a failure to read it.

use std::io::{Read, Write};

use audit_log::{MAX_ENTRY_BYTES, TileId, TileKind};

use crate::error::RemoteError;

/// The longest checkpoint note read: the witness protocol's bound on a request, which carries
/// the same note (c2sp.org/tlog-witness; `witness::MAX_REQUEST_BYTES`).
pub const MAX_CHECKPOINT_BYTES: usize = 128 * 1024;
/// The longest hash tile: 256 SHA-256 hashes.
pub const MAX_HASH_TILE_BYTES: usize = 256 * 32;
/// The longest entry bundle: 256 entries, each a big-endian uint16 length and its bytes.
pub const MAX_BUNDLE_BYTES: usize = 256 * (2 + MAX_ENTRY_BYTES);

/// The most `rel` (`checkpoint`, `tile/…`) may hold; anything else is held to a bundle's cap.
pub(crate) fn max_bytes(rel: &str) -> usize {
    if rel == "checkpoint" {
        return MAX_CHECKPOINT_BYTES;
    }
    match TileId::parse(rel) {
        Ok(TileId {
            kind: TileKind::Hash { .. },
            ..
        }) => MAX_HASH_TILE_BYTES,
        _ => MAX_BUNDLE_BYTES,
    }
}

/// Whether `rel` names an entry bundle (full or partial).
pub(crate) fn is_bundle(rel: &str) -> bool {
    matches!(
        TileId::parse(rel),
        Ok(TileId {
            kind: TileKind::Entries,
            ..
        })
    )
}

/// The answer for a body longer than `cap`.
pub(crate) fn too_long(location: &str, cap: usize) -> RemoteError {
    RemoteError::Invalid {
        location: location.to_owned(),
        detail: format!("longer than {cap} bytes, the most it may hold"),
    }
}

/// A body read chunk by chunk, refused as soon as it grows past its cap.
pub(crate) struct Capped {
    /// What was read so far.
    buf: Vec<u8>,
    /// The most it may hold.
    cap: usize,
}

impl Capped {
    /// An empty body of at most `cap` bytes; `hint` is the length announced, if any.
    pub(crate) fn new(cap: usize, hint: Option<u64>) -> Self {
        let hint = hint.and_then(|h| usize::try_from(h).ok()).unwrap_or(0);
        Self {
            buf: Vec::with_capacity(hint.min(cap)),
            cap,
        }
    }

    /// Appends `chunk`; false (and nothing appended) when the body would pass its cap.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> bool {
        if chunk.len() > self.cap - self.buf.len() {
            return false;
        }
        self.buf.extend_from_slice(chunk);
        true
    }

    /// The body.
    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

/// How an object is coded in its store, from its `Content-Encoding` attribute. Decided by the
/// attribute alone, never by the bytes: a bundle whose first entry is 8,075 bytes long starts
/// with 1f 8b, gzip's magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// No attribute (or `identity`): the bytes are the resource.
    Identity,
    /// `gzip` (or `x-gzip`, RFC 9110 §8.4.1.3): the bytes are its gzip coding.
    Gzip,
}

impl Coding {
    /// The coding an object's `Content-Encoding` attribute names; an error for a compression
    /// this reader cannot decode. Any other value (`identity`, or a label that names no coding,
    /// such as `utf-8`) leaves the bytes as they are, as an HTTP client does.
    pub(crate) fn of(content_encoding: Option<&str>) -> Result<Self, String> {
        let Some(v) = content_encoding.map(str::trim) else {
            return Ok(Self::Identity);
        };
        if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
            Ok(Self::Gzip)
        } else if ["br", "deflate", "zstd", "compress", "x-compress"]
            .iter()
            .any(|c| v.eq_ignore_ascii_case(c))
            || v.contains(',')
        {
            Err(format!(
                "stored with Content-Encoding {v:?}, which this reader cannot decode"
            ))
        } else {
            Ok(Self::Identity)
        }
    }

    /// The most the stored bytes of a resource of at most `cap` bytes may take. A gzip coding
    /// is at most a little longer than what it codes (stored deflate blocks add 5 bytes per
    /// 65,535, gzip its header and trailer); more is no coding of `cap` bytes, and bounds what
    /// is read of a stream that would decode to little.
    pub(crate) fn stored_cap(self, cap: usize) -> usize {
        match self {
            Self::Identity => cap,
            Self::Gzip => cap + cap / 8192 + 1024,
        }
    }
}

/// `data` gzip-coded (one member, default level).
pub(crate) fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(data)?;
    enc.finish()
}

/// The bytes the gzip coding `data` of `location` decodes to, at most `cap` of them.
pub(crate) fn gunzip(location: &str, data: &[u8], cap: usize) -> Result<Vec<u8>, RemoteError> {
    let mut out = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    match flate2::read::MultiGzDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
    {
        Err(e) => Err(RemoteError::Invalid {
            location: location.to_owned(),
            detail: format!("stored with Content-Encoding gzip but not valid gzip ({e})"),
        }),
        Ok(_) if out.len() > cap => Err(too_long(location, cap)),
        Ok(_) => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_by_resource() {
        assert_eq!(max_bytes("checkpoint"), 131_072);
        assert_eq!(max_bytes("tile/0/000"), 8192);
        assert_eq!(max_bytes("tile/3/x001/234.p/7"), 8192);
        assert_eq!(max_bytes("tile/entries/000"), 256 * 65_537);
        assert_eq!(max_bytes("tile/entries/001.p/44"), 256 * 65_537);
        assert!(is_bundle("tile/entries/001.p/44"));
        assert!(!is_bundle("tile/0/001.p/44"));
        assert!(!is_bundle("checkpoint"));
    }

    #[test]
    fn a_capped_body_refuses_the_chunk_that_passes_its_cap() {
        let mut b = Capped::new(5, Some(1 << 40));
        assert!(b.push(b"abc"));
        assert!(b.push(b"de"));
        assert!(!b.push(b"f"));
        assert_eq!(b.into_inner(), b"abcde");
    }

    #[test]
    fn the_coding_is_the_attribute_s() {
        assert_eq!(Coding::of(None), Ok(Coding::Identity));
        assert_eq!(Coding::of(Some("identity")), Ok(Coding::Identity));
        assert_eq!(Coding::of(Some(" GZIP ")), Ok(Coding::Gzip));
        assert_eq!(Coding::of(Some("x-gzip")), Ok(Coding::Gzip));
        assert_eq!(Coding::of(Some("utf-8")), Ok(Coding::Identity));
        assert!(Coding::of(Some("br")).unwrap_err().contains("\"br\""));
        assert!(Coding::of(Some("gzip, br")).is_err());
    }

    /// A bundle whose first entry is 8,075 bytes long begins with 1f 8b, gzip's magic: stored
    /// raw it is read as it is, stored gzip-coded it decodes to itself. Nothing looks at the
    /// bytes to decide.
    #[test]
    fn a_bundle_starting_with_gzip_magic_is_read_by_its_attribute() {
        let entry = vec![b'x'; 8075];
        let mut bundle = 8075u16.to_be_bytes().to_vec();
        bundle.extend_from_slice(&entry);
        assert_eq!(&bundle[..2], &[0x1f, 0x8b]);
        assert_eq!(Coding::of(None), Ok(Coding::Identity));
        let coded = gzip(&bundle).unwrap();
        assert!(coded.len() < bundle.len());
        assert_eq!(gunzip("b", &coded, MAX_BUNDLE_BYTES).unwrap(), bundle);
        // The raw bundle is no gzip stream: taking it for one would fail.
        assert!(gunzip("b", &bundle, MAX_BUNDLE_BYTES).is_err());
    }

    #[test]
    fn a_coding_that_decodes_past_the_cap_is_refused() {
        let coded = gzip(&vec![0u8; 100_000]).unwrap();
        assert!(coded.len() < 1000);
        let e = gunzip("tile/0/000", &coded, 8192).unwrap_err();
        assert!(e.to_string().contains("longer than 8192 bytes"), "{e}");
        assert_eq!(gunzip("x", &coded, 100_000).unwrap().len(), 100_000);
    }
}
