//! Onboard's durable onboarding workflow (work in progress: see the crate README section below).

pub mod error;
pub mod names;
pub mod profiles;
pub mod roles;

pub use error::ProvisionError;
