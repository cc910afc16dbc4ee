//! What a handler adds to its RPC's log line: the caller's identity once it is known, and the
//! onboarding the request names. The layer (`super::grpc`) puts an empty [`CallNote`] into
//! every request's extensions; tonic hands those to the handler's `Request`.

use std::sync::{Arc, Mutex};

/// The longest onboarding id written to a log line (ids are UUIDs; a caller may send junk).
const MAX_ID_CHARS: usize = 64;

/// Shared between the layer (which logs it when the call ends) and the handler (which fills
/// it in).
#[derive(Clone, Default)]
pub(crate) struct CallNote(
    /// What the handler noted.
    pub(crate) Arc<Mutex<Noted>>,
);

/// The fields of a [`CallNote`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Noted {
    /// The caller's identity (the audit `actor`), once authenticated.
    pub(crate) caller: Option<String>,
    /// The onboarding the request names, if any.
    pub(crate) onboarding_id: Option<String>,
}

impl CallNote {
    /// The note the layer put into `req`, if it came through the layer; for a handler that
    /// learns the caller after it consumed the request.
    pub(crate) fn of<T>(req: &tonic::Request<T>) -> Option<Self> {
        req.extensions().get::<CallNote>().cloned()
    }

    /// Notes the caller and the onboarding at once.
    pub(crate) fn set(&self, caller: &str, onboarding_id: &str) {
        self.update(|n| {
            n.caller = Some(caller.to_owned());
            n.onboarding_id = Some(onboarding_id.chars().take(MAX_ID_CHARS).collect());
        });
    }

    /// A copy of what was noted.
    pub(crate) fn get(&self) -> Noted {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Noted)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Notes the authenticated caller of `req` (a no-op for requests that did not come through the
/// layer, e.g. the wizard's in-process calls).
pub(crate) fn note_caller<T>(req: &tonic::Request<T>, identity: &str) {
    if let Some(n) = req.extensions().get::<CallNote>() {
        n.update(|n| n.caller = Some(identity.to_owned()));
    }
}

/// Notes the onboarding `req` is about: an id that passed the UUID check. Anything else is not
/// noted (the call's line shows no onboarding): an id field may hold whatever a client put in
/// it, an invitation token sent in the wrong field included, and the line is written at info.
pub(crate) fn note_onboarding<T>(req: &tonic::Request<T>, onboarding_id: &str) {
    if !onboard_core::text::is_guid(onboarding_id) {
        return;
    }
    if let Some(n) = req.extensions().get::<CallNote>() {
        let id: String = onboarding_id.chars().take(MAX_ID_CHARS).collect();
        n.update(|n| n.onboarding_id = Some(id));
    }
}
