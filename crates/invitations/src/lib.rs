//! Invitations, the customer's way in: creation, lookup by id or token, listing, revocation and
//! (for the onboarding service) redemption. A token is 32 random bytes with an HMAC tag, single
//! use, expiring and revocable; only its SHA-256 is stored. Every change is audited with an
//! `intent` entry before it is made and an outcome entry after, so nothing changes unless the
//! audit log can record it (fail closed). The token never enters an audit entry, a log line or
//! an error. The gRPC service over this crate lives in the server crate.

pub mod email;
pub mod error;
mod hand_off;
pub mod idempotency;
mod key_file;
pub mod store;
pub mod token;

use std::path::PathBuf;
use std::time::Duration;

use audit_log::AuditLog;
use onboard_core::audit::{Action, AuditEntry, Phase, Scope, Target, TargetKind};
use onboard_core::time::{format_ms, now_ms};
use onboard_core::{FieldViolation, ProfileSet};
use serde_json::json;
use zeroize::Zeroizing;

use email::Email;
pub use error::{InvitationError, Result};
pub use hand_off::REPLACED;
pub use key_file::TOKEN_KEY_META;
use key_file::{load_key_file, stored_key};
use store::Store;
pub use store::{InvitationRecord, InvitationState};
use token::TokenKey;

/// The longest validity a request may ask for.
const MAX_VALID_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a caller asks for.
#[derive(Debug, Clone, Default)]
pub struct NewInvitation {
    /// The customer's display name.
    pub customer: String,
    /// The Direct Routing service id.
    pub service_id: String,
    /// Empty means the configured provider name.
    pub provider_name: String,
    /// Empty means the configured server name.
    pub platform_server_name: String,
    /// The platform version.
    pub platform_version: String,
    /// The provisioning profile.
    pub profile: String,
    /// The expected admin, optional.
    pub admin_upn: String,
    /// `None` means the configured default.
    pub valid_for: Option<Duration>,
    /// The customer's tenant (id or domain) to sign in at; empty means the admin's own.
    pub tenant: String,
    /// The caller's idempotency key ([`idempotency`]); empty means none.
    pub idempotency_key: String,
}

/// A created invitation with its one-time parts. No `Debug`: it holds the token.
pub struct Created {
    /// The stored record.
    pub record: InvitationRecord,
    /// The token, shown once.
    pub token: Zeroizing<String>,
    /// The activation link (contains the token).
    pub activation_url: Zeroizing<String>,
    /// The rendered email (contains the link).
    pub email: Email,
}

/// What the server's configuration decides about invitations.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The wizard's URL; the token goes in its fragment (`#token=…`).
    pub activation_base_url: String,
    /// The service's name in emails.
    pub service_display_name: String,
    /// Validity when a request sets none.
    pub default_valid_for: Duration,
    /// Default provider name.
    pub provider_name: String,
    /// Default platform server name.
    pub server_name: String,
    /// The provisioning profiles, so an invitation naming an unknown profile or an unreadable
    /// platform version is refused when it is created, not when the customer signs in.
    pub profiles: ProfileSet,
    /// A file holding the token MAC key (32 raw bytes or 64 hex digits); `None` generates one
    /// and keeps it in the state database.
    pub token_key: Option<PathBuf>,
    /// The MAC every stored invitation and token record carries (the server's, derived from
    /// its sealing key).
    pub record_mac: onboard_core::store::RecordMac,
}

/// The invitation manager, shared by the Invitations service and (later) Onboarding.
pub struct Invitations {
    /// The sled trees.
    store: Store,
    /// MACs tokens so forged ones are rejected before lookup.
    key: TokenKey,
    /// Where every change is recorded first.
    audit: AuditLog,
    /// Defaults and email text.
    settings: Settings,
    /// Keyed creates one at a time ([`idempotency`]): a retry racing its first call finds
    /// the invitation instead of making a second.
    keyed: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Invitations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitations")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Invitations {
    /// Opens the trees and loads (or creates) the token key.
    pub fn open(db: &sled::Db, audit: AuditLog, settings: Settings) -> Result<Self> {
        let store = Store::open(db, settings.record_mac.clone())?;
        let key = match &settings.token_key {
            Some(path) => load_key_file(path)?,
            None => stored_key(&store)?,
        };
        Ok(Self {
            store,
            key,
            audit,
            settings,
            keyed: tokio::sync::Mutex::new(()),
        })
    }

    /// Appends one entry about invitation `target`; an error refuses the change (fail closed).
    async fn record(&self, entry: AuditEntry) -> Result<u64> {
        Ok(entry.append(&self.audit).await?)
    }

    /// Checks `req` as [`Invitations::create`] does, creating nothing: every violation at once.
    pub fn check(&self, req: &NewInvitation) -> Result<Duration> {
        validate(req, &self.settings)
    }

    /// Creates an invitation; `actor` is the caller's audit identity.
    /// With an idempotency key, a retry of the same request gets the invitation the first
    /// call made ([`idempotency`]).
    pub async fn create(&self, actor: &str, req: NewInvitation) -> Result<Created> {
        let valid_for = validate(&req, &self.settings)?;
        let now = now_ms();
        let valid_ms = i64::try_from(valid_for.as_millis()).unwrap_or(i64::MAX);
        // Blank is "not given": the configured name, not a name of blanks.
        let or = |s: String, d: &str| match s.trim() {
            "" => d.to_owned(),
            t => t.to_owned(),
        };
        let keyed = (!req.idempotency_key.is_empty()).then(|| idempotency::Idempotency {
            key: req.idempotency_key.clone(),
            request_sha256: idempotency::request_digest(&req),
        });
        let record = InvitationRecord {
            id: uuid::Uuid::now_v7().to_string(),
            customer: req.customer.trim().to_owned(),
            service_id: req.service_id.trim().to_owned(),
            provider_name: or(req.provider_name, &self.settings.provider_name),
            platform_server_name: or(req.platform_server_name, &self.settings.server_name),
            platform_version: req.platform_version,
            profile: req.profile,
            admin_upn: req.admin_upn.trim().to_owned(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(valid_ms),
            created_by: actor.to_owned(),
            used_at_ms: None,
            onboarding_id: None,
            revoked_at_ms: None,
            revoked_by: None,
            hand_off_of: None,
            tenant: Some(onboard_core::text::tenant_key(&req.tenant)).filter(|t| !t.is_empty()),
            idempotency: None,
        };
        match keyed {
            None => {
                let minted = self.key.mint()?;
                self.insert_minted(actor, record, minted).await
            }
            Some(keyed) => self.create_keyed(actor, keyed, record).await,
        }
    }

    /// Stores `record` with `minted`'s hash, audited first.
    pub(crate) async fn insert_minted(
        &self,
        actor: &str,
        record: InvitationRecord,
        minted: token::MintedToken,
    ) -> Result<Created> {
        let fields = detail(&record);
        let entry = |phase| {
            entry(Action::InvitationCreate, phase, actor, &record, None)
                .with_detail("invitation", fields.clone())
        };
        self.record(entry(Phase::Intent)).await?;
        self.store.insert(&record, &minted.hash).await?;
        if let Err(e) = self.record(entry(Phase::Succeeded)).await {
            // Not recorded as done, so not done: take it back.
            self.store.remove(&record.id, &minted.hash).await?;
            return Err(e);
        }
        Ok(self.created(record, minted.token))
    }

    /// The answer to a create of `record` with `token`: the link and the rendered email.
    fn created(&self, record: InvitationRecord, token: Zeroizing<String>) -> Created {
        let activation_url = Zeroizing::new(format!(
            "{}#token={}",
            self.settings.activation_base_url, *token
        ));
        let email = email::render(
            &record,
            &self.settings.service_display_name,
            &activation_url,
            &format_ms(record.expires_at_ms),
        );
        Created {
            record,
            token,
            activation_url,
            email,
        }
    }

    /// One invitation by id.
    pub fn get(&self, id: &str) -> Result<InvitationRecord> {
        self.store.get(id)
    }

    /// One invitation by token; a token with a bad tag is refused before any lookup.
    pub fn get_by_token(&self, token: &str) -> Result<InvitationRecord> {
        let hash = self.key.verify(token)?;
        self.store.get_by_token_hash(&hash)
    }

    /// The capability check the onboarding service uses: the token is genuine and its
    /// invitation is pending.
    pub fn verify_token(&self, token: &str) -> Result<InvitationRecord> {
        let rec = self.get_by_token(token)?;
        rec.require_pending(now_ms())?;
        Ok(rec)
    }

    /// Invitations newest first, optionally in one state; returns the next page token.
    pub fn list(
        &self,
        state: Option<InvitationState>,
        page_size: usize,
        page_token: Option<&str>,
    ) -> Result<(Vec<InvitationRecord>, Option<String>)> {
        let now = now_ms();
        self.store.list(page_token, page_size, |r| {
            state.is_none_or(|s| r.state(now) == s)
        })
    }

    /// Revokes a pending or used invitation (a used one's token then unlocks its onboarding no
    /// more); `actor` is the caller's audit identity. A hand-off link's entries name the
    /// onboarding it was issued for.
    pub async fn revoke(&self, actor: &str, id: &str, reason: &str) -> Result<InvitationRecord> {
        let current = self.store.get(id)?;
        current.require_revocable(now_ms())?;
        let intent = entry(
            Action::InvitationRevoke,
            Phase::Intent,
            actor,
            &current,
            current.hand_off_of.as_deref(),
        )
        .with_detail("reason", reason);
        self.settle(id, intent, InvitationRecord::require_revocable, |r, now| {
            r.revoked_at_ms = Some(now);
            r.revoked_by = Some(actor.to_owned());
        })
        .await
    }

    /// Redeems a token for a new onboarding: single use, atomically. The hook the Onboarding
    /// service's SignIn calls; `actor` is whoever presented the token.
    pub async fn redeem(
        &self,
        actor: &str,
        token: &str,
        onboarding_id: &str,
    ) -> Result<InvitationRecord> {
        let current = self.verify_token(token)?;
        if current
            .hand_off_of
            .as_deref()
            .is_some_and(|o| o != onboarding_id)
        {
            return Err(InvitationError::invalid(
                "onboarding_id",
                "a hand-off link only joins the onboarding it was issued for",
            ));
        }
        let intent = entry(
            Action::InvitationRedeem,
            Phase::Intent,
            actor,
            &current,
            Some(onboarding_id),
        );
        self.settle(
            &current.id,
            intent,
            InvitationRecord::require_pending,
            |r, now| {
                r.used_at_ms = Some(now);
                r.onboarding_id = Some(onboarding_id.to_owned());
            },
        )
        .await
    }

    /// Records `intent`, then marks invitation `id` with `mark` (given the time) atomically if
    /// it is still pending, then records the outcome.
    async fn settle(
        &self,
        id: &str,
        intent: AuditEntry,
        require: fn(&InvitationRecord, i64) -> Result<()>,
        mark: impl Fn(&mut InvitationRecord, i64),
    ) -> Result<InvitationRecord> {
        self.record(intent.clone()).await?;
        let result = self
            .store
            .update(id, |r| {
                let now = now_ms();
                require(r, now)?;
                let mut r = r.clone();
                mark(&mut r, now);
                Ok(r)
            })
            .await;
        self.outcome(intent, result).await
    }

    /// Records how the change `intent` announced ended, and passes its result on.
    async fn outcome(
        &self,
        intent: AuditEntry,
        result: Result<InvitationRecord>,
    ) -> Result<InvitationRecord> {
        let mut done = intent;
        match result {
            Ok(rec) => {
                done.phase = Phase::Succeeded;
                self.record(done).await?;
                Ok(rec)
            }
            Err(e) => {
                done.phase = Phase::Failed;
                self.record(done.with_error(e.to_string())).await?;
                Err(e)
            }
        }
    }
}

/// The `invitation` detail of an `invitation.create` entry (docs/audit-entries.md).
fn detail(record: &InvitationRecord) -> serde_json::Value {
    let mut fields = json!({
        "provider_name": record.provider_name,
        "platform_server_name": record.platform_server_name,
        "platform_version": record.platform_version,
        "profile": record.profile,
        "admin_upn": record.admin_upn,
        "expires_at": format_ms(record.expires_at_ms),
    });
    if let Some(o) = &record.hand_off_of {
        fields["hand_off_of"] = json!(o);
    }
    if let Some(t) = &record.tenant {
        fields["tenant"] = json!(t);
    }
    if let Some(k) = &record.idempotency {
        fields["idempotency_key"] = json!(k.key);
    }
    fields
}

/// An entry of `action` about invitation `inv`, with the onboarding it started if any.
fn entry(
    action: Action,
    phase: Phase,
    actor: &str,
    inv: &InvitationRecord,
    onboarding_id: Option<&str>,
) -> AuditEntry {
    let scope = Scope {
        actor: actor.to_owned(),
        service_id: Some(inv.service_id.clone()),
        onboarding_id: onboarding_id.map(str::to_owned),
        ..Scope::default()
    };
    AuditEntry::new(action, phase, &scope)
        .with_target(Target::new(TargetKind::Invitation, inv.id.clone()).named(&inv.customer))
}

/// Checks a request and returns the validity to use; collects every violation.
fn validate(req: &NewInvitation, settings: &Settings) -> Result<Duration> {
    let mut v = Vec::new();
    let mut bad = |field: &str, description: &str| {
        v.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        })
    };
    let text_ok =
        |s: &str, max: usize| s.chars().count() <= max && !s.chars().any(char::is_control);
    // Its length is the stored (trimmed) name's; a control character anywhere is refused.
    let customer = req.customer.trim();
    if customer.is_empty() || !text_ok(customer, 200) || req.customer.chars().any(char::is_control)
    {
        bad(
            "customer",
            "required; at most 200 characters, no control characters",
        );
    }
    // The one rule day-two calls check it by too, on the id as stored (trimmed): an id an
    // invitation takes is one every later secret or rotation for the service accepts.
    if let Err(rule) = onboard_core::platform::service_id(&req.service_id) {
        bad("service_id", &rule);
    }
    // The rule AttachRegistration applies too: a version is checked whatever the profile, also
    // when the profile itself is refused.
    let requested = if req.profile.trim().is_empty() || !text_ok(&req.profile, 64) {
        Err(FieldViolation::new(
            "profile",
            "required; at most 64 characters",
        ))
    } else {
        settings
            .profiles
            .resolve_requested(&req.profile, &req.platform_version)
            .map(drop)
    };
    if let Err(e) = requested {
        bad(&e.field, &e.description);
        if e.field == "profile"
            && let Err(v) = ProfileSet::check_platform_version(&req.platform_version)
        {
            bad(&v.field, &v.description);
        }
    }
    for (field, s) in [
        ("provider_name", &req.provider_name),
        ("platform_server_name", &req.platform_server_name),
        ("platform_version", &req.platform_version),
    ] {
        if !text_ok(s, 64) {
            bad(field, "at most 64 characters, no control characters");
        }
    }
    // Stored trimmed, as SignIn trims what the admin types before comparing the two, and
    // checked by the same rule.
    let admin_upn = req.admin_upn.trim();
    if !admin_upn.is_empty()
        && let Err(rule) = onboard_core::text::check_upn(admin_upn)
    {
        bad("admin_upn", &rule);
    }
    let tenant = req.tenant.trim();
    if !tenant.is_empty()
        && let Err(rule) = onboard_core::text::check_tenant(tenant)
    {
        bad("tenant", &rule);
    }
    if !req.idempotency_key.is_empty()
        && let Err(rule) = idempotency::check_key(&req.idempotency_key)
    {
        bad("idempotency_key", &rule);
    }
    // What reaches Entra (the temporary app's name) or the customer's email holds visible
    // characters in NFKC form only: no bidi override or zero-width character to disguise it.
    // (The service id's are part of its own rule, above.)
    for (field, s) in [
        ("customer", &req.customer),
        ("provider_name", &req.provider_name),
        ("platform_server_name", &req.platform_server_name),
    ] {
        if let Err(rule) = onboard_core::text::check_chars(s)
            && text_ok(s, usize::MAX)
        {
            bad(field, &rule.to_string());
        }
    }
    let valid_for = req.valid_for.unwrap_or(settings.default_valid_for);
    if valid_for < Duration::from_secs(1) || valid_for > MAX_VALID_FOR {
        bad("valid_for", "must be between 1 second and 30 days");
    }
    if v.is_empty() {
        Ok(valid_for)
    } else {
        Err(InvitationError::InvalidArgument(v))
    }
}
