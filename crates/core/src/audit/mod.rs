//! Audit entries: the public contract with auditors. [`AuditEntry`] is the one definition of
//! an entry (the common fields, one [`Action`], one [`TargetKind`], and the action's declared
//! details); [`audited_change`] is the one intent → call → outcome wrapper. No other code builds
//! entry JSON or appends to the log (the workspace's tidy test checks).

mod action;
mod entry;
mod record;

pub use action::Action;
pub use entry::{
    AuditEntry, COMMON_FIELDS, Change, Phase, SCHEMA_VERSION, Scope, StoredEntry, Target,
    TargetKind, change, set, set_trace_source,
};
pub use record::{ChangeError, Described, EntraChange, audited_change};
