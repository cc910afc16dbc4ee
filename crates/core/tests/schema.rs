//! The audit entry contract stays in step: the JSON Schema (`docs/audit-entries.schema.json`),
//! the auditors' page (`docs/audit-entries.md`) and the typed definition (`Action`,
//! `TargetKind`, the common fields) name the same actions, details and kinds; the page's
//! examples validate; entries the typed definition writes validate and read back; an entry with
//! an undeclared detail is refused. (The flows that write every kind of entry against the
//! schema are `crates/server/tests/audit_schema.rs`.)

use std::collections::BTreeSet;
use std::path::PathBuf;

use onboard_core::audit::{
    Action, AuditEntry, COMMON_FIELDS, Phase, SCHEMA_VERSION, Scope, Target, TargetKind, set,
};
use serde_json::{Value, json};

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn schema() -> Value {
    let text = std::fs::read_to_string(docs().join("audit-entries.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).unwrap()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_schema_names_exactly_the_typed_actions_details_and_kinds() {
    let s = schema();
    let actions = strings(&s["properties"]["action"]["enum"]);
    let typed: BTreeSet<String> = Action::ALL.iter().map(|a| a.as_str().to_owned()).collect();
    assert_eq!(actions, typed, "schema action enum vs Action::ALL");

    let kinds = strings(&s["properties"]["target"]["properties"]["type"]["enum"]);
    let typed: BTreeSet<String> = TargetKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(kinds, typed, "schema target types vs TargetKind::ALL");

    let top: BTreeSet<String> = s["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut expected: BTreeSet<String> = COMMON_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    expected.extend(["v", "seq", "time"].map(String::from));
    assert_eq!(
        top, expected,
        "schema top-level properties vs COMMON_FIELDS"
    );
    assert_eq!(s["properties"]["v"]["const"], json!(SCHEMA_VERSION));

    // Each action's details, exactly.
    let mut declared = std::collections::BTreeMap::new();
    for rule in s["allOf"].as_array().unwrap() {
        let action = rule["if"]["properties"]["action"]["const"]
            .as_str()
            .unwrap()
            .to_owned();
        let keys: BTreeSet<String> = rule["then"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert!(
            declared.insert(action.clone(), keys).is_none(),
            "{action} twice"
        );
    }
    for a in Action::ALL {
        let typed: BTreeSet<String> = a.details().iter().map(|d| (*d).to_owned()).collect();
        let in_schema = declared.remove(a.as_str()).unwrap_or_default();
        assert_eq!(in_schema, typed, "details of {}", a.as_str());
    }
    assert!(
        declared.is_empty(),
        "schema rules for unknown actions: {declared:?}"
    );
}

#[test]
fn the_auditors_page_documents_every_action_and_kind() {
    let page = std::fs::read_to_string(docs().join("audit-entries.md")).unwrap();
    let table = &page[page.find("## Actions").unwrap()..page.find("## Examples").unwrap()];
    let missing: Vec<&str> = Action::ALL
        .iter()
        .map(|a| a.as_str())
        .filter(|a| !table.contains(&format!("| `{a}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "actions without a row in docs/audit-entries.md: {missing:?}"
    );
    // Each row's last cell (its details) names every detail the action declares.
    for a in Action::ALL {
        let head = format!("| `{}` |", a.as_str());
        let row = table.lines().find(|l| l.starts_with(&head)).unwrap();
        let details = row
            .trim_end()
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .unwrap();
        for d in a.details() {
            assert!(
                details.contains(&format!("`{d}`")),
                "{}: detail {d} is not in its row's details cell: {details}",
                a.as_str()
            );
        }
    }
    for k in TargetKind::ALL {
        assert!(
            page.contains(&format!("| `{}` |", k.as_str())),
            "target type {} undocumented",
            k.as_str()
        );
    }
}

#[test]
fn the_pages_examples_validate_against_the_schema() {
    let page = std::fs::read_to_string(docs().join("audit-entries.md")).unwrap();
    let v = validator();
    let mut n = 0;
    let mut shown = BTreeSet::new();
    for block in page.split("```json\n").skip(1) {
        let json = &block[..block.find("```").unwrap()];
        let entry: Value = serde_json::from_str(json).unwrap();
        shown.insert(entry["action"].as_str().unwrap_or_default().to_owned());
        let errors: Vec<String> = v.iter_errors(&entry).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{json}\n{errors:#?}");
        assert!(
            AuditEntry::from_stored(json.trim().as_bytes()).is_some(),
            "{json}"
        );
        n += 1;
    }
    assert!(n >= Action::ALL.len(), "only {n} examples");
    // An example of each action (issue 9: "every action, ... an example of each").
    let without: Vec<&str> = Action::ALL
        .iter()
        .map(|a| a.as_str())
        .filter(|a| !shown.contains(*a))
        .collect();
    assert!(
        without.is_empty(),
        "actions without an example: {without:?}"
    );
}

/// The bytes the log would store for `e` at `seq` (the log adds `v`, `seq`, `time`).
fn stored(e: &AuditEntry, seq: u64) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("v".into(), json!(SCHEMA_VERSION));
    m.insert("seq".into(), json!(seq));
    m.insert("time".into(), json!("2026-11-29T22:21:32.947184683Z"));
    m.extend(e.to_fields().unwrap());
    Value::Object(m)
}

#[test]
fn typed_entries_validate_and_read_back_and_undeclared_details_are_refused() {
    let v = validator();
    let scope = Scope {
        actor: "op".into(),
        tenant_id: Some("t".into()),
        client_id: Some("c".into()),
        ..Scope::default()
    };
    let e = AuditEntry::new(Action::DriftRepair, Phase::Skipped, &scope)
        .with_target(Target::new(TargetKind::Application, None))
        .with_changes(vec![set("x", 1)])
        .with_detail("key", "permission/graph/User.Read.All/missing")
        .with_detail("reason", "repair needs an admin sign-in");
    let value = stored(&e, 7);
    let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{value}\n{errors:#?}");
    let back = AuditEntry::from_stored(value.to_string().as_bytes()).unwrap();
    assert_eq!(back.entry, e);
    assert_eq!(back.seq, 7);

    // A detail the action does not declare is refused before it could reach the log...
    let bad = AuditEntry::new(Action::OnboardingGet, Phase::Succeeded, &scope)
        .with_detail("secret", "nope");
    let err = bad.to_fields().unwrap_err().to_string();
    assert!(err.contains("not declared"), "{err}");
    // ...and the schema refuses it too.
    let mut raw = stored(
        &AuditEntry::new(Action::OnboardingGet, Phase::Succeeded, &scope),
        1,
    );
    raw["secret"] = json!("nope");
    assert!(!v.is_valid(&raw));

    // An entry that names no actor breaks the schema (`minLength: 1`): refused before writing.
    for nobody in ["", "  "] {
        let err = AuditEntry::new(
            Action::SigningKeyRotate,
            Phase::Succeeded,
            &Scope::actor(nobody),
        )
        .to_fields()
        .unwrap_err()
        .to_string();
        assert!(err.contains("actor is empty"), "{err}");
    }
    raw = stored(
        &AuditEntry::new(Action::OnboardingGet, Phase::Succeeded, &scope),
        1,
    );
    raw["actor"] = json!("");
    assert!(!v.is_valid(&raw));
}

#[test]
fn version_1_entries_map_onto_todays_names() {
    let v1 = br#"{"v":1,"seq":3,"time":"2026-11-29T22:21:33.9Z","action":"verification.report","actor":"onboard:drift-monitor","phase":"succeeded","target":{"type":"app_registration","id":"6fb6186a"},"client_id":"6fb6186a","overall":"OK","checks":[],"trigger":"scheduled","checked_at":"2026-11-29T22:21:33Z","tenant_id":"t"}"#;
    let e = AuditEntry::from_stored(v1).unwrap();
    assert_eq!(e.v, 1);
    let target = e.entry.target.unwrap();
    assert_eq!(target.kind, TargetKind::Application);
    // Version 1 held the client id there; today's `target.id` is the object id, unknown here.
    assert_eq!(target.id, None);
    assert_eq!(e.entry.scope.client_id.as_deref(), Some("6fb6186a"));
    // Release 0.1's credential reads: the client id in `target.id` only.
    let v1 = br#"{"v":1,"seq":4,"time":"2026-11-29T22:21:34.1Z","action":"credentials.list_secrets","actor":"platform","phase":"succeeded","target":{"type":"application","id":"6fb6186a"},"changes":[]}"#;
    let e = AuditEntry::from_stored(v1).unwrap();
    assert_eq!(e.entry.target.unwrap().id, None);
    assert_eq!(e.entry.scope.client_id.as_deref(), Some("6fb6186a"));
    // A drift repair's `request_id` is `graph_request_id`; release 0.1 wrote "" for none.
    let v1 = br#"{"v":1,"seq":5,"time":"2026-11-29T22:21:35.1Z","action":"drift.repair","actor":"onboard:drift-monitor","phase":"succeeded","target":{"type":"app_registration","id":"6fb6186a"},"request_id":"req-9","changes":[]}"#;
    let e = AuditEntry::from_stored(v1).unwrap();
    assert_eq!(e.entry.graph_request_id.as_deref(), Some("req-9"));
    assert!(!e.entry.details.contains_key("request_id"));
    let v1 = br#"{"v":1,"seq":6,"time":"2026-11-29T22:21:36.1Z","action":"drift.repair","actor":"onboard:drift-monitor","phase":"succeeded","target":{"type":"app_registration","id":"6fb6186a"},"request_id":"","changes":[]}"#;
    assert_eq!(
        AuditEntry::from_stored(v1).unwrap().entry.graph_request_id,
        None
    );
    // ListDrift of every registration: "*" names none, so it is no client id.
    let v1 = br#"{"v":1,"seq":7,"time":"2026-11-29T22:21:37.1Z","action":"drift.list","actor":"ops","phase":"succeeded","target":{"type":"app_registration","id":"*"},"count":0}"#;
    let e = AuditEntry::from_stored(v1).unwrap();
    assert_eq!(e.entry.scope.client_id, None);
    assert_eq!(e.entry.target.unwrap().id.as_deref(), Some("*"));
    // Release 0.1 wrote "" for a scope field without a value (day-two grant changes).
    let v1 = br#"{"v":1,"seq":8,"time":"2026-11-29T22:21:38.1Z","action":"app_role_assignment.create","actor":"ops","phase":"intent","tenant_id":"t","onboarding_id":"o","service_id":"","target":{"type":"appRoleAssignment","id":null,"display_name":"x"},"graph_request_id":null,"error":null,"changes":[]}"#;
    let e = AuditEntry::from_stored(v1).unwrap();
    assert_eq!(e.entry.scope.service_id, None);
    assert_eq!(e.entry.scope.onboarding_id.as_deref(), Some("o"));
    assert_eq!(e.entry.target.unwrap().id, None);
    // Version 2 is read as written.
    let v2 = br#"{"v":2,"seq":7,"time":"2026-11-29T22:21:37.1Z","action":"credentials.list_secrets","actor":"platform","phase":"succeeded","target":{"type":"application","id":"obj-1"},"client_id":"6fb6186a","changes":[]}"#;
    assert_eq!(
        AuditEntry::from_stored(v2)
            .unwrap()
            .entry
            .target
            .unwrap()
            .id
            .as_deref(),
        Some("obj-1")
    );
}

/// Release 0.1's entries (version 1) have their own frozen schema: every action and target
/// type it allows is one today's reader maps (`Action::from_name`, `TargetKind::from_stored`),
/// and the auditors' page names the file and each action version 1 lacks.
#[test]
fn the_version_1_schema_is_a_subset_today_reads() {
    let text = std::fs::read_to_string(docs().join("audit-entries.v1.schema.json")).unwrap();
    let v1: Value = serde_json::from_str(&text).unwrap();
    let v1_check = jsonschema::draft202012::new(&v1).unwrap();
    assert_eq!(v1["properties"]["v"]["const"], 1);
    let actions = strings(&v1["properties"]["action"]["enum"]);
    for a in &actions {
        assert!(
            Action::from_name(a).is_some(),
            "v1 action {a} unknown today"
        );
    }
    for k in strings(&v1["properties"]["target"]["properties"]["type"]["enum"]) {
        assert!(TargetKind::from_stored(&k).is_some(), "v1 target type {k}");
    }
    let page = std::fs::read_to_string(docs().join("audit-entries.md")).unwrap();
    let older = &page[page.find("## Older entries").unwrap()..];
    assert!(older.contains("audit-entries.v1.schema.json"));
    for a in Action::ALL.iter().map(|a| a.as_str()) {
        if !actions.contains(a) {
            assert!(older.contains(&format!("`{a}`")), "{a} not listed as new");
        }
    }
    // A version 2 entry is not a version 1 entry, nor the other way round.
    let scope = Scope::actor("ops");
    let today = stored(
        &AuditEntry::new(Action::OnboardingGet, Phase::Succeeded, &scope),
        1,
    );
    assert!(!v1_check.is_valid(&today));
    let mut old = today.clone();
    old["v"] = json!(1);
    assert!(v1_check.is_valid(&old), "{old}");
    assert!(!validator().is_valid(&old));
}
