//! Audit entries for Entra changes: an `intent` entry before the call and a `succeeded` /
//! `failed` entry after it, both durable before the step is reported (audit-log.md fields).
//! No secret value ever goes in: a client secret is recorded by key id, hint and expiry.

use audit_log::AuditLog;
use serde_json::{Map, Value, json};

use crate::error::ProvisionError;

/// Who and what an onboarding's entries are about.
#[derive(Debug, Clone)]
pub struct AuditScope {
    /// Caller identity (mTLS subject or token), or `system` for resumes.
    pub actor: String,
    /// Customer tenant.
    pub tenant_id: String,
    /// Onboarding id.
    pub onboarding_id: String,
    /// Direct Routing service id.
    pub service_id: String,
}

/// The object an entry is about.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `application`, `servicePrincipal`, `passwordCredential`, `appRoleAssignment`,
    /// `unifiedRoleAssignment`, `onboarding`.
    pub kind: &'static str,
    /// Object id when known (not yet for a create's intent).
    pub id: Option<String>,
    /// Human name.
    pub display_name: String,
}

/// One property change: `{property, old, new}`.
pub fn change(property: &str, old: Value, new: Value) -> Value {
    json!({"property": property, "old": old, "new": new})
}

/// The `changes` of an outcome entry: the intent's changes plus what the answer added (ids,
/// a created flag), as one array.
pub fn merge_changes(intent: Value, result: Value) -> Value {
    let mut out = match intent {
        Value::Array(a) => a,
        Value::Null => vec![],
        other => vec![other],
    };
    match result {
        Value::Array(a) => out.extend(a),
        Value::Null => {}
        other => out.push(other),
    }
    Value::Array(out)
}

/// Phase of an entry.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// Before the Entra call.
    Intent,
    /// After it succeeded.
    Succeeded,
    /// After it failed.
    Failed,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Intent => "intent",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
        }
    }
}

/// The fields of one entry beyond the scope.
pub struct EntryParts<'a> {
    /// Dotted action name, e.g. `app_registration.create`.
    pub action: &'a str,
    /// Phase.
    pub phase: Phase,
    /// Target object.
    pub target: &'a Target,
    /// Property changes (`[]` when none).
    pub changes: Value,
    /// Graph/STS request id of the answer, when there was one.
    pub graph_request_id: Option<&'a str>,
    /// Our client-request-id for the call, the same in intent and outcome.
    pub correlation_id: &'a str,
    /// Error text for `failed`.
    pub error: Option<&'a str>,
}

/// Appends one entry and returns its index once it is durable and signed.
pub async fn append(
    log: &AuditLog,
    scope: &AuditScope,
    parts: EntryParts<'_>,
) -> Result<u64, ProvisionError> {
    let mut m = Map::new();
    m.insert("actor".into(), json!(scope.actor));
    m.insert("action".into(), json!(parts.action));
    m.insert("phase".into(), json!(parts.phase.as_str()));
    m.insert("tenant_id".into(), json!(scope.tenant_id));
    m.insert("onboarding_id".into(), json!(scope.onboarding_id));
    m.insert("service_id".into(), json!(scope.service_id));
    m.insert(
        "target".into(),
        json!({
            "type": parts.target.kind,
            "id": parts.target.id,
            "display_name": parts.target.display_name,
        }),
    );
    m.insert("changes".into(), parts.changes);
    m.insert("graph_request_id".into(), json!(parts.graph_request_id));
    m.insert("correlation_id".into(), json!(parts.correlation_id));
    m.insert("error".into(), json!(parts.error));
    let appended = log.append(&m).await?;
    Ok(appended.seq)
}
