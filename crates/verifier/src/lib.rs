//! Day-two verification of Onboard's app registrations.
//!
//! [`Verifier::verify`] runs, in order: `platform_status` (gRPC health or an HTTPS JSON probe of
//! the platform service), `client_credentials` (the stored secret gets a Graph token),
//! `tenant_admin_api_token` (when the profile has Skype and Teams Tenant Admin API
//! permissions), `token_roles` (the tokens' `roles` equal the profile), `directory_roles` (the
//! service principal's role assignments equal the profile), `secret_expiry`,
//! `temporary_app_removed`, and `app_credentials` (when the secrets Onboard holds are known: no
//! secret, certificate or federated identity credential made outside Onboard). Each is OK /
//! WARN / FAIL with a human detail; the report's overall status is the worst. [`Report::record`] appends it to the audit log as
//! `verification.report`. No secret or token ever enters a report, an entry, a log or an error.
//!
//! [`DriftMonitor`] runs that for every registration a [`Targets`] source knows, records each
//! new difference as a `drift.detected` audit entry, keeps the open ones in sled, and can repair
//! missing permissions and roles (`drift.repair` intent + outcome) with an admin token the
//! source provides.

#![warn(missing_docs)]

pub mod app_credentials;
pub mod checks;
pub mod drift;
pub mod error;
pub mod input;
pub mod platform;
pub mod report;
pub mod targets;

pub use checks::Verifier;
pub use drift::{DriftItem, DriftMonitor, DriftStore, MonitorConfig, RunSummary};
pub use error::{Result, VerifyError};
pub use input::{ExpectedRole, ManagedSecret, PlatformEndpoint, Probe, Target, VerifyInput};
pub use report::{Api, Check, Finding, Report, Status};
pub use targets::{BoxFuture, Targets};
