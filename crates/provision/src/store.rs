//! The workflow store: one sled tree handed over by the caller, holding one JSON record per
//! onboarding (`o/<id>`) and its numbered events (`e/<id>/<seq big-endian>`). Records are
//! flushed to disk before a step is reported done, so a restart resumes from the last confirmed
//! step.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::ProvisionError;
use crate::events::Event;
use onboard_core::ResolvedProfile;
use onboard_core::roles::Right;
use onboard_core::store::{RecordMac, RecordTree};

/// The name the tree's records are MACed under (the server opens it as `provision`).
const TREE: &str = "provision";

/// Where an onboarding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Steps are running (or were, before a crash: `resume_all` continues them).
    Running,
    /// Every step is done.
    Completed,
    /// A step failed; the record keeps what was made, so it can be retried or cancelled.
    Failed,
    /// Cancel is undoing what was made (a crash here is resumed too).
    Cancelling,
    /// Everything made was removed.
    Cancelled,
    /// The signed-in admin did what they may; the rest waits for a Global Administrator or
    /// Privileged Role Administrator ([`HandOff`]), or is undone when the wait expires.
    AwaitingAdmin,
}

impl Status {
    /// Lower-case name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
            Status::AwaitingAdmin => "awaiting_admin",
        }
    }
}

/// The client secret as stored: metadata in clear, the value sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Entra key id (what the audit log records).
    pub key_id: String,
    /// First characters, as Entra reports them.
    pub hint: Option<String>,
    /// Expiry (RFC 3339).
    pub end_date_time: Option<String>,
    /// The value, sealed with the engine's key ([`onboard_core::SealingKey`]).
    pub sealed: String,
}

/// A wait for a privileged admin: what the first admin could not do, and until when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HandOff {
    /// The rights the remaining changes need (none of which the first admin held).
    pub rights: Vec<Right>,
    /// The changes left (`action target`, as in the plan).
    pub left: Vec<String>,
    /// When the wait began (RFC 3339).
    pub since: String,
    /// When it ends: then the onboarding is undone (RFC 3339).
    pub expires_at: String,
    /// Whoever started the run that stopped to wait (the first admin's audit actor).
    pub first_actor: String,
    /// When the wait ended (finished, expired or cancelled); `None` while it lasts.
    #[serde(default)]
    pub ended: Option<String>,
    /// Who ended the wait, and how, recorded as it ends (before [`HandOff::ended`] when the
    /// run it let go on writes the `onboarding.hand_off` outcome later). `None` while it
    /// lasts, and in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<WaitEnd>,
    /// Microsoft's admin-consent page for the app, while Microsoft Graph permissions are left
    /// and the engine has a reply address for it (`None`: only the link can finish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_consent_url: Option<String>,
}

/// Who ended a wait for a privileged admin, and how: what its hand-off links are revoked as
/// (but the one whose holder went on with the run, or cancelled it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WaitEnd {
    /// Their audit actor: the admin whose Provision went on with the run, the canceller,
    /// `system:hand-off-expired` or `entra:admin-consent`.
    pub actor: String,
    /// How.
    pub how: WaitEndHow,
}

/// How a wait for a privileged admin ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WaitEndHow {
    /// A Provision went on with the run (a hand-off link's holder, or whoever retried).
    Provisioned,
    /// A CancelOnboarding.
    Cancelled,
    /// Nobody finished it in time: the expiry's undo.
    Expired,
    /// The grants made on Microsoft's admin-consent page left nothing to wait for.
    Consented,
}

/// One onboarding's durable state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OnboardingRecord {
    /// Caller-chosen id.
    pub id: String,
    /// The Direct Routing service the registration is for.
    pub service_id: String,
    /// Customer tenant id.
    pub tenant_id: String,
    /// App registration display name, as entered.
    pub app_name: String,
    /// Lower-cased name, for the uniqueness rule.
    pub name_key: String,
    /// Entra `uniqueName` of the app: derived from tenant and name, so any retry upserts the
    /// same app instead of making a second one.
    pub unique_name: String,
    /// What the registration gets.
    pub profile: ResolvedProfile,
    /// Who asked (caller identity), recorded in every audit entry.
    pub actor: String,
    /// The admin who signed in.
    pub admin_upn: String,
    /// Where it stands.
    pub status: Status,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Application object id, once made.
    pub app_object_id: Option<String>,
    /// Application (client) id, once made.
    pub client_id: Option<String>,
    /// Service principal object id, once made.
    pub sp_id: Option<String>,
    /// The client secret, once made.
    pub secret: Option<StoredSecret>,
    /// App-role grants made: `resource/value` -> assignment id.
    pub grants: BTreeMap<String, String>,
    /// Directory role assignments made: template id -> assignment id.
    pub role_assignments: BTreeMap<String, String>,
    /// Confirmed steps, in order; skipped on resume.
    pub steps_done: Vec<String>,
    /// True when this onboarding's upsert created the app: then its service principal, secrets
    /// and grants can only be ones this onboarding made, and a step never attempted before
    /// can skip reading Entra first (one round trip fewer per step).
    #[serde(default)]
    pub fresh_app: bool,
    /// True when this onboarding's upsert created the app or may have (an earlier send whose
    /// answer was lost, a run that stopped before noting it): until the sign-in check proves
    /// it replicated, a 404 for it may be replication lag (entra-reference §6: lag only right
    /// after a create). Unlike `fresh_app`, it never lets a step skip reading Entra.
    #[serde(default)]
    pub app_may_be_new: bool,
    /// When this onboarding last made (or may have made) its app or service principal, in
    /// milliseconds since the Unix epoch: for [`LAG_WINDOW_MS`] after it a 404 for
    /// them may be a Graph replica that has not seen them yet, even after the sign-in check
    /// proved the app to the sign-in service. `None` in records written before it was kept
    /// (they fall back to the sign-in check alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_at_ms: Option<i64>,
    /// Steps that have begun an Entra change (persisted before the first one): such a step
    /// always reads Entra first when it runs again, because the change may have landed.
    #[serde(default)]
    pub attempted: std::collections::BTreeSet<String>,
    /// The admin's delegated access token, sealed, so a restart can resume (until it expires).
    /// Forgotten when the onboarding is cancelled ([`OnboardingRecord::forget_sign_in`]).
    pub sealed_admin_token: Option<String>,
    /// When that access token expires (seconds since the Unix epoch), from the token
    /// response's `expires_in`: Microsoft's access tokens are opaque to clients, so their `exp`
    /// claim is not read. `None` in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_expires_at: Option<i64>,
    /// The same sign-in's refresh token, sealed: a wait for a privileged admin outlives the
    /// access token (about an hour), and its expiry undoes the onboarding with a fresh one.
    /// Forgotten when the onboarding completes or is cancelled: it lives for up to 90 days, and
    /// a completed onboarding's last step removed the app it was issued to.
    #[serde(default)]
    pub sealed_admin_refresh: Option<String>,
    /// Rights the admin running the steps lacks (set at each start from the plan): the
    /// changes needing them are left for a privileged admin ([`Status::AwaitingAdmin`]).
    #[serde(default)]
    pub lacking: Vec<Right>,
    /// The current or last wait for a privileged admin.
    #[serde(default)]
    pub hand_off: Option<HandOff>,
    /// The reply address for Microsoft's admin-consent page the app was given because its
    /// admin could not grant the Microsoft Graph permissions; removed from the app before the
    /// onboarding completes (step `consent_reply_removal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_redirect_uri: Option<String>,
    /// Last error, without secrets.
    pub error: Option<String>,
}

/// How long after this onboarding made its app or service principal a 404 for them may be
/// replication lag although the sign-in check passed: a Graph replica may not have seen them
/// yet, and Microsoft promises no read-your-writes. Fifteen minutes: reports of lag "~5 min was
/// not enough" and of a 20-minute incident (entra-reference §4.3) are the longest known.
pub const LAG_WINDOW_MS: i64 = 15 * 60 * 1000;

impl OnboardingRecord {
    /// Whether this onboarding made its app or service principal less than [`LAG_WINDOW_MS`]
    /// ago (`now_ms`: milliseconds since the Unix epoch).
    pub fn made_recently(&self, now_ms: i64) -> bool {
        self.made_at_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < LAG_WINDOW_MS)
    }

    /// Forgets what of the admin's sealed sign-in this record's status has no more use for: a
    /// completed onboarding's refresh token, a cancelled one's tokens. A completed onboarding
    /// keeps its access token while it lasts (day-two reads, an undo within the hour); its
    /// refresh token was issued to the temporary app its last step removed, so Entra refuses it
    /// anyway. Returns whether anything was forgotten.
    pub fn forget_sign_in(&mut self) -> bool {
        let held = self.sealed_admin_refresh.is_some() || self.sealed_admin_token.is_some();
        match self.status {
            Status::Completed => self.sealed_admin_refresh.take().is_some(),
            Status::Cancelled => {
                self.sealed_admin_refresh = None;
                self.sealed_admin_token = None;
                self.admin_token_expires_at = None;
                held
            }
            _ => false,
        }
    }

    /// Whether `step` is confirmed.
    pub fn done(&self, step: &str) -> bool {
        self.steps_done.iter().any(|s| s == step)
    }

    /// Marks `step` confirmed (once).
    pub fn mark_done(&mut self, step: &str) {
        if !self.done(step) {
            self.steps_done.push(step.to_owned());
        }
    }
}

/// Handle to the sled tree; clones share it.
#[derive(Clone)]
pub(crate) struct Store {
    /// The caller's tree: every record carries a MAC, checked when read, and concurrent writers
    /// share durable flushes (hundreds of onboardings write at once).
    records: RecordTree,
    /// Who holds which name: every record's (tenant, name key, status) by id, read from the
    /// tree once on first use and kept current by [`Store::put`] (the one writer), so the name
    /// check of every Plan and Provision reads no record (it scanned them all, under the names
    /// lock, before: quadratic in onboardings).
    names: Arc<Mutex<Option<HashMap<String, NameHolder>>>>,
}

/// What the name check needs of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameHolder {
    /// The tenant the name is in.
    pub tenant_id: String,
    /// The lower-cased name ([`crate::names::name_key`]).
    pub name_key: String,
    /// Where the onboarding stands (only live ones hold their name).
    pub status: Status,
}

impl NameHolder {
    fn of(rec: &OnboardingRecord) -> Self {
        Self {
            tenant_id: rec.tenant_id.clone(),
            name_key: rec.name_key.clone(),
            status: rec.status,
        }
    }
}

fn record_key(id: &str) -> Vec<u8> {
    format!("o/{id}").into_bytes()
}

fn event_prefix(id: &str) -> Vec<u8> {
    format!("e/{id}/").into_bytes()
}

fn event_key(id: &str, seq: u64) -> Vec<u8> {
    let mut k = event_prefix(id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// Wraps the caller's tree.
    pub fn new(tree: sled::Tree, mac: RecordMac) -> Self {
        Self {
            records: RecordTree::new(tree, TREE, mac),
            names: Arc::default(),
        }
    }

    /// Writes `rec` and waits until it is on disk.
    pub async fn put(&self, rec: &OnboardingRecord) -> Result<(), ProvisionError> {
        self.records.put(&record_key(&rec.id), rec).await?;
        // After the write: an index read from the tree meanwhile saw it, or sees it now.
        if let Some(index) = self.names_lock().as_mut() {
            index.insert(rec.id.clone(), NameHolder::of(rec));
        }
        Ok(())
    }

    fn names_lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, NameHolder>>> {
        // A panic elsewhere while holding it leaves a map that is still whole.
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The onboardings (id, status) of `tenant` that have name key `name_key`, from the index.
    pub fn name_holders(
        &self,
        tenant: &str,
        name_key: &str,
    ) -> Result<Vec<(String, Status)>, ProvisionError> {
        let mut index = self.names_lock();
        if index.is_none() {
            let all = self.all()?;
            *index = Some(
                all.iter()
                    .map(|r| (r.id.clone(), NameHolder::of(r)))
                    .collect(),
            );
        }
        Ok(index
            .iter()
            .flatten()
            .filter(|(_, h)| h.tenant_id == tenant && h.name_key == name_key)
            .map(|(id, h)| (id.clone(), h.status))
            .collect())
    }

    /// See [`distrust_after_restore`].
    async fn distrust_fresh(&self) -> Result<usize, ProvisionError> {
        let mut n = 0;
        for mut rec in self.all()? {
            if rec.fresh_app {
                rec.fresh_app = false;
                self.put(&rec).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Reads one record.
    pub fn get(&self, id: &str) -> Result<Option<OnboardingRecord>, ProvisionError> {
        Ok(self.records.get(&record_key(id))?)
    }

    /// Every record.
    pub fn all(&self) -> Result<Vec<OnboardingRecord>, ProvisionError> {
        Ok(self.records.scan(b"o/")?)
    }

    /// Persists an event (not flushed on its own: the next record write or sled's periodic
    /// flush carries it; events are progress notes, the record is the truth).
    pub fn put_event(&self, e: &Event) -> Result<(), ProvisionError> {
        Ok(self
            .records
            .insert(&event_key(&e.onboarding_id, e.seq), e)?)
    }

    /// Events of `id` numbered `from` and up, in order.
    pub fn events(&self, id: &str, from: u64) -> Result<Vec<Event>, ProvisionError> {
        self.records
            .tree()
            .range(event_key(id, from.max(1))..)
            .take_while(|kv| {
                kv.as_ref()
                    .map(|(k, _)| k.starts_with(&event_prefix(id)))
                    .unwrap_or(true)
            })
            .map(|kv| {
                let (k, v) = kv?;
                Ok(self.records.decode(&k, &v)?)
            })
            .collect()
    }

    /// Number of the last persisted event of `id` (0 if none).
    pub fn last_event_seq(&self, id: &str) -> Result<u64, ProvisionError> {
        match self
            .records
            .tree()
            .scan_prefix(event_prefix(id))
            .next_back()
        {
            Some(kv) => {
                let (k, _) = kv?;
                let tail = k.len().saturating_sub(8);
                let mut b = [0u8; 8];
                b.copy_from_slice(&k[tail..]);
                Ok(u64::from_be_bytes(b))
            }
            None => Ok(0),
        }
    }
}

/// After the state store was restored from a backup: Entra may hold changes a run made after
/// the snapshot, which no record in `tree` (the engine's) knows of, not even as `attempted`,
/// so no step may skip reading Entra first any more. Clears `fresh_app` on every record that
/// has it, durably; returns how many.
pub async fn distrust_after_restore(
    tree: sled::Tree,
    mac: RecordMac,
) -> Result<usize, ProvisionError> {
    Store::new(tree, mac).distrust_fresh().await
}
