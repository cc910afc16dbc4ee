//! Onboard's signed, append-only audit log.
//!
//! Entries are JSON objects stored once in sled and hashed as stored. They form an RFC 6962
//! Merkle tree whose complete nodes are stored too, so proofs are a few reads. After each group
//! commit is durable, the log signs a C2SP checkpoint (a signed note) with Ed25519. The log can be
//! exported as C2SP tlog-tiles and verified offline by [`verify::verify_export`].
//!
//! This crate does no network IO and knows nothing of gRPC: it is storage, hashing and signing.

mod at_checkpoint;
mod bundle_files;
mod checkpoint;
pub mod durable;
mod entry;
mod error;
pub mod feed;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod head_file;
mod keys;
mod log;
pub mod merkle;
mod metrics;
pub mod note;
mod proof_file;
pub mod snapshot;
mod store;
mod syncer;
pub mod tile_id;
pub mod tile_source;
pub mod tiles;
mod upper;
pub mod verify;
mod writer;

pub use checkpoint::{Checkpoint, SignedCheckpoint};
pub use entry::{MAX_ENTRY_BYTES, PreparedEntry, SCHEMA_VERSION, format_time};
pub use error::AuditError;
pub use feed::CheckpointFeed;
pub use hash::{Hash, empty_root, leaf_hash, node_hash, reference_root};
pub use log::{Appended, AuditLog, LogConfig};
pub use note::{NoteSigner, NoteVerifier};
pub use proof_file::{TlogProof, push_proof_and_note};
pub use store::StartupCheck;
pub use tile_id::{DecimalError, TileId, TileKind, canonical_decimal};
pub use tile_source::{DirReader, TileNodes, TileReader};
pub use tiles::ExportSummary;
