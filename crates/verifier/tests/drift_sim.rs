//! Drift runs against the emulator with a `Targets` source that has no admin session: changes
//! made outside Onboard are detected once, repair is recorded as needing an admin sign-in, and
//! the items close when the changes are undone.

use std::sync::Arc;

use anyhow::{Result, ensure};
use entra_client::graph::roles::template::TEAMS_ADMINISTRATOR;
use secrecy::SecretString;
use testkit::audit::with_action;
use testkit::engine::{EngineEnv, Onboarded};
use testkit::platform::verify_input;
use testkit::portal;
use verifier::{
    BoxFuture, DriftMonitor, DriftStore, MonitorConfig, Target, Targets, Verifier, VerifyInput,
};

/// One registration, and the token repairs are made with (none: repair needs an admin).
struct Fixed(VerifyInput, Option<SecretString>);

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
        Box::pin(async move { Ok(self.1.clone()) })
    }
}

/// A monitor of `o`'s registration (service `dr-1`) repairing the direct-routing profile as
/// `drift-test`, with `writer` as its repair token.
fn monitor(env: &EngineEnv, o: &Onboarded, writer: Option<SecretString>) -> Result<DriftMonitor> {
    Ok(DriftMonitor::new(
        Verifier::new(env.client.clone()),
        Arc::new(Fixed(verify_input(o, "dr-1", vec![]), writer)),
        env.audit.clone(),
        DriftStore::new(env.db.open_tree("drift")?),
        MonitorConfig {
            repair_profiles: vec!["direct-routing".into()],
            actor: "drift-test".into(),
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_recorded_once_repair_needs_an_admin_and_items_close() -> Result<()> {
    let (env, o) = EngineEnv::with_onboarding("ob-1", "lp-dr1").await?;
    let g = env.client.graph(o.admin_token.clone());
    let monitor = monitor(&env, &o, None)?;
    let s = monitor.run_once().await?;
    ensure!(s.verified == 1 && s.detected.is_empty(), "{s:?}");

    portal::tamper(&g, &o.sp_id).await?;
    let s = monitor.run_once().await?;
    let mut keys: Vec<&str> = s.detected.iter().map(|i| i.key.as_str()).collect();
    keys.sort();
    let role_key = format!("role/{}/missing", TEAMS_ADMINISTRATOR);
    ensure!(
        keys == ["permission/graph/User.Read.All/missing", role_key.as_str()],
        "{keys:?}"
    );
    ensure!(s.repaired.is_empty());
    let skipped = with_action(&env.audit, "drift.repair")?;
    ensure!(skipped.len() == 2, "{skipped:#?}");
    ensure!(
        skipped
            .iter()
            .all(|e| e["phase"] == "skipped" && e["reason"] == "repair needs an admin sign-in"),
        "{skipped:#?}"
    );
    let detected = with_action(&env.audit, "drift.detected")?;
    ensure!(detected.len() == 2 && detected.iter().all(|e| e["actor"] == "drift-test"));
    ensure!(monitor.open_drift(Some(&o.client_id))?.len() == 2);
    ensure!(monitor.open_drift(Some("someone-else"))?.is_empty());

    // Seen again: not detected again.
    let s = monitor.run_once().await?;
    ensure!(s.detected.is_empty() && s.resolved.is_empty(), "{s:?}");
    ensure!(with_action(&env.audit, "drift.detected")?.len() == 2);

    // Put back outside Onboard: the items close.
    portal::assign_role(&g, &o.sp_id, TEAMS_ADMINISTRATOR).await?;
    portal::grant_permission(&g, &o.sp_id, "User.Read.All").await?;
    let s = monitor.run_once().await?;
    ensure!(s.resolved.len() == 2, "{s:?}");
    ensure!(monitor.open_drift(None)?.is_empty());
    let resolved = with_action(&env.audit, "drift.resolved")?;
    ensure!(
        resolved.len() == 2 && resolved.iter().all(|e| e["reason"] == "no longer observed"),
        "{resolved:#?}"
    );
    Ok(())
}

/// A permission granted again in the portal while the app's tokens still trail it (Entra's
/// replication): the run finds it missing from the token, Graph refuses the repair as already
/// existing, and the repair is recorded as done with the assignment found, not as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_of_a_grant_the_token_trails_is_recorded_with_the_grant_in_place() -> Result<()> {
    let (env, o) = EngineEnv::with_onboarding("ob-2", "lp-dr2").await?;
    let g = env.client.graph(o.admin_token.clone());
    let monitor = monitor(&env, &o, Some(o.admin_token.clone()))?;
    portal::revoke_permission(&g, &o.sp_id, "User.Read.All").await?;
    let mut faults = testkit::sim::calm();
    faults.replication_lag_ms = 60_000;
    env.sim.set_faults(faults);
    portal::grant_permission(&g, &o.sp_id, "User.Read.All").await?;
    let s = monitor.run_once().await?;
    let key = "permission/graph/User.Read.All/missing";
    ensure!(
        s.detected.iter().any(|i| i.key == key) && s.repaired == [key],
        "{s:?}"
    );
    let repairs = with_action(&env.audit, "drift.repair")?;
    ensure!(
        repairs.iter().any(|e| e["phase"] == "succeeded")
            && repairs.iter().all(|e| e["phase"] != "failed"),
        "{repairs:#?}"
    );
    Ok(())
}
