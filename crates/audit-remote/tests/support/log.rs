//! A test log: a fixed key, realistic entries.
#![allow(dead_code)]

use std::path::Path;

use audit_log::{AuditLog, LogConfig, NoteSigner, NoteVerifier};
use serde_json::{Map, Value, json};

pub const ORIGIN: &str = "remote.onboard.test/audit";

/// A fixed key, so that every process and reopening uses the same one.
pub fn key() -> NoteSigner {
    NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[11u8; 32])).unwrap()
}

pub fn vkey() -> NoteVerifier {
    key().verifier()
}

pub fn open(dir: &Path) -> AuditLog {
    AuditLog::open(LogConfig::new(dir, ORIGIN), key()).unwrap()
}

pub fn fields(i: u64) -> Map<String, Value> {
    let v = json!({
        "actor": "spiffe://platform.example/portal",
        "action": if i % 3 == 0 { "app_registration.create" } else { "secret.add" },
        "phase": "succeeded",
        "onboarding_id": format!("onb-{i:08}"),
        "target": {"type": "application", "id": format!("app-{i}")},
    });
    v.as_object().unwrap().clone()
}

/// Appends `n` entries with 32 concurrent appenders (so commits batch).
pub async fn append(log: &AuditLog, n: u64) {
    let tasks: Vec<_> = (0..32u64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut i = t;
                while i < n {
                    log.append(&fields(i)).await.unwrap();
                    i += 32;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
