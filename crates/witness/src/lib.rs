//! Witness cosigning for Onboard's audit log: C2SP tlog-cosignature (Ed25519 cosignature/v1)
//! and the C2SP tlog-witness `add-checkpoint` protocol.
//!
//! - [`cosig`]: cosigner keys, verifier keys and cosignature lines.
//! - [`protocol`]: the `add-checkpoint` wire format.
//! - [`Witness`] and [`server`]: a witness that cosigns only checkpoints extending, by a
//!   verified consistency proof, the one it last cosigned, with atomically persisted state.
//! - [`WitnessClient`] and [`Submitter`]: offer each new checkpoint of an
//!   [`audit_log::AuditLog`] to the configured witnesses in the background and keep the latest
//!   cosigned checkpoint for readers.
//! - [`check_not_rolled_back`]: the start-up check against a rolled-back data directory.
//! - [`verify_cosigned`]: log signature plus a quorum of trusted witnesses.

pub mod client;
pub mod config;
pub mod cosig;
mod error;
mod fsutil;
pub mod protocol;
mod rollback;
mod round;
pub mod server;
mod state;
mod store;
mod submitter;
mod verify;
mod witness;

pub use client::{AddOutcome, WitnessClient, WitnessEndpoint};
pub use config::{WitnessEndpointConfig, WitnessServerConfig};
pub use cosig::{CosignerKey, CosignerVerifier};
pub use error::WitnessError;
pub use rollback::{RollbackReport, WitnessProbe, check_not_rolled_back};
pub use state::LogState;
pub use store::{CosignatureStore, StoredState, WitnessRecord};
pub use submitter::{CosignedCheckpoint, Submitter, SubmitterConfig, WitnessStatus};
pub use verify::{VerifiedCheckpoint, verify_cosigned};
pub use witness::{TrustedLog, Witness};
