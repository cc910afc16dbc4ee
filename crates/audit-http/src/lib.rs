//! The audit log's live read API in the C2SP tlog-tiles layout (c2sp.org/tlog-tiles), served
//! from a running [`audit_log::AuditLog`] without exporting anything:
//!
//! - `GET /checkpoint`: the latest signed checkpoint, `text/plain; charset=utf-8`, cacheable for
//!   two seconds only (it changes with every commit);
//! - `GET /tile/<L>/<N>[.p/<W>]`: hash tiles, `application/octet-stream`, immutable;
//! - `GET /tile/entries/<N>[.p/<W>]`: entry bundles, gzip-compressed when the client accepts it.
//!
//! Tiles come from the log's stored node hashes and entries. A tile beyond the log's latest
//! signed checkpoint is a 404 (`Cache-Control: no-store`, so no cache keeps the 404 of a tile
//! that exists a moment later), so no client sees data the log has not signed. With a witness
//! quorum the `checkpoint` served is the latest the quorum cosigned, which may be older than
//! the log's own: tiles up to the log's own latest are still served, because a client may hold
//! that checkpoint (every gRPC append answer carries it) and needs its partial tiles. A partial
//! tile of any width the tree has reached is served (clients at a slightly older checkpoint
//! need theirs), and a tile's bytes never change once served, so every tile is cached as
//! immutable. Paths are matched as sent, undecoded: a percent-encoded spelling of a tile path
//! is not one of its canonical names and is a 404.
//!
//! Access is [`Access::Open`], [`Access::Bearer`] (SHA-256 of the tokens configured, like the
//! gRPC server's `[[auth.tokens]]`) or [`Access::Mtls`] (client certificates from one CA). The
//! listener is read-only and separate from the gRPC one: [`serve`] takes an already-bound
//! listener and a shutdown future.

mod access;
mod error;
mod router;
mod serve;

pub use access::{Access, AccessKind, HttpConfig, Settings, server_tls};
pub use error::HttpError;
pub use router::router;
pub use serve::serve;
