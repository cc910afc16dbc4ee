//! Onboard's durable onboarding workflow, as a library the gRPC layer wraps.
//!
//! After a customer admin signs in with a device code, [`Engine::provision`] creates in their
//! tenant an app registration (single tenant, `uniqueName` upsert), its service principal, a
//! client secret, the profile's application permissions with admin consent, and its Entra
//! directory roles; removes the temporary `<server>-<provider>-token` enterprise app; and checks
//! that the new app authenticates. Every change is written to the audit log first (an `intent`
//! entry, then `succeeded`/`failed`), and nothing is changed if the log cannot be written.
//!
//! ```text
//! let engine = Engine::new(EngineConfig::new(entra, audit, db.open_tree("provision")?, key, "Sandbox1", "sp2")?)?;
//! engine.resume_all().await?;                          // after a restart
//! let admin = engine.sign_in(&device_code_tokens, "admin@contoso.com", None).await?;
//! let plan = engine.plan(&admin, &PlanRequest { .. }).await?;   // changes nothing
//! let mut events = engine.provision(ProvisionRequest { .. }, admin).await?;
//! while let Some(e) = events.next().await { /* Started / Retrying / Done / Completed (with secret) */ }
//! engine.watch(id, 1)?;  engine.get(id)?;  engine.list(&ListFilter::default())?;  engine.cancel(id, actor).await?;
//! ```
//!
//! Module map: [`names`] (name rules), [`signin`] (who signed in, what they may do),
//! [`plan`] (dry run), `steps` (each Entra change, idempotent), [`store`] (sled records),
//! [`events`] (numbered progress), [`engine`] (the state machine), [`token_app`] (the
//! provider's token app: its manifest and the check of a configured one). Profiles, roles, sealing and
//! the audit entry come from `onboard_core`; the engine hands completed onboardings to day-two
//! management through `onboard_core::provisioned::Provisioned`.

mod cancel;
mod config;
pub mod consent;
mod driver;
pub mod engine;
pub mod error;
pub mod events;
pub mod hand_off;
pub mod names;
pub mod plan;
mod planning;
mod provisioned;
pub mod signin;
mod steps;
pub mod store;
pub mod token_app;
pub mod view;

pub use engine::{Engine, EngineConfig, PlanRequest, ProvisionRequest, StepHook};
pub use error::ProvisionError;
pub use events::{Completion, Event, EventKind, EventStream, FailureCause};
pub use names::{NameRule, broken_rules, check_name, validate_name};
pub use plan::{MissingRight, Plan, PlannedChange};
pub use signin::{Admin, RightCheck, SIGN_IN_SCOPES, check_sign_in};
pub use steps::ids::TOKEN_APP as TOKEN_APP_STEP;
pub use store::{HandOff, Status};
pub use view::{ListFilter, Onboarding};
