//! Backup and restore of a data directory (`docs/operations.md`, "Backup and restore").
//!
//! - [`format`]: the archive (tar, `manifest.json` first, framed records, checksums).
//! - [`AdminService`]: `onboard.v1.Admin/Backup`, a consistent snapshot of the running
//!   server (how: see `service.rs`), streamed in chunks.
//! - [`restore()`]: `onboard restore`, everything checked before anything is written.
//! - [`check_archive`]: the same checks of the archive alone, which `onboard backup` runs on
//!   what it received before naming the file.
//!
//! Keys never enter an archive: the backup refuses to run while the server keeps a key in its
//! state store (`storage.sealing_key` or `invitations.token_key` unset), leaves those records
//! out regardless, and never opens a key file.

mod check;
pub mod format;
mod restore;
mod service;

pub use check::{ArchiveSummary, check_archive};
pub use restore::{RestoreRequest, restore};
pub use service::AdminService;
