//! ClaimSecret: the platform obtains a completed onboarding's client secret over its own
//! authenticated channel, exactly once, audited as `secret.hand_over`.
//!
//! Why: the customer's wizard (an invitation-token caller) drives Provision, and its Completed
//! event never carries the secret; the platform claims it here instead. An operator that ran
//! Provision itself received the secret on its stream, which counts as the claim. Claims are
//! remembered durably in the onboarding-links tree under [`CLAIM_PREFIX`] (onboarding ids are
//! UUIDs, so the prefix never collides with a link).

use credentials::RegistrationRef;
use onboard_core::audit::{AuditEntry, Phase, Scope, Target, TargetKind};
use onboard_core::time::now_ms;
use onboard_proto::v1 as pb;
use provision::Status as RunStatus;
use tonic::Request;

use super::{LINKS_TREE, OnboardingService};
use crate::auth::Role;
use crate::error::{Result, ServerError};
use crate::sealing::Delivery;

/// Key prefix of "this onboarding's secret was handed over" (value: epoch ms, big-endian).
const CLAIM_PREFIX: &str = "claimed/";

/// Whose secret is handed over: the scope of its `secret.hand_over` entries.
pub(super) struct Claimed {
    /// The onboarding id, or the attachment id of a secret entered on the wizard.
    id: String,
    /// The customer's tenant.
    tenant_id: String,
    /// The registration's client id.
    client_id: String,
    /// The service the secret belongs to.
    service_id: String,
    /// The onboarding's own secret (its key id), or the attachment's (its storage key); `None`
    /// when unknown (an onboarding without a key id, an attachment recorded before its secret
    /// was kept), whose claim falls back to the service's current secret.
    key_id: Option<String>,
}

impl Claimed {
    /// A completed onboarding's secret.
    pub(super) fn onboarding(o: &provision::Onboarding, client_id: &str) -> Self {
        Self {
            id: o.id.clone(),
            tenant_id: o.tenant_id.clone(),
            client_id: client_id.to_owned(),
            service_id: o.service_id.clone(),
            key_id: o.secret_key_id.clone().filter(|k| !k.is_empty()),
        }
    }
}

/// The `secret.hand_over` intent entry of `c`'s secret `key_id` to `actor` (by ClaimSecret or
/// on an operator's own Provision stream), delivered as `delivery` says; its outcome reuses
/// it.
fn hand_over_entry(
    actor: &str,
    c: &Claimed,
    key_id: &str,
    hint: &str,
    delivery: &Delivery,
) -> AuditEntry {
    let scope = Scope {
        actor: actor.to_owned(),
        tenant_id: Some(c.tenant_id.clone()),
        onboarding_id: Some(c.id.clone()),
        service_id: Some(c.service_id.clone()),
        client_id: Some(c.client_id.clone()),
    };
    let target = if key_id.is_empty() {
        // An attached secret whose key id Entra did not let us read: named by its hint.
        Target {
            kind: TargetKind::PasswordCredential,
            id: None,
            display_name: Some(format!("secret {hint}…")),
        }
    } else {
        Target::new(TargetKind::PasswordCredential, key_id.to_owned())
    };
    delivery.hand_over_entry(Phase::Intent, &scope, target)
}

/// The refusal of a second claim of onboarding `id`'s secret.
fn already_handed_over(id: &str) -> ServerError {
    ServerError::FailedPrecondition(format!(
        "the secret of onboarding {id} was already handed over; rotate it \
         (Credentials.RotateSecret) to get a new one"
    ))
}

impl OnboardingService {
    /// Whether the onboarding's secret has been handed over already.
    /// A claim record without a valid MAC is refused like any other state record.
    fn claimed(&self, id: &str) -> Result<bool> {
        Ok(self.mark(CLAIM_PREFIX, id)?.is_some())
    }

    /// Records, durably, that the onboarding's secret is being handed over, unless it was
    /// already: `false` when another caller claimed it first. One compare-and-swap on the claim
    /// key decides between concurrent claimants (a ClaimSecret and an operator's Provision
    /// stream, or two ClaimSecrets), so only one of them ever gets the value.
    pub(super) async fn claim_once(&self, id: &str) -> Result<bool> {
        let links = self.app.onboarding_links();
        let key = format!("{CLAIM_PREFIX}{id}");
        let sealed =
            self.app
                .record_mac()
                .seal(LINKS_TREE, key.as_bytes(), &now_ms().to_be_bytes());
        let swapped = links.compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(sealed))?;
        self.app.flush_onboarding_links().await?;
        Ok(swapped.is_ok())
    }

    /// The claim of `c`'s secret `key_id` for `actor`, audited: the `secret.hand_over`
    /// intent recorded, then the claim marked; the entry to complete once the value is out.
    /// Another claimant's win (or a mark that cannot be written) is recorded as the entry's
    /// failure and returned as the error.
    async fn audited_claim(
        &self,
        c: &Claimed,
        actor: &str,
        key_id: &str,
        hint: &str,
        delivery: &Delivery,
    ) -> Result<AuditEntry> {
        let mut entry = hand_over_entry(actor, c, key_id, hint, delivery);
        self.record(entry.clone()).await?;
        let refused = match self.claim_once(&c.id).await {
            Ok(true) => return Ok(entry),
            Ok(false) => already_handed_over(&c.id),
            Err(e) => e,
        };
        entry.phase = Phase::Failed;
        let _ = self.record(entry.with_error(refused.to_string())).await;
        Err(refused)
    }

    /// [`Self::audited_claim`] for `actor`'s own Provision stream: `None` (and the secret not
    /// sent) when it fails.
    pub(super) async fn claim_for_stream(
        &self,
        id: &str,
        actor: &str,
        key_id: &str,
        delivery: &Delivery,
    ) -> Option<AuditEntry> {
        let claimed = match self.app.engine().get(id) {
            Ok(Some(o)) => {
                let c = Claimed::onboarding(&o, o.client_id.as_deref().unwrap_or_default());
                self.audited_claim(&c, actor, key_id, "", delivery).await
            }
            Ok(None) => return None,
            Err(e) => Err(e.into()),
        };
        claimed
            .map_err(|e| {
                tracing::error!(error = %e, onboarding_id = %id, "the secret hand-over was not made; not sent");
            })
            .ok()
    }

    /// The outcome of a hand-over on a Provision stream: `succeeded` once the event entered
    /// the stream; otherwise the claim is given back and the entry says so (`failed`).
    pub(super) async fn hand_over_outcome(&self, id: &str, mut entry: AuditEntry, sent: bool) {
        if sent {
            entry.phase = Phase::Succeeded;
            if let Err(e) = self.record(entry).await {
                tracing::error!(error = %e, onboarding_id = %id, "the secret hand-over's outcome could not be audited");
            }
            tracing::info!(onboarding_id = %id, "secret handed over on the Provision stream");
            return;
        }
        self.release_claim(id).await;
        entry.phase = Phase::Failed;
        let why = "the stream closed before the secret was sent; it stays claimable";
        if let Err(e) = self.record(entry.with_error(why.to_owned())).await {
            tracing::error!(error = %e, onboarding_id = %id, "the secret hand-over's outcome could not be audited");
        }
    }

    /// Gives back a claim whose secret never left this process (the stream it was for closed
    /// before the event entered it), so ClaimSecret may still hand it over. The caller's
    /// compare-and-swap made the claim, so no other claimant holds it; a failure is logged
    /// and the claim stays (the platform then rotates).
    pub(super) async fn release_claim(&self, id: &str) {
        let links = self.app.onboarding_links();
        let key = format!("{CLAIM_PREFIX}{id}");
        let released = match links.remove(key.as_bytes()) {
            Ok(_) => self
                .app
                .flush_onboarding_links()
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match released {
            Ok(()) => {
                tracing::info!(onboarding_id = %id, "the stream closed before the secret was sent; it stays claimable")
            }
            Err(e) => {
                tracing::error!(onboarding_id = %id, error = %e, "a claim whose secret was not sent could not be given back")
            }
        }
    }

    /// Hands over the secret once: operator only, completed onboardings (or attachments)
    /// only; the intent entry is durable before the claim is marked, the claim before the
    /// answer.
    pub(super) async fn claim(
        &self,
        req: Request<pb::ClaimSecretRequest>,
    ) -> Result<pb::ClaimedSecret> {
        let caller = self.app.auth().authorize(&req, &[Role::Operator])?;
        let req = req.into_inner();
        let delivery = Delivery::from_request(req.seal_to.as_ref())?;
        let (id, c) = match req
            .onboarding_id
            .strip_prefix(credentials::ATTACHED_ID_PREFIX)
        {
            Some(rest) => {
                let uuid = ServerError::uuid("onboarding_id", rest).map_err(|_| {
                    ServerError::invalid(
                        "onboarding_id",
                        "an attachment id is `att-` and a UUID (8-4-4-4-12 hexadecimal digits)",
                    )
                })?;
                let id = format!("{}{uuid}", credentials::ATTACHED_ID_PREFIX);
                let c = self.attachment(&id)?;
                (id, c)
            }
            None => {
                let id = ServerError::uuid("onboarding_id", &req.onboarding_id)?;
                let c = self.completed(&id).await?;
                (id, c)
            }
        };
        if self.claimed(&id)? {
            return Err(already_handed_over(&id));
        }
        let reg = RegistrationRef::new(&c.tenant_id, &c.client_id);
        // The onboarding's own secret, not whatever its service uses now: a secret added or
        // rotated in since went to the caller of that change, and is not handed over twice.
        let (stored, value) = match &c.key_id {
            None => self.app.credentials().current_secret(&reg, &c.service_id)?,
            Some(key) => self.app.credentials().secret(&reg, key)?.ok_or_else(|| {
                ServerError::FailedPrecondition(format!(
                    "{id}'s secret ({key}) is no longer on the registration (rotated or \
                     revoked); what replaced it went to the caller of that change"
                ))
            })?,
        };
        // Sealed before the claim is recorded: nothing fails once it is.
        let (secret, sealed) = delivery.deliver(&value, &stored.key_id)?;
        // A concurrent claim may win between the check above and here.
        let mut entry = self
            .audited_claim(
                &c,
                &caller.identity,
                &stored.key_id,
                &stored.hint,
                &delivery,
            )
            .await?;
        entry.phase = Phase::Succeeded;
        let seq = self.record(entry).await?;
        tracing::info!(onboarding_id = %id, actor = %caller.identity, key_id = %stored.key_id,
            "secret handed over");
        Ok(pb::ClaimedSecret {
            tenant_id: c.tenant_id,
            client_id: c.client_id,
            service_id: c.service_id,
            key_id: stored.key_id,
            expires_at: crate::clock::timestamp_of(&stored.end),
            secret,
            audit_seq: seq,
            sealed,
        })
    }

    /// Completed onboarding `id`, whose registration the credential manager then holds.
    async fn completed(&self, id: &str) -> Result<Claimed> {
        let not_completed = || {
            ServerError::FailedPrecondition(format!(
                "onboarding {id} has not completed; its secret cannot be claimed yet"
            ))
        };
        let Some(o) = self.app.engine().get(id)? else {
            // No run yet: signing in, signed in or cancelled before its run is an onboarding
            // that has not completed; an id no sign-in made is unknown.
            if self.signing_in_with(id).is_none() && self.invitation_of(id)?.is_empty() {
                return Err(ServerError::NotFound(format!("no onboarding {id:?}")));
            }
            return Err(not_completed());
        };
        let c = match (o.status, &o.client_id) {
            (RunStatus::Completed, Some(client)) => Claimed::onboarding(&o, client),
            _ => return Err(not_completed()),
        };
        let reg = RegistrationRef::new(&c.tenant_id, &c.client_id);
        let creds = self.app.credentials();
        creds.ensure_imported(self.app.engine(), &reg).await?;
        Ok(c)
    }

    /// Attachment `id`: the service a wizard's "Use App Registration" gave the secret entered.
    fn attachment(&self, id: &str) -> Result<Claimed> {
        let a = self.app.credentials().attachment(id)?.ok_or_else(|| {
            ServerError::NotFound(format!(
                "no attachment {id:?} (an invitation names one once its customer connected \
                 an app registration on the wizard)"
            ))
        })?;
        Ok(Claimed {
            id: id.to_owned(),
            tenant_id: a.registration.tenant_id,
            client_id: a.registration.client_id,
            service_id: a.service_id,
            key_id: a.secret_key,
        })
    }
}
