//! Test hooks: a workflow asks the hook at each durable point whether to go on, so tests can
//! simulate a crash (or a failure) exactly there. `None` in production.

use std::sync::Arc;

/// What a test hook tells a workflow at a durable point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    /// Go on.
    Continue,
    /// Stop at once, as if the process died: no further writes or events.
    Halt,
    /// Fail here (the record becomes `failed`).
    Fail,
}

/// Called with `(record id, point)`: the onboarding engine names each confirmed step and
/// `<step>:changed` right after each audited Entra change; the credential manager names each
/// rotation stage and `<stage>:changed`.
pub type Hook = Arc<dyn Fn(&str, &str) -> HookAction + Send + Sync>;
