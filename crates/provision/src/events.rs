//! Progress events: numbered per onboarding, persisted before they are broadcast, so a caller can
//! replay from any number and then follow live ([`crate::Engine::watch`]).

use std::sync::{Arc, Mutex};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::error::ProvisionError;
use crate::store::Store;

/// A stream of events; ends after a terminal event, or when the run stops without one (a
/// simulated crash), or when the engine is dropped.
pub type EventStream = tokio_stream::wrappers::UnboundedReceiverStream<Event>;

/// One progress event of one onboarding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// The onboarding it belongs to.
    pub onboarding_id: String,
    /// 1-based, gap-free per onboarding; what `watch(id, from)` resumes at.
    pub seq: u64,
    /// RFC 3339 UTC, for display.
    pub time: String,
    /// Step id (`app_registration`, `grant:Microsoft Graph/User.Read.All`, `role:Teams
    /// Administrator`, `cancel`, ...); empty for onboarding-level events.
    pub step: String,
    /// What happened.
    pub kind: EventKind,
}

/// What an event reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A step began.
    Started {
        /// Human description of the step.
        description: String,
    },
    /// Entra asked us to wait (429, 5xx, replication lag, credential propagation).
    Retrying {
        /// The entra-client operation retried.
        operation: String,
        /// Number of the attempt that failed.
        attempt: u32,
        /// Why, as text (e.g. "throttled (429)").
        reason: String,
        /// Why, as a kind (`Unspecified` in events stored before kinds were).
        #[serde(default)]
        kind: entra_client::RetryKind,
        /// How long the client waits before the next attempt, in milliseconds.
        wait_ms: u64,
    },
    /// A step finished; its audit outcome entries are durable.
    Done {
        /// What was found or changed.
        detail: String,
        /// Audit log indexes of the outcome entries this step wrote (empty when no change was
        /// needed), so a caller can fetch an inclusion proof for each.
        audit_seqs: Vec<u64>,
    },
    /// A step failed (the onboarding then ends with [`EventKind::Aborted`]).
    Failed {
        /// The error, without secrets.
        error: String,
        /// What it takes to go on, for programs ([`FailureCause::Unspecified`] in events stored
        /// before it was recorded).
        #[serde(default)]
        cause: FailureCause,
    },
    /// The onboarding finished; terminal.
    Completed(Completion),
    /// The onboarding stopped on an error; terminal. It can be retried or cancelled.
    Aborted {
        /// The error, without secrets.
        error: String,
        /// What it takes to go on ([`FailureCause::Unspecified`] in events stored before it
        /// was recorded).
        #[serde(default)]
        cause: FailureCause,
    },
    /// Cancel finished undoing what was created; terminal.
    Cancelled {
        /// What was removed.
        detail: String,
    },
    /// The signed-in admin made what they may; the rest waits for an admin holding one of
    /// `roles` (not terminal: Watch streams stay open; the Provision stream that got here ends).
    AwaitingAdmin {
        /// Role names, any one of which can finish (Global Administrator, Privileged Role
        /// Administrator).
        roles: Vec<String>,
        /// The changes left (`action target`).
        left: Vec<String>,
        /// When the onboarding is undone if nobody finishes it (RFC 3339).
        expires_at: String,
        /// Microsoft's admin-consent page for the app, when the Microsoft Graph permissions
        /// left may be granted there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admin_consent_url: Option<String>,
        /// Who made the changes so far (the first admin's audit actor); absent in events
        /// stored before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_by: Option<String>,
    },
}

/// Why a step or a run failed, by what it takes to go on: the machine-readable side of the
/// error text, so a caller (the wizard, a platform) need not match words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// Not classified, or an event stored before causes were recorded.
    #[default]
    Unspecified,
    /// The admin's sign-in no longer works for Microsoft (a Conditional Access claims challenge,
    /// a revoked or expired session): retrying with it cannot succeed; a new sign-in with the
    /// same invitation resumes the run.
    SignInAgain,
    /// The signed-in admin lacks a directory role a step needs.
    MissingRights,
    /// The customer's tenant lacks what the profile needs (a resource's service principal, an
    /// application permission a resource does not offer).
    Tenant,
    /// Microsoft refused or failed the call for another reason (see the text); a retry may
    /// succeed.
    Microsoft,
    /// Onboard itself failed (its audit log, store or sealing key, its profiles): the operator
    /// must look; nothing was changed that the audit log does not show.
    Service,
}

impl EventKind {
    /// A step's failure, with its cause.
    pub fn failed(e: &ProvisionError) -> Self {
        EventKind::Failed {
            error: e.to_string(),
            cause: e.cause(),
        }
    }

    /// The run's end on an error, with its cause.
    pub fn aborted(e: &ProvisionError) -> Self {
        EventKind::Aborted {
            error: e.to_string(),
            cause: e.cause(),
        }
    }

    /// True for the events that end an onboarding's stream.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EventKind::Completed(_) | EventKind::Aborted { .. } | EventKind::Cancelled { .. }
        )
    }
}

/// What a finished onboarding hands to the platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completion {
    /// Customer tenant id.
    pub tenant_id: String,
    /// Application (client) id of the new registration.
    pub client_id: String,
    /// Key id of the client secret.
    pub key_id: String,
    /// First characters of the secret, as Entra shows them.
    pub secret_hint: Option<String>,
    /// Secret expiry (RFC 3339).
    pub expires: Option<String>,
    /// The secret value: only in the live event delivered to the `provision` caller, never
    /// persisted or broadcast (skipped by serde, so it cannot reach the store by accident).
    #[serde(skip)]
    pub secret: Option<SecretString>,
}

/// Numbers, persists and fans out one onboarding's events. One per run; the mutex keeps the
/// store order, the broadcast order and the numbering the same under concurrent steps.
pub(crate) struct Emitter {
    /// Onboarding id.
    id: String,
    /// Where events are persisted.
    store: Store,
    /// Live fan-out to watchers (secret-free copies).
    hub: broadcast::Sender<Event>,
    /// The `provision` caller's own stream (full copies, the secret included), if any.
    direct: Option<mpsc::UnboundedSender<Event>>,
    /// Last number handed out.
    last: Mutex<u64>,
}

impl Emitter {
    /// An emitter continuing after the last persisted event of `id`.
    pub fn new(
        id: &str,
        store: Store,
        hub: broadcast::Sender<Event>,
        direct: Option<mpsc::UnboundedSender<Event>>,
    ) -> Result<Arc<Self>, ProvisionError> {
        let last = store.last_event_seq(id)?;
        Ok(Arc::new(Self {
            id: id.to_owned(),
            store,
            hub,
            direct,
            last: Mutex::new(last),
        }))
    }

    /// Records and sends one event. A store failure is logged and the event still sent: losing
    /// a progress note must not stop a half-done Entra change from being finished.
    pub fn emit(&self, step: &str, kind: EventKind) -> Event {
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *last += 1;
        let event = Event {
            onboarding_id: self.id.clone(),
            seq: *last,
            time: onboard_core::time::now(),
            step: step.to_owned(),
            kind,
        };
        let mut public = event.clone();
        if let EventKind::Completed(c) = &mut public.kind {
            c.secret = None;
        }
        if let Err(e) = self.store.put_event(&public) {
            tracing::error!(onboarding_id = %self.id, seq = event.seq, error = %e, "event not persisted");
        }
        // No receivers is fine: nobody is watching.
        let _ = self.hub.send(public);
        if let Some(d) = &self.direct {
            let _ = d.send(event.clone());
        }
        event
    }
}

/// Replays `id`'s persisted events from `from` and then follows live ones until a terminal one.
pub(crate) fn watch(
    store: Store,
    hub: &broadcast::Sender<Event>,
    id: &str,
    from: u64,
) -> Result<EventStream, ProvisionError> {
    // Subscribe before reading the store, so nothing emitted in between is missed; duplicates
    // are dropped by number.
    let mut live = hub.subscribe();
    let replay = store.events(id, from)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let id = id.to_owned();
    tokio::spawn(async move {
        let mut last = from.saturating_sub(1);
        // An earlier terminal event (a failed run that was retried) does not end the replay;
        // only the latest one does.
        let ended = replay.last().is_some_and(|e| e.kind.is_terminal());
        for e in replay {
            last = e.seq;
            if tx.send(e).is_err() {
                return;
            }
        }
        if ended {
            return;
        }
        loop {
            match live.recv().await {
                Ok(e) if e.onboarding_id == id && e.seq > last => {
                    last = e.seq;
                    let end = e.kind.is_terminal();
                    if tx.send(e).is_err() || end {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the broadcast buffer: the store has everything.
                    let Ok(missed) = store.events(&id, last + 1) else {
                        return;
                    };
                    for e in missed {
                        last = e.seq;
                        let end = e.kind.is_terminal();
                        if tx.send(e).is_err() || end {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(EventStream::new(rx))
}
