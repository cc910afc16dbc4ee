//! The audit log's live read API in the C2SP tlog-tiles layout (c2sp.org/tlog-tiles), served
//! from a running [`audit_log::AuditLog`] without exporting anything:
//!
//! - `GET /checkpoint`: the latest signed checkpoint, `text/plain; charset=utf-8`, cacheable for
//!   two seconds only (it changes with every commit);
//! - `GET /tile/<L>/<N>[.p/<W>]`: hash tiles, `application/octet-stream`, immutable;
//! - `GET /tile/entries/<N>[.p/<W>]`: entry bundles, gzip-compressed when the client accepts it.
//!
//! Tiles come from the log's stored node hashes and entries. A tile beyond the latest checkpoint
//! is a 404, so no client sees data a checkpoint does not cover yet; a partial tile of any
//! width the tree has reached is served (clients at a slightly older checkpoint need theirs),
//! and a tile's bytes never change once served, so every tile is cached as immutable.
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
