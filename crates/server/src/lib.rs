//! Onboard's gRPC server.
//!
//! - [`config`]: the TOML configuration with `ONBOARD_<SECTION>_<KEY>` overrides.
//! - [`auth`]: callers by mTLS certificate or bearer token, roles, the one role check.
//! - [`error`]: [`ServerError`] and its one mapping to `tonic::Status`.
//! - [`App`]: the shared state (audit log in `DATA_DIR/audit`, our sled in `DATA_DIR/state`).
//! - [`audit`]: the Audit service (auditor, admin); every read is itself an audit entry.
//! - [`invitations`]: the Invitations service over the `invitations` crate.
//! - [`onboarding`]: the Onboarding service (wizard back-end) over `provision::Engine`.
//! - [`credentials`]: the Credentials service (day two) over `credentials::Credentials`.
//! - [`verification`]: the Verification service (Verify, ListDrift) over the `verifier` crate;
//!   scheduled drift runs start in [`serve()`].
//! - [`auditors`]: the live tiles API, publication and witnessing (`[audit_http]`,
//!   `[publish]`, `[witnessing]` + `[[witness]]`), started by [`run_from_config`].
//! - [`wizard`]: the customer's invitation wizard (page, script, style, and a JSON + SSE layer
//!   over the Onboarding service) on the same listener.
//! - [`backup`]: the Admin service's Backup (a consistent archive of the running server) and
//!   `onboard restore`.
//! - [`limits`]: the `[limits]` section and what enforces it (rates, caps, bounded streams).
//! - [`telemetry`]: `[telemetry]`: Prometheus metrics on their own listener (the recorder,
//!   `GET /metrics`, the gRPC metrics layer) and the log format.
//! - [`serve()`] / [`run_from_config`]: health, reflection, TLS/mTLS and the listener.

mod app;
pub mod audit;
pub mod auditors;
pub mod auth;
pub mod backup;
mod clock;
pub mod config;
pub mod credentials;
pub mod error;
pub mod generated_keys;
mod guard_layer;
mod health;
mod http_layer;
pub mod integrity;
pub mod invitations;
pub mod limits;
pub mod onboarding;
mod paging;
pub mod sealing;
mod serve;
mod storage;
pub mod telemetry;
pub mod verification;
pub mod wizard;

pub use app::{AUDIT_DIR, App, DRIFT_ACTOR, STATE_DIR};
pub use auth::{Caller, Role, token_sha256_hex};
pub use config::Config;
pub use error::ServerError;
pub use integrity::{migrate_records, reanchor};
pub use serve::{run_from_config, serve, serve_with_health};

/// A server stream of `T`, as the streaming RPCs return it.
pub type BoxStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;
