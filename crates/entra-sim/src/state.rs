//! The emulator's mutable state behind one lock, its clock, and persistence.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;

use crate::faults::{FaultRng, Faults, STALE_REPLICA_WINDOW_MS};
use crate::jwt::SigningKey;
use crate::model::Directory;
use crate::seed;
use crate::{SimConfig, SimError, SimInfo, SimUser};

/// Where a device authorization request stands.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceStatus {
    /// Waiting for the person at the verification page.
    Pending,
    /// Approved by this user; the next poll gets tokens.
    Approved {
        /// The signing-in user.
        user_id: String,
        /// The user's tenant, which issues the tokens.
        tenant_id: String,
    },
    /// The person pressed Decline.
    Declined,
    /// The sign-in was refused once the account was known: polls get `invalid_grant` with this
    /// AADSTS code and text (53003: a Conditional Access policy blocks the device code flow,
    /// `Faults::block_device_code`; 50020: an account of another tenant with no guest here).
    Refused(u32, String),
    /// Tokens were already handed out for it.
    Redeemed,
}

/// One device authorization request (RFC 8628).
#[derive(Debug, Clone)]
pub struct DeviceSession {
    /// Short code the person types at the verification page.
    pub user_code: String,
    /// The public client that asked.
    pub client_id: String,
    /// Tenant named in the request path; `None` for `organizations`/`common` (the user's own).
    pub tenant_id: Option<String>,
    /// Requested scopes, as sent.
    pub scopes: Vec<String>,
    /// Emulator clock (ms) after which polls get `expired_token`.
    pub expires_at_ms: u64,
    /// Announced polling interval; faster polls get `slow_down`.
    pub interval_s: u64,
    /// Clock (ms) of the previous poll, to detect polling too fast.
    pub last_poll_ms: Option<u64>,
    /// Pending polls still to be answered `slow_down` whatever their pace
    /// (`Faults::slow_down_polls`).
    pub slow_downs_left: u32,
    /// Progress of the sign-in.
    pub status: DeviceStatus,
}

/// What a refresh token stands for (the token itself is only kept hashed).
#[derive(Debug, Clone)]
pub struct RefreshSession {
    /// The user it acts for.
    pub user_id: String,
    /// The user's tenant.
    pub tenant_id: String,
    /// The client it was issued to (must match on redemption).
    pub client_id: String,
    /// Scopes originally granted.
    pub scopes: Vec<String>,
    /// Clock (ms) of expiry (Entra: 90 days of inactivity; AADSTS700082 after).
    pub expires_at_ms: u64,
    /// When the sign-in it stands for happened (Unix seconds): a revocation at or after it
    /// refuses it ([`crate::Sim::revoke_sign_in_sessions`]).
    pub signed_in_at: i64,
}

/// Everything that changes while the emulator runs.
pub struct Inner {
    /// The objects of the tenant the current request is about (see `select`).
    pub dir: Directory,
    /// The other tenants, swapped into `dir` when a request names them.
    pub others: Vec<Directory>,
    /// Fault switches in force.
    pub faults: Faults,
    /// Draws for rate-based faults.
    pub rng: FaultRng,
    /// Faults injected so far per `client-request-id`, for `Faults::max_faults_per_operation`.
    pub faults_per_operation: HashMap<String, u32>,
    /// Device authorization requests by device_code.
    pub device_codes: HashMap<String, DeviceSession>,
    /// Refresh tokens by SHA-256 hex of the token.
    pub refresh_tokens: HashMap<String, RefreshSession>,
    /// Authorization codes by SHA-256 hex of the code.
    pub auth_codes: HashMap<String, crate::authorize::AuthCode>,
    /// The provider's token app's public-client redirect URIs
    /// ([`crate::Sim::set_token_app_redirect_uris`]).
    pub token_app_redirect_uris: Vec<String>,
    /// Access tokens issued at or before this second (Unix time) count as expired
    /// ([`crate::Sim::expire_access_tokens`]); 0: none.
    pub access_tokens_expired_through: i64,
    /// Sign-ins at or before this second (Unix time) are revoked
    /// ([`crate::Sim::revoke_sign_in_sessions`]): their refresh tokens no longer redeem and
    /// Graph answers their delegated access tokens with a claims challenge; 0: none.
    pub sign_ins_revoked_through: i64,
    /// Delegated access tokens issued at or before this second (Unix time) were made under
    /// Conditional Access policies since changed
    /// ([`crate::Sim::change_conditional_access_policies`]): Graph answers them with a claims
    /// challenge that a token asked for silently satisfies; 0: none.
    pub policies_changed_through: i64,
}

impl Inner {
    /// Makes the tenant with this id or verified domain the current `dir`. Handlers call it
    /// under the same lock guard they then work with, so a request sees one tenant throughout.
    pub fn select(&mut self, key: &str) -> bool {
        let hit = |d: &Directory| {
            d.tenant.id.eq_ignore_ascii_case(key) || d.tenant.domain.eq_ignore_ascii_case(key)
        };
        if hit(&self.dir) {
            return true;
        }
        match self.others.iter().position(hit) {
            Some(i) => {
                std::mem::swap(&mut self.dir, &mut self.others[i]);
                true
            }
            None => false,
        }
    }

    /// Every tenant, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &Directory> {
        std::iter::once(&self.dir).chain(self.others.iter())
    }

    /// The id of the tenant where the member user with this UPN lives (its home tenant; the
    /// guests that stand for it elsewhere do not count).
    pub fn tenant_of_member(&self, upn: &str) -> Option<String> {
        self.tenants()
            .find(|d| d.member(upn).is_some())
            .map(|d| d.tenant.id.clone())
    }

    /// The id of the tenant whose app registration has this client id.
    pub fn tenant_of_app(&self, app_id: &str) -> Option<String> {
        self.tenants()
            .find(|d| d.app_by_app_id(app_id).is_some())
            .map(|d| d.tenant.id.clone())
    }
}

/// State shared by all request handlers.
pub struct Shared {
    /// `https://127.0.0.1:PORT`.
    pub base_url: String,
    /// Start configuration (faults there are only the initial ones).
    pub config: SimConfig,
    /// Client id of the provider's token app.
    pub token_app_id: String,
    /// CA certificate clients trust.
    pub ca_pem: String,
    /// Token-signing key.
    pub key: Arc<SigningKey>,
    /// Origin of the emulator clock; lag and expiry are measured from it.
    started: Instant,
    /// The mutable state. A std mutex: it is never held across an await.
    inner: Mutex<Inner>,
    /// Where the directory is saved, if anywhere.
    state_file: Option<PathBuf>,
    /// The seeded tenant that `info()` and `/_sim/info` describe.
    pub primary_tid: String,
    /// Successful Graph calls by `"<METHOD> <last path segment>"` (e.g. `POST removePassword`),
    /// so tests can check a change was made exactly once.
    calls: Mutex<HashMap<String, u64>>,
    /// Requests served so far, so benchmarks can relate wall time to the number of calls.
    pub counts: RequestCounters,
    /// What is left of [`Faults::stale_replica_answers`], and the method and path they are
    /// for: a lock of its own, because lookups ask while they hold the state's.
    stale: Mutex<StaleReplica>,
}

/// The stale-replica answers left ([`Faults::stale_replica_answers`]) and whom they meet.
#[derive(Debug)]
struct StaleReplica {
    /// Answers not yet given.
    left: u32,
    /// [`Faults::stale_replica_method`].
    method: Option<String>,
    /// [`Faults::stale_replica_path`].
    path: Option<String>,
}

impl StaleReplica {
    /// The answers `f` asks for, none given yet.
    fn of(f: &Faults) -> Self {
        Self {
            left: f.stale_replica_answers,
            method: f.stale_replica_method.clone(),
            path: f.stale_replica_path.clone(),
        }
    }
}

/// Running totals of requests by kind (atomics: counted outside the state lock).
#[derive(Debug, Default)]
pub struct RequestCounters {
    /// Microsoft Graph calls (`/v1.0/…`).
    pub graph: std::sync::atomic::AtomicU64,
    /// Identity platform calls (token, device code, discovery, keys).
    pub sts: std::sync::atomic::AtomicU64,
}

/// Current UTC time as RFC 3339 with seconds, the way Graph prints dates.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// Formats a time as Graph does (`2026-11-26T08:00:00Z`).
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Returns once Unix second `second` is over, so what happens next is told from what happened
/// in it by times that count seconds (`iat`).
pub async fn wait_past(second: i64) {
    while unix_now() <= second {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    // The OS RNG practically never fails; if it does, this test fixture keeps serving with
    // clock-seeded bytes (unique enough for ids and codes) rather than panicking mid-request.
    if getrandom::fill(&mut b).is_err() {
        let seed = unix_now() as u64 ^ 0x9e37_79b9_7f4a_7c15;
        let mut r = FaultRng::new(Some(seed));
        for x in b.iter_mut() {
            *x = (r.next_f64() * 256.0) as u8;
        }
    }
    b
}

/// A fresh random GUID.
pub fn new_guid() -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&random_bytes(16));
    uuid::Builder::from_random_bytes(b)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A random url-safe key of the kind Entra uses for assignment ids and opaque tokens.
pub fn random_key(bytes: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(bytes))
}

/// Hex SHA-256, for secrets and refresh tokens.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

impl Shared {
    /// Seeds (or reloads) the tenant.
    pub fn new(base_url: String, config: SimConfig, ca_pem: String) -> Result<Shared, SimError> {
        let key = crate::jwt::signing_key_in(config.state_dir.as_deref())?;
        let state_file = config.state_dir.as_ref().map(|d| d.join("directory.json"));
        let saved = state_file.as_ref().map(std::fs::read_to_string);
        let mut dirs: Vec<Directory> = match saved {
            // Earlier versions saved a single tenant; read that shape too.
            Some(Ok(text)) => serde_json::from_str::<Vec<Directory>>(&text)
                .or_else(|_| serde_json::from_str::<Directory>(&text).map(|d| vec![d]))
                .map_err(|e| SimError::State(e.to_string()))?,
            _ => vec![seed::seed_directory(&config.tenant_domain, &now_rfc3339())],
        };
        if dirs.is_empty() {
            dirs.push(seed::seed_directory(&config.tenant_domain, &now_rfc3339()));
        }
        let dir = dirs.remove(0);
        let primary_tid = dir.tenant.id.clone();
        let token_app_id = config
            .token_app_client_id
            .clone()
            .unwrap_or_else(|| seed::fixed_guid(&format!("app:token:{}", config.provider_name)));
        let inner = Inner {
            dir,
            others: dirs,
            rng: FaultRng::new(config.faults.seed),
            faults_per_operation: HashMap::new(),
            faults: config.faults.clone(),
            device_codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            auth_codes: HashMap::new(),
            token_app_redirect_uris: config.token_app_redirect_uris.clone(),
            access_tokens_expired_through: 0,
            sign_ins_revoked_through: 0,
            policies_changed_through: 0,
        };
        let stale = StaleReplica::of(&config.faults);
        let shared = Shared {
            base_url,
            config,
            token_app_id,
            ca_pem,
            key,
            started: Instant::now(),
            inner: Mutex::new(inner),
            counts: RequestCounters::default(),
            stale: Mutex::new(stale),
            state_file,
            primary_tid,
            calls: Mutex::new(HashMap::new()),
        };
        shared.persist(&shared.lock());
        Ok(shared)
    }

    /// Locks the state. A panic in another handler must not wedge the emulator, so a poisoned
    /// lock is taken over as is.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the state with tenant `tid` selected (the primary one if `tid` is unknown).
    pub fn lock_tenant(&self, tid: &str) -> MutexGuard<'_, Inner> {
        let mut g = self.lock();
        if !g.select(tid) {
            g.select(&self.primary_tid);
        }
        g
    }

    /// Milliseconds since start.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Clock value from which an object written now becomes visible to dependent calls.
    pub fn visible_at(&self, inner: &Inner) -> u64 {
        self.now_ms() + inner.faults.replication_lag_ms
    }

    /// Clock value from which an assignment made now shows in the assignment lists.
    pub fn listed_at(&self, inner: &Inner) -> u64 {
        self.now_ms() + inner.faults.assignment_list_lag_ms
    }

    /// The removed assignments the lists still show now (`Faults::assignment_list_lag_ms`).
    pub fn still_listed<'a, T>(
        &'a self,
        unlisting: &'a [(T, u64)],
    ) -> impl Iterator<Item = &'a T> + 'a {
        unlisting
            .iter()
            .filter(move |(_, until)| !self.visible(*until))
            .map(|(item, _)| item)
    }

    /// Keeps `removed` in the lists until `until` (a [`Self::listed_at`] taken at the
    /// removal), and forgets those whose time is past.
    pub fn unlist<T>(&self, unlisting: &mut Vec<(T, u64)>, removed: T, until: u64) {
        unlisting.retain(|(_, t)| !self.visible(*t));
        if !self.visible(until) {
            unlisting.push((removed, until));
        }
    }

    /// Whether an object visible from `visible_at_ms` is recent enough for a stale replica to
    /// miss it ([`STALE_REPLICA_WINDOW_MS`]). Seeded objects (visible from 0) are old: they
    /// were made before the emulator started.
    pub fn is_recent(&self, visible_at_ms: u64) -> bool {
        visible_at_ms > 0 && self.now_ms() < visible_at_ms.saturating_add(STALE_REPLICA_WINDOW_MS)
    }

    /// Whether a request with `method` to `path` (after `/v1.0/`) that names or lists a recent
    /// object meets a replica that has not seen it: takes one of the
    /// [`Faults::stale_replica_answers`] left, if any is for this method and path.
    pub fn take_stale_answer(&self, method: &str, path: &str) -> bool {
        let mut stale = self.stale.lock().unwrap_or_else(|p| p.into_inner());
        let differs = |only: &Option<String>, got: &str| {
            only.as_deref()
                .is_some_and(|o| !o.eq_ignore_ascii_case(got))
        };
        if stale.left == 0 || differs(&stale.method, method) || differs(&stale.path, path) {
            return false;
        }
        stale.left -= 1;
        true
    }

    /// The stale-replica answers not yet given.
    pub fn stale_answers_left(&self) -> u32 {
        self.stale.lock().unwrap_or_else(|p| p.into_inner()).left
    }

    /// Whether an object with this `visible_at_ms` has replicated yet.
    pub fn visible(&self, visible_at_ms: u64) -> bool {
        self.now_ms() >= visible_at_ms
    }

    /// Saves the directory to the state dir (best effort: a failed save is logged, the request
    /// it belongs to has already succeeded in memory as it would in Entra).
    pub fn persist(&self, inner: &Inner) {
        let Some(path) = &self.state_file else { return };
        let tmp = path.with_extension("json.tmp");
        // The primary tenant goes first: that is how a restart recognises it.
        let mut all: Vec<&Directory> = inner.tenants().collect();
        all.sort_by_key(|d| d.tenant.id != self.primary_tid);
        let result = serde_json::to_vec_pretty(&all)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            tracing::warn!(error = %e, path = %path.display(), "could not save emulator state");
        }
    }

    /// Replaces the fault switches, re-seeding the draws so a test's sequence starts afresh.
    pub fn set_faults(&self, f: Faults) {
        *self.stale.lock().unwrap_or_else(|p| p.into_inner()) = StaleReplica::of(&f);
        let mut inner = self.lock();
        inner.rng = FaultRng::new(f.seed);
        inner.faults = f;
    }

    /// Tenant, users and token app of the primary tenant.
    pub fn info(&self) -> SimInfo {
        self.info_for(&self.primary_tid)
            .unwrap_or_else(|| self.empty_info())
    }

    fn empty_info(&self) -> SimInfo {
        SimInfo {
            base_url: self.base_url.clone(),
            graph_base_url: format!("{}/v1.0", self.base_url),
            tenant_id: String::new(),
            tenant_domain: String::new(),
            token_app_client_id: self.token_app_id.clone(),
            token_app_display_name: self.config.token_app_name(),
            users: vec![],
        }
    }

    /// Tenant, users and token app of the tenant with this id or domain.
    pub fn info_for(&self, tenant: &str) -> Option<SimInfo> {
        let mut inner = self.lock();
        if !inner.select(tenant) {
            return None;
        }
        let dir = &inner.dir;
        let users = dir
            .users
            .iter()
            .map(|u| {
                let ids = dir.roles_of(&u.id);
                SimUser {
                    upn: u.sign_in_name().to_string(),
                    guest_upn: u.home.as_ref().map(|_| u.upn.clone()),
                    id: u.id.clone(),
                    display_name: u.display_name.clone(),
                    roles: ids
                        .iter()
                        .map(|r| seed::role_name(r).unwrap_or(r).to_string())
                        .collect(),
                    role_template_ids: ids,
                }
            })
            .collect();
        Some(SimInfo {
            base_url: self.base_url.clone(),
            graph_base_url: format!("{}/v1.0", self.base_url),
            tenant_id: dir.tenant.id.clone(),
            tenant_domain: dir.tenant.domain.clone(),
            token_app_client_id: self.token_app_id.clone(),
            token_app_display_name: self.config.token_app_name(),
            users,
        })
    }

    /// Every tenant's info, the primary first.
    pub fn tenants(&self) -> Vec<SimInfo> {
        let ids: Vec<String> = {
            let inner = self.lock();
            inner.tenants().map(|d| d.tenant.id.clone()).collect()
        };
        let mut out: Vec<SimInfo> = ids.iter().filter_map(|t| self.info_for(t)).collect();
        out.sort_by_key(|i| (i.tenant_id != self.primary_tid, i.tenant_domain.clone()));
        out
    }

    /// Seeds another customer tenant (same four users and roles) under `domain`; returns it.
    /// Adding a domain that exists returns the existing tenant.
    pub fn add_tenant(&self, domain: &str) -> SimInfo {
        {
            let mut inner = self.lock();
            if !inner.select(domain) {
                let mut dir = seed::seed_directory(domain, &now_rfc3339());
                dir.tenant.provider_tenant_id = inner.dir.tenant.provider_tenant_id.clone();
                inner.others.push(dir);
            }
            self.persist(&inner);
        }
        self.info_for(domain).unwrap_or_else(|| self.empty_info())
    }

    /// Adds (or extends the roles of) a member user.
    pub fn add_user(&self, upn: &str, display_name: &str, roles: &[&str]) -> SimUser {
        let domain = upn.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let mut inner = self.lock();
        if !inner.select(domain) {
            inner.select(&self.primary_tid);
        }
        let dir = &mut inner.dir;
        let id = match dir.user(upn) {
            Some(u) => u.id.clone(),
            None => {
                let id = new_guid();
                let (given, surname) = display_name.split_once(' ').unwrap_or((display_name, ""));
                dir.users.push(crate::model::User {
                    id: id.clone(),
                    upn: upn.to_string(),
                    display_name: display_name.to_string(),
                    given_name: given.to_string(),
                    surname: surname.to_string(),
                    home: None,
                });
                id
            }
        };
        dir.assign_roles(&id, roles, || random_key(32));
        self.persist(&inner);
        let tid = inner.dir.tenant.id.clone();
        drop(inner);
        self.sim_user(&tid, &id).unwrap_or(SimUser {
            upn: upn.to_string(),
            guest_upn: None,
            id,
            display_name: display_name.to_string(),
            roles: vec![],
            role_template_ids: vec![],
        })
    }

    /// User `id` of tenant `tid` as [`crate::Sim::info_for`] lists it.
    pub fn sim_user(&self, tid: &str, id: &str) -> Option<SimUser> {
        let info = self.info_for(tid)?;
        info.users.into_iter().find(|u| u.id == id)
    }

    /// Counts one successful Graph call.
    pub fn count_call(&self, key: &str) {
        let mut m = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key.to_owned()).or_insert(0) += 1;
    }

    /// How many successful Graph calls `key` (`"<METHOD> <last segment>"`) there were.
    pub fn calls(&self, key: &str) -> u64 {
        let m = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        m.get(key).copied().unwrap_or(0)
    }

    /// The primary tenant's directory as JSON, plus the faults in force.
    pub fn snapshot(&self) -> Value {
        let inner = self.lock_tenant(&self.primary_tid);
        let mut v = serde_json::to_value(&inner.dir).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert(
                "faults".into(),
                serde_json::to_value(&inner.faults).unwrap_or(json!({})),
            );
        }
        v
    }
}
