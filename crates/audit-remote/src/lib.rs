//! The audit log away from its data directory.
//!
//! - [`Publisher`]: continuous publication of the log in the C2SP tlog-tiles layout to object
//!   storage ([`Target`]: S3, GCS, Azure Blob or a local directory, through the `object_store`
//!   crate), checkpoint last, resumable from what the target holds.
//! - [`Source`]: reading a log from a tiles API (`http(s)://…`, our server's or any static
//!   server's) or from a publication target; [`fetch`] verifies it (fully or incrementally from
//!   a saved checkpoint), copies it into the export layout, and computes tlog-proofs from its
//!   tiles; [`Follower`] follows it as it grows and raises an alert when it rewinds or forks.
//!   Every read is held to what the resource may hold ([`MAX_CHECKPOINT_BYTES`],
//!   [`MAX_HASH_TILE_BYTES`], [`MAX_BUNDLE_BYTES`]).

mod body;
mod error;
pub mod fetch;
mod follow;
mod publish;
mod source;
mod target;

pub use body::{MAX_BUNDLE_BYTES, MAX_CHECKPOINT_BYTES, MAX_HASH_TILE_BYTES};
pub use error::RemoteError;
pub use follow::{FollowStep, Follower};
pub use publish::{Observer, PublishEvent, Publisher};
pub use source::{BlockingReader, ClientSettings, HttpSource, Source, shown};
pub use target::{Lifetime, Target};
