//! [`AuditEntry`]: the one definition of what Onboard writes to its audit log, and how a reader
//! maps entries written under an older schema version.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Action;
use crate::error::CoreError;

/// The schema version written as `v` in every new entry. Version 1 (until release 0.1) differs
/// only in names a reader maps with [`AuditEntry::from_stored`]: see `docs/audit-entries.md`.
pub const SCHEMA_VERSION: u32 = 2;

/// Where an entry stands in an intent → call → outcome sequence. Reads and one-step events are
/// a single `succeeded` (or `failed`) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Written (durably) before the change is attempted; if it cannot be written, nothing is
    /// changed.
    Intent,
    /// The change (or read) succeeded.
    Succeeded,
    /// The change failed; `error` says why.
    Failed,
    /// The change was not attempted; the action's `reason` says why (a drift repair without
    /// the authority to make it).
    Skipped,
}

/// The kind of object an entry is about. Entra objects take their Microsoft Graph resource type
/// name (as in `@odata.type`, without `#microsoft.graph.`), so an entry can be matched with
/// Entra's own directory audit; Onboard's own objects are `snake_case`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetKind {
    /// An app registration (Graph `application`). `id` is its object id when known; entries
    /// about a registration also carry its `client_id` (appId).
    #[serde(rename = "application")]
    Application,
    /// A service principal (enterprise application), by object id.
    #[serde(rename = "servicePrincipal")]
    ServicePrincipal,
    /// A client secret, by `keyId`.
    #[serde(rename = "passwordCredential")]
    PasswordCredential,
    /// An application permission granted to a service principal (`appRoleAssignment`).
    #[serde(rename = "appRoleAssignment")]
    AppRoleAssignment,
    /// A directory role assigned to a service principal (`unifiedRoleAssignment`).
    #[serde(rename = "unifiedRoleAssignment")]
    UnifiedRoleAssignment,
    /// An onboarding, by onboarding id.
    #[serde(rename = "onboarding")]
    Onboarding,
    /// An invitation, by invitation id.
    #[serde(rename = "invitation")]
    Invitation,
    /// The audit log's signing key, by verifier key.
    #[serde(rename = "signing_key")]
    SigningKey,
    /// A tenant's day-two admin session, by tenant id.
    #[serde(rename = "admin_session")]
    AdminSession,
}

impl TargetKind {
    /// Every kind, for the schema test and the documentation check.
    pub const ALL: &'static [TargetKind] = &[
        TargetKind::Application,
        TargetKind::ServicePrincipal,
        TargetKind::PasswordCredential,
        TargetKind::AppRoleAssignment,
        TargetKind::UnifiedRoleAssignment,
        TargetKind::Onboarding,
        TargetKind::Invitation,
        TargetKind::SigningKey,
        TargetKind::AdminSession,
    ];

    /// The name written in `target.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Application => "application",
            TargetKind::ServicePrincipal => "servicePrincipal",
            TargetKind::PasswordCredential => "passwordCredential",
            TargetKind::AppRoleAssignment => "appRoleAssignment",
            TargetKind::UnifiedRoleAssignment => "unifiedRoleAssignment",
            TargetKind::Onboarding => "onboarding",
            TargetKind::Invitation => "invitation",
            TargetKind::SigningKey => "signing_key",
            TargetKind::AdminSession => "admin_session",
        }
    }

    /// The current kind a stored `target.type` names, mapping older schema versions' names
    /// (version 1 wrote `app_registration` for verification and drift entries).
    pub fn from_stored(name: &str) -> Option<Self> {
        if name == "app_registration" {
            return Some(TargetKind::Application);
        }
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

/// The object an entry is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// What kind of object.
    #[serde(rename = "type")]
    pub kind: TargetKind,
    /// Its id when known (a create's intent does not know it yet); `*` for "all of them".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A human name for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl Target {
    /// A target of `kind` with `id`.
    pub fn new(kind: TargetKind, id: impl Into<Option<String>>) -> Self {
        Self {
            kind,
            id: id.into(),
            display_name: None,
        }
    }

    /// With a human name.
    pub fn named(mut self, display_name: impl Into<String>) -> Self {
        self.display_name = Some(display_name.into());
        self
    }
}

/// One property change: `{property, old, new}` (Entra's `modifiedProperties`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The property, as Graph names it where it is a Graph property.
    pub property: String,
    /// Before (`null`: none).
    pub old: Value,
    /// After (`null`: removed).
    pub new: Value,
}

/// A property change.
pub fn change(property: &str, old: impl Into<Value>, new: impl Into<Value>) -> Change {
    Change {
        property: property.to_owned(),
        old: old.into(),
        new: new.into(),
    }
}

/// A property that is set where there was none.
pub fn set(property: &str, new: impl Into<Value>) -> Change {
    change(property, Value::Null, new)
}

/// Who and what a series of entries is about: the fields every entry of one operation carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Caller identity (mTLS subject, bearer token name, `invitation:<id>`), or a `system:` /
    /// `onboard:` name for the server's own work.
    pub actor: String,
    /// Customer tenant.
    pub tenant_id: Option<String>,
    /// Onboarding id (day-two entries: the registration id).
    pub onboarding_id: Option<String>,
    /// Direct Routing service id.
    pub service_id: Option<String>,
    /// The registration's application (client) id.
    pub client_id: Option<String>,
}

impl Scope {
    /// A scope with only an actor.
    pub fn actor(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            ..Self::default()
        }
    }
}

/// One audit entry: everything but `v`, `seq` and `time`, which the log writes itself. Build it
/// with [`AuditEntry::new`] and the `with_*` methods; write it with [`AuditEntry::append`].
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// What happened.
    pub action: Action,
    /// Where in intent → outcome.
    pub phase: Phase,
    /// Who and which tenant, onboarding, service and registration.
    pub scope: Scope,
    /// The object.
    pub target: Option<Target>,
    /// Property changes (`[]` when none).
    pub changes: Vec<Change>,
    /// Graph's (or the STS's) `request-id` of the answer, when there was one.
    pub graph_request_id: Option<String>,
    /// Our `client-request-id` for the call, the same in intent and outcome.
    pub correlation_id: Option<String>,
    /// Why it failed (`failed` entries).
    pub error: Option<String>,
    /// The OpenTelemetry trace the entry was written in (32 lowercase hex digits), when the
    /// server exports traces: an auditor's way from the entry to the trace.
    pub trace_id: Option<String>,
    /// The action's own fields; only those [`Action::details`] declares.
    pub details: Map<String, Value>,
}

/// Where [`AuditEntry::new`] gets the current trace id: set once by a binary that exports
/// traces (this crate knows nothing of OpenTelemetry).
static TRACE_SOURCE: std::sync::OnceLock<fn() -> Option<String>> = std::sync::OnceLock::new();

/// Makes every entry built from now on carry `source()`'s trace id (the first call wins).
pub fn set_trace_source(source: fn() -> Option<String>) {
    let _ = TRACE_SOURCE.set(source);
}

/// The current trace id, if a source is set and it knows one.
fn current_trace_id() -> Option<String> {
    TRACE_SOURCE.get().and_then(|source| source())
}

/// The fields every entry may carry (the log writes keys in sorted order: serde_json maps are
/// ordered by key).
pub const COMMON_FIELDS: &[&str] = &[
    "action",
    "phase",
    "actor",
    "tenant_id",
    "onboarding_id",
    "service_id",
    "client_id",
    "target",
    "changes",
    "graph_request_id",
    "correlation_id",
    "error",
    "trace_id",
];

impl AuditEntry {
    /// An entry of `action` in `phase` within `scope`.
    pub fn new(action: Action, phase: Phase, scope: &Scope) -> Self {
        Self {
            action,
            phase,
            scope: scope.clone(),
            target: None,
            changes: Vec::new(),
            graph_request_id: None,
            correlation_id: None,
            error: None,
            trace_id: current_trace_id(),
            details: Map::new(),
        }
    }

    /// With the object it is about.
    pub fn with_target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// With property changes.
    pub fn with_changes(mut self, changes: Vec<Change>) -> Self {
        self.changes = changes;
        self
    }

    /// With one of the action's own fields (see [`Action::details`]).
    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// With the error of a failed change.
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// With the request ids of a call.
    pub fn with_request_ids(
        mut self,
        graph_request_id: Option<String>,
        correlation_id: Option<String>,
    ) -> Self {
        self.graph_request_id = graph_request_id;
        self.correlation_id = correlation_id;
        self
    }

    /// The entry's JSON fields in their written order. Refuses a detail the action does not
    /// declare, or one that would shadow a common field, and an empty actor (the schema's
    /// `actor` has `minLength: 1`: the log is append-only, so it is refused before writing).
    pub fn to_fields(&self) -> Result<Map<String, Value>, CoreError> {
        if self.scope.actor.trim().is_empty() {
            return Err(CoreError::Entry {
                action: self.action.as_str(),
                problem: "the actor is empty: every entry names who acted".into(),
            });
        }
        let allowed = self.action.details();
        if let Some(k) = self.details.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(CoreError::Entry {
                action: self.action.as_str(),
                problem: format!(
                    "detail {k:?} is not declared for this action (declared: {allowed:?})"
                ),
            });
        }
        let mut m = Map::new();
        let opt = |m: &mut Map<String, Value>, k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), Value::from(v.as_str()));
            }
        };
        m.insert("action".into(), self.action.as_str().into());
        m.insert("phase".into(), to_value(&self.phase));
        m.insert("actor".into(), self.scope.actor.clone().into());
        opt(&mut m, "tenant_id", &self.scope.tenant_id);
        opt(&mut m, "onboarding_id", &self.scope.onboarding_id);
        opt(&mut m, "service_id", &self.scope.service_id);
        opt(&mut m, "client_id", &self.scope.client_id);
        if let Some(t) = &self.target {
            m.insert("target".into(), to_value(t));
        }
        m.insert("changes".into(), to_value(&self.changes));
        opt(&mut m, "graph_request_id", &self.graph_request_id);
        opt(&mut m, "correlation_id", &self.correlation_id);
        opt(&mut m, "error", &self.error);
        opt(&mut m, "trace_id", &self.trace_id);
        for (k, v) in &self.details {
            m.insert(k.clone(), v.clone());
        }
        Ok(m)
    }

    /// Reads a stored entry of any schema version back: the log's own fields (`v`, `seq`,
    /// `time`) and the entry, with version 1's forms mapped to today's as
    /// docs/audit-entries.md ("Older entries") says: the `app_registration` target type is
    /// [`TargetKind::Application`]; where version 1 put the client id in `target.id` (those
    /// entries, and `credentials.list_secrets`/`list_grants`), it moves to `client_id` and the
    /// target's id (the object id, unknown there) is `None` (but for ListDrift's `*`, which
    /// names no registration); a drift repair's `request_id` is `graph_request_id`; an empty
    /// scope field is `None`. `None` when the bytes are not an entry this crate knows how to
    /// read.
    pub fn from_stored(leaf: &[u8]) -> Option<StoredEntry> {
        let Value::Object(mut m) = serde_json::from_slice::<Value>(leaf).ok()? else {
            return None;
        };
        let v = m.remove("v")?.as_u64()?;
        let seq = m.remove("seq")?.as_u64()?;
        let time = m.remove("time")?.as_str()?.to_owned();
        let mut take = |k: &str| m.remove(k).and_then(|v| v.as_str().map(str::to_owned));
        let action = Action::from_name(&take("action")?)?;
        let phase = match take("phase")?.as_str() {
            "intent" => Phase::Intent,
            "succeeded" => Phase::Succeeded,
            "failed" => Phase::Failed,
            "skipped" => Phase::Skipped,
            _ => return None,
        };
        let mut scope = Scope {
            actor: take("actor").unwrap_or_default(),
            tenant_id: take("tenant_id"),
            onboarding_id: take("onboarding_id"),
            service_id: take("service_id"),
            client_id: take("client_id"),
        };
        if v == 1 {
            // Version 1 wrote "" for a scope field with no value; version 2 leaves it out.
            for field in [
                &mut scope.tenant_id,
                &mut scope.onboarding_id,
                &mut scope.service_id,
                &mut scope.client_id,
            ] {
                field.take_if(|f| f.is_empty());
            }
        }
        let mut graph_request_id = take("graph_request_id");
        let correlation_id = take("correlation_id");
        let error = take("error");
        let trace_id = take("trace_id");
        let target = match m.remove("target") {
            Some(Value::Object(t)) => {
                let s = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_owned);
                let stored_type = s("type")?;
                let mut target = Target {
                    kind: TargetKind::from_stored(&stored_type)?,
                    id: s("id"),
                    display_name: s("display_name"),
                };
                let client_id_as_id = stored_type == "app_registration"
                    || matches!(
                        action,
                        Action::CredentialsListSecrets | Action::CredentialsListGrants
                    );
                // "*" (a ListDrift of every registration) names none: it stays the target id.
                if v == 1 && client_id_as_id && target.id.as_deref() != Some("*") {
                    let client_id = target.id.take();
                    scope.client_id = scope.client_id.or(client_id);
                }
                Some(target)
            }
            _ => None,
        };
        if v == 1 && graph_request_id.is_none() {
            graph_request_id = m
                .remove("request_id")
                .and_then(|r| r.as_str().map(str::to_owned))
                .filter(|r| !r.is_empty());
        }
        let changes = match m.remove("changes") {
            Some(c) => serde_json::from_value(c).ok()?,
            None => Vec::new(),
        };
        let entry = AuditEntry {
            action,
            phase,
            scope,
            target,
            changes,
            graph_request_id,
            correlation_id,
            error,
            trace_id,
            details: m,
        };
        Some(StoredEntry {
            v,
            seq,
            time,
            entry,
        })
    }
}

/// An entry read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    /// The schema version it was written under.
    pub v: u64,
    /// Its index in the log.
    pub seq: u64,
    /// When it was written (the one time format).
    pub time: String,
    /// The entry, in today's names.
    pub entry: AuditEntry,
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // Our own plain types: serialising cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}
