//! Engine values to protobuf: events, onboarding summaries, plans and states.

use onboard_proto::v1 as pb;
use provision::{Event, EventKind, FailureCause, Onboarding, Plan, Status};
use secrecy::ExposeSecret;

use crate::clock::{timestamp, timestamp_of as ts};

/// The engine's state as the proto enum.
pub fn state_pb(s: Status) -> pb::OnboardingState {
    match s {
        Status::Running | Status::Cancelling => pb::OnboardingState::Provisioning,
        Status::Completed => pb::OnboardingState::Completed,
        Status::Failed => pb::OnboardingState::Failed,
        Status::Cancelled => pb::OnboardingState::Cancelled,
        Status::AwaitingAdmin => pb::OnboardingState::AwaitingAdmin,
    }
}

/// Whether a run (an onboarding in the engine's store) can be in `s`: signing in and signed in
/// are before any run and live only in this service's memory.
pub fn a_run_state(s: pb::OnboardingState) -> bool {
    !matches!(
        s,
        pb::OnboardingState::SigningIn | pb::OnboardingState::SignedIn
    )
}

/// When onboarding `id` began, as every state of it answers `created_at`: its first SignIn made
/// the id, a UUIDv7, whose first 48 bits are that instant in Unix milliseconds (so the list's
/// oldest-first order by id is this time's order). `fallback` (Unix milliseconds) only for an
/// id of another form, which no SignIn makes.
pub fn began_at(id: &str, fallback: Option<i64>) -> Option<prost_types::Timestamp> {
    let v7 = uuid::Uuid::parse_str(id)
        .ok()
        .filter(|u| u.get_version_num() == 7)
        .and_then(|u| u.get_timestamp())
        .map(|t| t.to_unix())
        .and_then(|(s, n)| {
            i64::try_from(s)
                .ok()?
                .checked_mul(1000)?
                .checked_add(i64::from(n / 1_000_000))
        });
    v7.or(fallback).map(timestamp)
}

/// An engine onboarding as the proto summary.
pub fn info_pb(o: &Onboarding, invitation_id: String, events: u64) -> pb::OnboardingInfo {
    pb::OnboardingInfo {
        onboarding_id: o.id.clone(),
        invitation_id,
        tenant_id: o.tenant_id.clone(),
        state: state_pb(o.status).into(),
        app_name: o.app_name.clone(),
        client_id: o.client_id.clone().unwrap_or_default(),
        events,
        created_at: began_at(&o.id, None).or_else(|| ts(&o.created_at)),
        updated_at: ts(&o.updated_at),
        hand_off: o
            .hand_off
            .as_ref()
            .filter(|_| o.status == Status::AwaitingAdmin)
            .map(hand_off_pb),
        error: o
            .error
            .clone()
            .filter(|_| matches!(o.status, Status::Failed | Status::Cancelling))
            .unwrap_or_default(),
        cancelling: o.status == Status::Cancelling,
    }
}

/// A wait for a privileged admin as the proto message.
pub fn hand_off_pb(h: &provision::HandOff) -> pb::HandOff {
    pb::HandOff {
        roles: provision::hand_off::roles_for(&h.rights),
        changes_left: h.left.clone(),
        expires_at: ts(&h.expires_at),
        started_by: h.first_actor.clone(),
        admin_consent_url: h.admin_consent_url.clone().unwrap_or_default(),
    }
}

/// The plan as the proto answer; a change lists the roles that would grant its right when the
/// admin lacks it.
/// `hand_off`: what `provision::Engine::hands_off` says of it.
pub fn plan_pb(p: &Plan, hand_off: bool) -> pb::PlanResponse {
    let changes = p
        .changes
        .iter()
        .map(|c| pb::PlannedChange {
            action: c.action.clone(),
            description: plain_words(c),
            // A change with nothing to do needs no role, whoever signed in.
            missing_roles: match (c.allowed, c.right) {
                (false, Some(r)) if c.operation != "none" => role_names(r),
                _ => vec![],
            },
        })
        .collect();
    let lacking: Vec<_> = p.missing_rights.iter().map(|m| m.right).collect();
    pb::PlanResponse {
        changes,
        blocked: !lacking.is_empty(),
        hand_off,
        hand_off_roles: provision::hand_off::roles_for(&lacking),
    }
}

/// A planned change in plain words, as the customer's wizard lists it (the action names it
/// precisely in `action`).
fn plain_words(c: &provision::PlannedChange) -> String {
    let t = &c.target;
    if t.is_empty() {
        // The plan shown before the app is named: its own changes name no target.
        let unnamed = match c.action.as_str() {
            "app_registration.create" => {
                Some("Create the app registration, with the name you choose next")
            }
            "service_principal.create" => Some("Create its enterprise application"),
            "client_secret.add" => {
                Some("Add a client secret to it (it goes to your provider; nobody sees it)")
            }
            "app_owner.add" => Some("Make the app an owner of itself"),
            "authentication.verify" => Some("Check that the app signs in with its secret"),
            _ => None,
        };
        if let Some(words) = unnamed {
            return words.to_owned();
        }
    }
    match (c.action.as_str(), c.operation.as_str()) {
        // Nothing to do: a removal finds nothing to remove, anything else finds it done.
        ("temporary_app.delete", "none") => format!("The temporary app {t} is already gone"),
        ("app_registration.create", "none") => format!("The app registration {t} is in place"),
        ("service_principal.create", "none") => format!("Its enterprise application ({t}) exists"),
        ("app_role_assignment.create", "none") => {
            format!("The application permission {t} is already granted")
        }
        ("directory_role_assignment.create", "none") => {
            format!("The directory role {t} is already assigned")
        }
        ("app_owner.add", "none") => format!("{t} already owns itself"),
        ("client_secret.add", "none") => format!("{t} already has its client secret"),
        (_, "none") => format!("{t} is already in place"),
        ("app_registration.create", "update") => format!("Update the app registration {t}"),
        ("app_registration.create", _) => format!("Create the app registration {t}"),
        ("service_principal.create", _) => format!("Create its enterprise application ({t})"),
        ("client_secret.add", _) => format!("Add a client secret to {t}"),
        ("app_role_assignment.create", _) => {
            format!("Grant the application permission {t}, with admin consent")
        }
        ("directory_role_assignment.create", _) => format!("Assign the directory role {t}"),
        ("app_owner.add", _) => format!("Make {t} an owner of itself"),
        ("temporary_app.delete", _) => format!("Remove the temporary app {t}"),
        ("authentication.verify", _) => format!("Check that {t} signs in with its secret"),
        (action, op) => format!("{op} {t} ({action})"),
    }
}

/// The proto's name for a failure's cause.
fn retry_kind(k: entra_client::RetryKind) -> pb::RetryKind {
    use entra_client::RetryKind as K;
    match k {
        K::Unspecified => pb::RetryKind::Unspecified,
        K::Throttled => pb::RetryKind::Throttled,
        K::MicrosoftUnavailable => pb::RetryKind::MicrosoftUnavailable,
        K::Replication => pb::RetryKind::Replication,
        K::CredentialPropagation => pb::RetryKind::CredentialPropagation,
        K::Network => pb::RetryKind::Network,
    }
}

fn failure_cause(c: FailureCause) -> pb::FailureCause {
    match c {
        FailureCause::Unspecified => pb::FailureCause::Unspecified,
        FailureCause::SignInAgain => pb::FailureCause::SignInAgain,
        FailureCause::MissingRights => pb::FailureCause::MissingRights,
        FailureCause::Tenant => pb::FailureCause::Tenant,
        FailureCause::Microsoft => pb::FailureCause::Microsoft,
        FailureCause::Service => pb::FailureCause::Service,
    }
}

/// The display names of the roles that grant `right`.
pub fn role_names(right: onboard_core::roles::Right) -> Vec<String> {
    right
        .granted_by()
        .iter()
        .map(|id| {
            onboard_core::roles::role_name(id).map_or_else(|| (*id).to_owned(), str::to_owned)
        })
        .collect()
}

/// Maps a stream of engine events to proto events. A step's `Failed` is folded into the
/// terminal `Failed` that follows it (the proto has one terminal failure), except a failed
/// cancel, which has no terminal event after it.
#[derive(Debug, Default)]
pub struct EventMapper {
    /// The step-level failures since the last terminal one, `(step, error)`: the terminal
    /// `Failed` names the step whose error ended the run. Steps run two at a time, and both
    /// may fail; the run's error is one of theirs, not necessarily the later one's.
    failed_steps: Vec<(String, String)>,
}

impl EventMapper {
    /// A mapper that has seen `before` (a Watch's events before its `from_event`), so an event
    /// that names an earlier one (the run's `Failed`, its failed step) is mapped as in a Watch
    /// from the first.
    pub fn primed<'a>(before: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut m = Self::default();
        for e in before {
            m.map(e, false);
        }
        m
    }

    /// The proto event for `e`, or `None` when it is folded into a later one. `with_secret`
    /// copies the live secret into `Completed` (the Provision stream only).
    pub fn map(&mut self, e: &Event, with_secret: bool) -> Option<pb::ProvisionEvent> {
        use pb::provision_event::Event as E;
        let step = e.step.clone();
        let event = match &e.kind {
            EventKind::Started { description } => E::Started(pb::StepStarted {
                step,
                description: description.clone(),
            }),
            EventKind::Retrying {
                operation,
                attempt,
                reason,
                kind,
                wait_ms,
            } => E::Retrying(pb::StepRetrying {
                step,
                reason: format!("{operation}: {reason}"),
                wait: Some(crate::clock::proto_duration(
                    std::time::Duration::from_millis(*wait_ms),
                )),
                attempt: attempt.saturating_add(1),
                kind: retry_kind(*kind).into(),
            }),
            EventKind::Done { audit_seqs, .. } => E::Done(pb::StepDone {
                step,
                unchanged: audit_seqs.is_empty(),
                audit_seq: audit_seqs.last().copied().unwrap_or(0),
            }),
            EventKind::Failed { error, .. } => {
                self.failed_steps.push((step, error.clone()));
                return None;
            }
            EventKind::Aborted { error, cause } => {
                let failed = std::mem::take(&mut self.failed_steps);
                let step = failed
                    .iter()
                    .find(|(_, e)| e == error)
                    .or(failed.last())
                    .map(|(s, _)| s.clone())
                    .unwrap_or_default();
                E::Failed(pb::Failed {
                    step,
                    reason: error.clone(),
                    cause: failure_cause(*cause).into(),
                })
            }
            EventKind::Cancelled { detail } => E::Cancelled(pb::Cancelled {
                detail: detail.clone(),
            }),
            EventKind::AwaitingAdmin {
                roles,
                left,
                expires_at,
                admin_consent_url,
                started_by,
            } => E::AwaitingAdmin(pb::HandOff {
                roles: roles.clone(),
                changes_left: left.clone(),
                expires_at: ts(expires_at),
                started_by: started_by.clone().unwrap_or_default(),
                admin_consent_url: admin_consent_url.clone().unwrap_or_default(),
            }),
            EventKind::Completed(c) => E::Completed(pb::Completed {
                tenant_id: c.tenant_id.clone(),
                client_id: c.client_id.clone(),
                key_id: c.key_id.clone(),
                expires_at: c.expires.as_deref().and_then(ts),
                secret: match (&c.secret, with_secret) {
                    (Some(s), true) => s.expose_secret().to_owned(),
                    _ => String::new(),
                },
                // Sealed by the stream once the claim is its (`forward.rs`).
                sealed: None,
            }),
        };
        Some(pb::ProvisionEvent {
            index: e.seq,
            time: ts(&e.time),
            event: Some(event),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_already_made_is_worded_for_its_action() {
        let words = |action: &str, operation: &str, target: &str| {
            plain_words(&provision::PlannedChange {
                action: action.into(),
                target: target.into(),
                operation: operation.into(),
                right: None,
                allowed: true,
            })
        };
        // Nothing to remove is not "in place".
        assert_eq!(
            words("temporary_app.delete", "none", "S1-sp2-token"),
            "The temporary app S1-sp2-token is already gone"
        );
        assert_eq!(
            words("temporary_app.delete", "delete", "S1-sp2-token"),
            "Remove the temporary app S1-sp2-token"
        );
        assert_eq!(
            words(
                "app_role_assignment.create",
                "none",
                "Microsoft Graph/User.Read.All"
            ),
            "The application permission Microsoft Graph/User.Read.All is already granted"
        );
        // No action name reaches the page.
        for action in [
            "app_registration.create",
            "x.y",
            "directory_role_assignment.create",
        ] {
            assert!(!words(action, "none", "T").contains(action), "{action}");
        }
    }

    fn event(step: &str, kind: EventKind) -> Event {
        Event {
            onboarding_id: "o".into(),
            seq: 1,
            time: String::new(),
            step: step.into(),
            kind,
        }
    }

    fn failed(error: &str) -> EventKind {
        EventKind::Failed {
            error: error.into(),
            cause: FailureCause::Microsoft,
        }
    }

    /// Two steps that ran at once both failed: the terminal `Failed` names the step whose error
    /// ended the run, whichever failed last; with no match, the last failed step.
    #[test]
    fn the_terminal_failure_names_the_step_whose_error_ended_the_run() {
        use pb::provision_event::Event as E;
        let mut m = EventMapper::default();
        for (step, error) in [("service_principal", "sp: refused"), ("client_secret", "x")] {
            assert!(m.map(&event(step, failed(error)), false).is_none());
        }
        let abort = |e: &str| {
            event(
                "",
                EventKind::Aborted {
                    error: e.to_owned(),
                    cause: FailureCause::SignInAgain,
                },
            )
        };
        let Some(E::Failed(f)) = m.map(&abort("sp: refused"), false).and_then(|e| e.event) else {
            panic!("no terminal failure");
        };
        assert_eq!(
            (f.step.as_str(), f.reason.as_str()),
            ("service_principal", "sp: refused")
        );
        // The cause is the run's, as the engine classified the error that ended it.
        assert_eq!(f.cause(), pb::FailureCause::SignInAgain);
        m.map(&event("grant", failed("a")), false);
        let Some(E::Failed(f)) = m.map(&abort("other"), false).and_then(|e| e.event) else {
            panic!("no terminal failure");
        };
        assert_eq!(f.step, "grant");
    }
}
