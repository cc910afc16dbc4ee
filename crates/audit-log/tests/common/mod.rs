//! Helpers shared by the audit-log integration tests.
#![allow(dead_code)]

use std::path::Path;

use audit_log::{AuditLog, LogConfig, NoteSigner};
use serde_json::{Map, Value, json};

pub const ORIGIN: &str = "onboard.test/audit";

/// A fixed key, so that reopening a directory uses the same one.
pub fn key() -> NoteSigner {
    NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])).unwrap()
}

pub fn open(dir: &Path) -> Result<AuditLog, audit_log::AuditError> {
    AuditLog::open(LogConfig::new(dir, ORIGIN), key())
}

/// A realistic entry's fields.
pub fn fields(i: u64) -> Map<String, Value> {
    let v = json!({
        "actor": "spiffe://platform.example/portal",
        "action": if i.is_multiple_of(3) { "app_registration.create" } else { "service_principal.create" },
        "phase": if i.is_multiple_of(2) { "intent" } else { "succeeded" },
        "tenant_id": "8f2c1f3e-7f7d-4c1e-9a53-2d3c4b5a6e7f",
        "onboarding_id": format!("onb-{i:08}"),
        "target": {"type": "application", "id": format!("app-{i}"), "display_name": "Sandbox1-sp2"},
    });
    v.as_object().unwrap().clone()
}
