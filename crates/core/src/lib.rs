//! The vocabulary every part of Onboard shares, and nothing else: the typed audit entry and the
//! one intent → call → outcome wrapper ([`audit`]), sealing of secrets at rest ([`seal`]),
//! permission profiles and directory roles ([`profiles`], [`roles`], [`permissions`], their
//! name ↔ id [`table`]s), the one durable store flush and MACed record tree ([`store`]), the one time format ([`time`]), the one shutdown primitive
//! ([`shutdown`]), the one TLS crypto provider ([`tls`]), the one key file rule ([`key_file`]), test hooks ([`hook`]), the vendor's fixed names ([`platform`]) and the seam
//! from onboarding to day-two management ([`provisioned`]). It runs no workflow and serves
//! nothing; the workflow, day-two, verification, invitation and gRPC crates build on it.

pub mod audit;
pub mod error;
pub mod hook;
pub mod key_file;
pub mod permissions;
pub mod platform;
pub mod profiles;
pub mod provisioned;
pub mod roles;
pub mod seal;
pub mod shutdown;
pub mod store;
pub mod table;
pub mod text;
pub mod time;
pub mod tls;

pub use audit::{Action, AuditEntry, Phase, Scope, Target, TargetKind};
pub use error::{CoreError, FieldViolation};
pub use hook::{Hook, HookAction};
pub use profiles::{ProfileSet, ResolvedProfile};
pub use seal::{Purpose, SealingKey};
pub use shutdown::{Shutdown, ShutdownController};
