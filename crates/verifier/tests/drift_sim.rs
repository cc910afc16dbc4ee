//! Drift runs against the emulator with a `Targets` source that has no admin session: changes
//! made outside Onboard are detected once, repair is recorded as needing an admin sign-in, and
//! the items close when the changes are undone.

mod common;

use std::sync::Arc;

use anyhow::{Result, ensure};
use secrecy::SecretString;
use serde_json::Value;
use verifier::{
    BoxFuture, DriftMonitor, DriftStore, MonitorConfig, Target, Targets, Verifier, VerifyInput,
};

/// One registration, no writer token.
struct Fixed(VerifyInput);

impl Targets for Fixed {
    fn resolve<'a>(&'a self, _: &'a Target) -> BoxFuture<'a, verifier::Result<VerifyInput>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
    fn all(&self) -> BoxFuture<'_, verifier::Result<Vec<Target>>> {
        Box::pin(async move { Ok(vec![Target::ClientId(self.0.client_id.clone())]) })
    }
    fn writer_token<'a>(
        &'a self,
        _: &'a VerifyInput,
    ) -> BoxFuture<'a, verifier::Result<Option<SecretString>>> {
        Box::pin(async move { Ok(None) })
    }
}

fn entries(env: &common::Env, action: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for r in env.audit.entries(0, env.audit.size()) {
        let v: Value = serde_json::from_slice(&r?.1)?;
        if v["action"] == action {
            out.push(v);
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_recorded_once_repair_needs_an_admin_and_items_close() -> Result<()> {
    let env = common::onboarded().await?;
    let monitor = DriftMonitor::new(
        Verifier::new(env.client.clone()),
        Arc::new(Fixed(env.input(vec![]))),
        env.audit.clone(),
        DriftStore::new(env.db.open_tree("drift")?),
        MonitorConfig {
            repair_profiles: vec!["direct-routing".into()],
            actor: "drift-test".into(),
        },
    );
    let s = monitor.run_once().await?;
    ensure!(s.verified == 1 && s.detected.is_empty(), "{s:?}");

    env.remove_role().await?;
    env.revoke_permission("User.Read.All").await?;
    let s = monitor.run_once().await?;
    let mut keys: Vec<&str> = s.detected.iter().map(|i| i.key.as_str()).collect();
    keys.sort();
    let role_key = format!(
        "role/{}/missing",
        entra_client::graph::roles::template::TEAMS_ADMINISTRATOR
    );
    ensure!(
        keys == ["permission/graph/User.Read.All/missing", role_key.as_str()],
        "{keys:?}"
    );
    ensure!(s.repaired.is_empty());
    let skipped = entries(&env, "drift.repair")?;
    ensure!(skipped.len() == 2, "{skipped:#?}");
    ensure!(
        skipped
            .iter()
            .all(|e| e["phase"] == "skipped" && e["reason"] == "repair needs an admin sign-in"),
        "{skipped:#?}"
    );
    let detected = entries(&env, "drift.detected")?;
    ensure!(detected.len() == 2 && detected.iter().all(|e| e["actor"] == "drift-test"));
    ensure!(monitor.open_drift(Some(&env.client_id))?.len() == 2);
    ensure!(monitor.open_drift(Some("someone-else"))?.is_empty());

    // Seen again: not detected again.
    let s = monitor.run_once().await?;
    ensure!(s.detected.is_empty() && s.resolved.is_empty(), "{s:?}");
    ensure!(entries(&env, "drift.detected")?.len() == 2);

    // Put back outside Onboard: the items close.
    env.restore("User.Read.All").await?;
    let s = monitor.run_once().await?;
    ensure!(s.resolved.len() == 2, "{s:?}");
    ensure!(monitor.open_drift(None)?.is_empty());
    let resolved = entries(&env, "drift.resolved")?;
    ensure!(
        resolved.len() == 2 && resolved.iter().all(|e| e["reason"] == "no longer observed"),
        "{resolved:#?}"
    );
    Ok(())
}
