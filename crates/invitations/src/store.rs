//! Invitations in sled: `invitations` (id → JSON record, ids are UUIDv7 so key order is
//! creation order) and `invitation_tokens` (SHA-256 of the token → id). No token is stored.

use onboard_core::store::{GroupFlush, RecordMac};
use serde::{Deserialize, Serialize};

use crate::error::{InvitationError, Result};

/// An invitation as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InvitationRecord {
    /// UUIDv7, so ids sort by creation time.
    pub id: String,
    /// The customer's display name, for the email.
    pub customer: String,
    /// The Direct Routing service the onboarding is for.
    pub service_id: String,
    /// The service provider's name (part of the temporary app's name).
    pub provider_name: String,
    /// The Live Platform server name (part of the temporary app's name).
    pub platform_server_name: String,
    /// Selects permissions in the profile.
    pub platform_version: String,
    /// The provisioning profile.
    pub profile: String,
    /// The expected admin, when known in advance; may be empty.
    pub admin_upn: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Expiry time, Unix milliseconds.
    pub expires_at_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// When its token was redeemed, if it was.
    pub used_at_ms: Option<i64>,
    /// The onboarding the redemption started.
    pub onboarding_id: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// Set on a hand-off link: the onboarding (waiting for a privileged admin) its holder
    /// finishes. Redeeming it joins that onboarding instead of starting one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_off_of: Option<String>,
    /// The customer's tenant (id or domain, lower case) the admin signs in at, when the
    /// invitation names one: how a guest admin reaches the customer's tenant, not their own.
    /// Absent in records written before it existed (they sign in at `organizations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Set on an invitation created with an idempotency key: the key and the request's digest,
    /// so a retry gets this invitation back ([`crate::idempotency`]). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<crate::idempotency::Idempotency>,
}

/// Where an invitation is in its life (expiry is evaluated at read time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationState {
    /// Usable.
    Pending,
    /// Redeemed once; never again.
    Used,
    /// Past its expiry unused.
    Expired,
    /// Revoked unused.
    Revoked,
}

impl InvitationRecord {
    /// The state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> InvitationState {
        if self.revoked_at_ms.is_some() {
            InvitationState::Revoked
        } else if self.used_at_ms.is_some() {
            InvitationState::Used
        } else if now_ms >= self.expires_at_ms {
            InvitationState::Expired
        } else {
            InvitationState::Pending
        }
    }

    /// Refuses anything but a pending invitation, saying why.
    pub fn require_pending(&self, now_ms: i64) -> Result<()> {
        let why = match self.state(now_ms) {
            InvitationState::Pending => return Ok(()),
            InvitationState::Used => "has already been used",
            InvitationState::Expired => "has expired",
            InvitationState::Revoked => "has been revoked",
        };
        Err(InvitationError::FailedPrecondition(format!(
            "invitation {} {why}",
            self.id
        )))
    }
}

impl InvitationRecord {
    /// Refuses revoking what is already revoked or expired unused; a pending invitation and a
    /// used one (whose token still unlocks its onboarding) can be revoked.
    pub fn require_revocable(&self, now_ms: i64) -> Result<()> {
        let why = match self.state(now_ms) {
            InvitationState::Pending | InvitationState::Used => return Ok(()),
            InvitationState::Expired => "has expired unused",
            InvitationState::Revoked => "has already been revoked",
        };
        Err(InvitationError::FailedPrecondition(format!(
            "invitation {} {why}",
            self.id
        )))
    }
}

/// The tree of records (and the name they are MACed under).
pub const INVITATIONS_TREE: &str = "invitations";
/// The tree of token hashes.
pub const TOKENS_TREE: &str = "invitation_tokens";

/// The sled trees.
#[derive(Clone)]
pub struct Store {
    /// id → JSON record.
    invitations: sled::Tree,
    /// token hash → id.
    tokens: sled::Tree,
    /// The database, for flushes.
    db: sled::Db,
    /// Every record carries a MAC, checked when read.
    mac: RecordMac,
    /// Concurrent writers share durable flushes (`onboard_core::store::GroupFlush`).
    flush: std::sync::Arc<GroupFlush>,
}

impl Store {
    /// Opens the trees in the state database.
    pub fn open(db: &sled::Db, mac: RecordMac) -> Result<Self> {
        Ok(Self {
            invitations: db.open_tree(INVITATIONS_TREE)?,
            tokens: db.open_tree(TOKENS_TREE)?,
            db: db.clone(),
            mac,
            flush: Default::default(),
        })
    }

    fn decode(&self, id: &str, stored: &[u8]) -> Result<InvitationRecord> {
        let bytes = self.mac.open(INVITATIONS_TREE, id.as_bytes(), stored)?;
        serde_json::from_slice(bytes)
            .map_err(|e| InvitationError::Internal(format!("invitation {id} is unreadable: {e}")))
    }

    fn encode(&self, rec: &InvitationRecord) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(rec).map_err(|e| InvitationError::Internal(e.to_string()))?;
        Ok(self.mac.seal(INVITATIONS_TREE, rec.id.as_bytes(), &json))
    }

    /// Stores a new invitation and its token hash, durably.
    pub async fn insert(&self, rec: &InvitationRecord, token_hash: &[u8; 32]) -> Result<()> {
        self.invitations
            .insert(rec.id.as_bytes(), self.encode(rec)?)?;
        self.tokens.insert(
            token_hash,
            self.mac.seal(TOKENS_TREE, token_hash, rec.id.as_bytes()),
        )?;
        self.flush.flush(&self.db).await?;
        Ok(())
    }

    /// Removes an invitation whose creation could not be audited (fail closed).
    pub async fn remove(&self, id: &str, token_hash: &[u8; 32]) -> Result<()> {
        self.tokens.remove(token_hash)?;
        self.invitations.remove(id.as_bytes())?;
        self.flush.flush(&self.db).await?;
        Ok(())
    }

    /// One invitation by id.
    pub fn get(&self, id: &str) -> Result<InvitationRecord> {
        match self.invitations.get(id.as_bytes())? {
            Some(v) => self.decode(id, &v),
            None => Err(InvitationError::NotFound(format!(
                "no invitation with id {id:?}"
            ))),
        }
    }

    /// One invitation by token hash.
    pub fn get_by_token_hash(&self, hash: &[u8; 32]) -> Result<InvitationRecord> {
        let stored = self
            .tokens
            .get(hash)?
            .ok_or_else(|| InvitationError::NotFound("no invitation has this token".into()))?;
        let id = self.mac.open(TOKENS_TREE, hash, &stored)?;
        self.get(&String::from_utf8_lossy(id))
    }

    /// Up to `limit` invitations with ids before `before` (newest first) that `keep` accepts,
    /// and the id to continue before, if more may follow.
    pub fn list(
        &self,
        before: Option<&str>,
        limit: usize,
        keep: impl Fn(&InvitationRecord) -> bool,
    ) -> Result<(Vec<InvitationRecord>, Option<String>)> {
        let iter = match before {
            Some(b) => self.invitations.range(..b.as_bytes().to_vec()),
            None => self.invitations.iter(),
        };
        let mut out = Vec::new();
        for item in iter.rev() {
            let (k, v) = item?;
            let rec = self.decode(&String::from_utf8_lossy(&k), &v)?;
            if keep(&rec) {
                if out.len() == limit {
                    let last = out.last().map(|r: &InvitationRecord| r.id.clone());
                    return Ok((out, last));
                }
                out.push(rec);
            }
        }
        Ok((out, None))
    }

    /// Every invitation `keep` accepts, oldest first. A record that cannot be read (its MAC or
    /// its JSON) is logged by key and passed over, not the end of the scan: one damaged record
    /// hides none of the others.
    pub fn scan(&self, keep: impl Fn(&InvitationRecord) -> bool) -> Result<Vec<InvitationRecord>> {
        let mut out = Vec::new();
        for item in self.invitations.iter() {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k);
            match self.decode(&id, &v) {
                Ok(rec) if keep(&rec) => out.push(rec),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(key = %id, error = %e, "an unreadable invitation record passed over");
                }
            }
        }
        Ok(out)
    }

    /// Changes a record atomically: `f` sees the current record and returns the new one or an
    /// error; concurrent changes are retried, so two redemptions cannot both succeed.
    pub async fn update(
        &self,
        id: &str,
        f: impl Fn(&InvitationRecord) -> Result<InvitationRecord>,
    ) -> Result<InvitationRecord> {
        loop {
            let old = self.invitations.get(id.as_bytes())?.ok_or_else(|| {
                InvitationError::NotFound(format!("no invitation with id {id:?}"))
            })?;
            let new = f(&self.decode(id, &old)?)?;
            let swapped = self.invitations.compare_and_swap(
                id.as_bytes(),
                Some(old),
                Some(self.encode(&new)?),
            )?;
            if swapped.is_ok() {
                self.flush.flush(&self.db).await?;
                return Ok(new);
            }
        }
    }

    /// A value in the state database's metadata tree.
    pub fn meta(&self, key: &str) -> Result<Option<sled::IVec>> {
        Ok(self.db.open_tree("meta")?.get(key)?)
    }

    /// Sets a metadata value, durably.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.db.open_tree("meta")?.insert(key, value)?;
        onboard_core::store::flush_durably_blocking(&self.db)?;
        Ok(())
    }
}
