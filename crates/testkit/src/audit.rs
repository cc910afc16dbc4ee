//! A temporary audit log and its entries as JSON, for assertions; the intent → outcome rule
//! checked over a run's entries.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use audit_log::{AuditError, AuditLog, Checkpoint, Hash, LogConfig, NoteSigner, SignedCheckpoint};
use serde_json::{Map, Value, json};

use crate::keys::{ORIGIN, log_signer};

/// Opens (or creates) the audit log in `dir` with the fixed test key.
pub fn open_log(dir: &Path) -> Result<AuditLog, AuditError> {
    AuditLog::open(LogConfig::new(dir, ORIGIN), log_signer())
}

/// The checkpoint of `signer`'s log (its key name is the origin) at `size` with `root`, signed
/// by `signer` alone: the signed note's text. Panics on a signing error (a test's own key).
pub fn checkpoint_note(signer: &NoteSigner, size: u64, root: Hash) -> String {
    Checkpoint {
        origin: signer.name().to_owned(),
        size,
        root,
    }
    .sign(&[signer])
    .unwrap_or_else(|e| panic!("{e}"))
    .note
}

/// Sends `note` (a checkpoint the fixed test key [`log_signer`] signed) to `feed` as a feed of
/// witness-cosigned checkpoints (`CheckpointFeed::Vouched`) hands it out: with one more
/// signature line, `— w.example/1 AAAA…`, after the log's. Returns the note sent.
///
/// The cosignature is fake: no witness runs and nothing is signed. The line only has the shape
/// of one (a valid key name, base64 of 78 zero bytes: key id 0), so opening the note with the
/// log's key counts it as a line by a key it does not know and verifies only the log's own
/// signature. Tests of what serves or publishes the feed need no more: the extra line is what
/// tells the feed's note from the log's own. Panics when `note` does not open with the log's
/// key or `feed` has no receiver left.
pub fn send_fake_cosigned(
    feed: &tokio::sync::watch::Sender<Option<Arc<SignedCheckpoint>>>,
    note: &str,
) -> String {
    let note = format!("{note}\u{2014} w.example/1 {}\n", "A".repeat(100) + "AAAA");
    let cp =
        SignedCheckpoint::open(&note, &[log_signer().verifier()]).unwrap_or_else(|e| panic!("{e}"));
    feed.send(Some(Arc::new(cp)))
        .unwrap_or_else(|_| panic!("the checkpoint feed has no receiver"));
    note
}

/// Every entry of `log`, parsed, in log order (each carries its `seq`).
pub fn entries(log: &AuditLog) -> Result<Vec<Value>> {
    log.entries(0, log.size())
        .map(|e| Ok(serde_json::from_slice(&e?.1)?))
        .collect()
}

/// The auditors' contract for entries of schema version `v`, compiled once:
/// `docs/audit-entries.schema.json` (version 2, written today) or
/// `docs/audit-entries.v1.schema.json` (release 0.1's entries, frozen).
fn schema(v: u64) -> Result<(&'static str, &'static jsonschema::Validator)> {
    type Compiled = std::sync::OnceLock<Result<jsonschema::Validator, String>>;
    static V1: Compiled = std::sync::OnceLock::new();
    static V2: Compiled = std::sync::OnceLock::new();
    let (file, text, cell) = match v {
        1 => (
            "docs/audit-entries.v1.schema.json",
            include_str!("../../../docs/audit-entries.v1.schema.json"),
            &V1,
        ),
        2 => (
            "docs/audit-entries.schema.json",
            include_str!("../../../docs/audit-entries.schema.json"),
            &V2,
        ),
        other => anyhow::bail!("no published schema for audit entry version {other}"),
    };
    let compiled = cell.get_or_init(|| {
        let schema: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        jsonschema::draft202012::new(&schema).map_err(|e| e.to_string())
    });
    match compiled {
        Ok(v) => Ok((file, v)),
        Err(e) => anyhow::bail!("{file}: {e}"),
    }
}

/// Fails naming the entry and the rule when any of `entries` is not of today's schema version
/// or breaks its published schema: for entries this build wrote.
pub fn check_schema(entries: &[Value]) -> Result<()> {
    let today = u64::from(onboard_core::audit::SCHEMA_VERSION);
    for e in entries {
        ensure!(e["v"] == today, "not audit schema version {today}: {e}");
    }
    check_stored_schema(entries)
}

/// Fails naming the entry and the rule when any of `entries` breaks the published schema of
/// its own version (its `v`): for a log an earlier release wrote part of.
pub fn check_stored_schema(entries: &[Value]) -> Result<()> {
    for e in entries {
        let (file, v) = schema(e["v"].as_u64().unwrap_or_default())?;
        let errors: Vec<String> = v
            .iter_errors(e)
            .map(|err| format!("{} at {}", err, err.instance_path()))
            .collect();
        ensure!(
            errors.is_empty(),
            "audit entry breaks {file}: {}\n{e}",
            errors.join("; ")
        );
    }
    Ok(())
}

/// Every entry of a log Onboard's own code wrote (a server's or an engine's), parsed and
/// checked against the published schema ([`check_schema`]).
pub fn typed_entries(log: &AuditLog) -> Result<Vec<Value>> {
    let all = entries(log)?;
    check_schema(&all)?;
    Ok(all)
}

/// The entries of one onboarding (`onboarding_id`), in log order.
pub fn entries_of(log: &AuditLog, onboarding_id: &str) -> Result<Vec<Value>> {
    Ok(typed_entries(log)?
        .into_iter()
        .filter(|e| e["onboarding_id"] == onboarding_id)
        .collect())
}

/// The entries with `action`, in log order.
pub fn with_action(log: &AuditLog, action: &str) -> Result<Vec<Value>> {
    Ok(typed_entries(log)?
        .into_iter()
        .filter(|e| e["action"] == action)
        .collect())
}

/// The phases of `action` for `onboarding_id`, in log order.
pub fn phases(entries: &[Value], action: &str, onboarding_id: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["action"] == action && e["onboarding_id"] == onboarding_id)
        .filter_map(|e| e["phase"].as_str().map(str::to_owned))
        .collect()
}

/// `(phase, actor)` of each entry of `action` for `onboarding_id`, in log order.
pub fn phases_and_actors(
    entries: &[Value],
    action: &str,
    onboarding_id: &str,
) -> Vec<(String, String)> {
    entries
        .iter()
        .filter(|e| e["action"] == action && e["onboarding_id"] == onboarding_id)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("phase"), s("actor"))
        })
        .collect()
}

/// The actors of the `succeeded` entries of `action` for `onboarding_id`.
pub fn succeeded_by(entries: &[Value], action: &str, onboarding_id: &str) -> Vec<String> {
    phases_and_actors(entries, action, onboarding_id)
        .into_iter()
        .filter(|(p, _)| p == "succeeded")
        .map(|(_, a)| a)
        .collect()
}

/// Checks the rule "no Entra change without an intent first" over one onboarding's entries:
/// every change (anything but `onboarding.*` and `invitation.*`) is an intent followed later by
/// exactly one outcome of the same action with the same correlation id, and names its actor,
/// tenant, service, target and changes. (One operation may use one correlation id for entries
/// of several actions: a rotation's is its id.) Returns action → number of succeeded changes.
pub fn change_pairs(entries: &[Value], onboarding_id: &str) -> Result<HashMap<String, usize>> {
    let mut open: HashMap<String, (String, u64)> = HashMap::new();
    let mut done: HashMap<String, usize> = HashMap::new();
    for e in entries
        .iter()
        .filter(|e| e["onboarding_id"] == onboarding_id)
    {
        let action = e["action"].as_str().context("action")?.to_owned();
        // The platform's claim of the secret (`secret.hand_over`) is not an Entra change.
        if action.starts_with("onboarding.")
            || action.starts_with("invitation.")
            || action == "secret.hand_over"
        {
            continue;
        }
        let crid = format!(
            "{action} {}",
            e["correlation_id"].as_str().context("correlation_id")?
        );
        let seq = e["seq"].as_u64().context("seq")?;
        match e["phase"].as_str() {
            Some("intent") => {
                ensure!(
                    open.insert(crid, (action, seq)).is_none(),
                    "intent twice: {e}"
                )
            }
            Some(p @ ("succeeded" | "failed")) => {
                let (a, s) = open.remove(&crid).context("outcome without intent")?;
                ensure!(a == action, "outcome {action} for intent {a}");
                ensure!(s < seq, "outcome before its intent: {e}");
                if p == "succeeded" {
                    *done.entry(action).or_default() += 1;
                }
            }
            other => bail!("bad phase {other:?}"),
        }
        for f in ["actor", "tenant_id", "service_id", "target", "changes"] {
            ensure!(!e[f].is_null(), "entry lacks {f}: {e}");
        }
    }
    ensure!(open.is_empty(), "intents without outcome: {open:?}");
    Ok(done)
}

/// The Entra changes one `direct-routing` onboarding makes, by action, with how many succeed:
/// the app, its service principal and secret, four app-role grants, one directory role, the
/// app's service principal as its owner, the temporary app's removal, and the proof that the
/// secret authenticates.
pub const DIRECT_ROUTING_CHANGES: &[(&str, usize)] = &[
    ("app_registration.create", 1),
    ("service_principal.create", 1),
    ("client_secret.add", 1),
    // Organization.Read.All, User.Read.All, Application.ReadWrite.OwnedBy (self-rotation, on
    // by default) and the Teams admin API's application_access.
    ("app_role_assignment.create", 4),
    ("directory_role_assignment.create", 1),
    ("app_owner.add", 1),
    ("temporary_app.delete", 1),
    ("authentication.verify", 1),
];

/// [`change_pairs`] over onboarding `onboarding_id`, which must have made exactly
/// [`DIRECT_ROUTING_CHANGES`].
pub fn assert_direct_routing_changes(entries: &[Value], onboarding_id: &str) -> Result<()> {
    let done = change_pairs(entries, onboarding_id)?;
    for (action, n) in DIRECT_ROUTING_CHANGES {
        ensure!(
            done.get(*action) == Some(n),
            "{action}: {:?}",
            done.get(*action)
        );
    }
    ensure!(
        done.len() == DIRECT_ROUTING_CHANGES.len(),
        "other changes too: {done:?}"
    );
    // Once the app exists, every change names it by client id (docs/audit-entries.md).
    let client_id = entries
        .iter()
        .filter(|e| e["onboarding_id"] == onboarding_id)
        .find(|e| e["action"] == "app_registration.create" && e["phase"] == "succeeded")
        .and_then(|e| {
            e["changes"]
                .as_array()?
                .iter()
                .find(|c| c["property"] == "appId")
        })
        .and_then(|c| c["new"].as_str())
        .context("the created app's appId")?;
    for e in entries
        .iter()
        .filter(|e| e["onboarding_id"] == onboarding_id)
    {
        let action = e["action"].as_str().unwrap_or_default();
        let change = !action.starts_with("onboarding.")
            && !action.starts_with("invitation.")
            && action != "app_registration.create";
        ensure!(
            !change || e["client_id"] == client_id,
            "no client id {client_id} on {e}"
        );
    }
    Ok(())
}

/// A realistic entry's fields (alternating actions and phases), for log-level tests.
pub fn sample_fields(i: u64) -> Map<String, Value> {
    let v = json!({
        "actor": "spiffe://platform.example/portal",
        "action": if i.is_multiple_of(3) { "app_registration.create" } else { "service_principal.create" },
        "phase": if i.is_multiple_of(2) { "intent" } else { "succeeded" },
        "tenant_id": "8f2c1f3e-7f7d-4c1e-9a53-2d3c4b5a6e7f",
        "onboarding_id": format!("onb-{i:08}"),
        "target": {"type": "application", "id": format!("app-{i}"), "display_name": "Sandbox1-sp2"},
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
