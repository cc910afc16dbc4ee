//! Drift: scheduled verification of every managed registration, a durable list of open
//! differences, audit entries when one appears or goes away, and optional repair.
//!
//! Audit actions (all with `target` = the app registration):
//! - `verification.report` (trigger `scheduled`): every run's report.
//! - `drift.detected`: a finding not open before (a permission, role or secret changed outside
//!   Onboard).
//! - `drift.resolved`: an open finding no longer observed, or repaired.
//! - `drift.repair`: `intent` before a re-grant / re-assignment, then `succeeded` / `failed`
//!   (with `intent_seq`); or `skipped` when no admin session can do it.

use std::sync::Arc;
use std::time::Duration;

use audit_log::AuditLog;
use entra_client::OpContext;
use onboard_core::Shutdown;
use onboard_core::audit::{Action, AuditEntry, Phase};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checks::Verifier;
use crate::error::{Result, VerifyError};
use crate::input::{Target, VerifyInput};
use crate::report::{Finding, Report, registration_entry};
use crate::targets::Targets;

/// One open drift item, as kept in sled and shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftItem {
    /// Application (client) id.
    pub client_id: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Platform service id, if known.
    pub service_id: Option<String>,
    /// `permission`, `role` or `secret`.
    pub kind: String,
    /// Stable key of the difference (e.g. `permission/graph/User.Read.All/missing`).
    pub key: String,
    /// For a human.
    pub detail: String,
    /// First seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
    /// The `drift.detected` audit entry.
    pub audit_seq: u64,
}

/// Open drift items in a sled tree the caller opened (`d/<client id>/<key>` → JSON).
/// Writes are plain inserts/removes followed by a durable flush shared with concurrent writers
/// (`onboard_core::store::GroupFlush`; no batches, transactions or `flush_async`: see
/// ARCHITECTURE.md, sled traps).
#[derive(Debug, Clone)]
pub struct DriftStore {
    /// The caller's tree.
    tree: sled::Tree,
    /// Writers of this store share durable flushes: a drift run over many registrations writes
    /// its items at once, and a flush each would seal a nearly empty sled buffer each.
    flush: std::sync::Arc<onboard_core::store::GroupFlush>,
}

fn item_key(client_id: &str, key: &str) -> Vec<u8> {
    format!("d/{client_id}/{key}").into_bytes()
}

impl DriftStore {
    /// Wraps `tree`.
    pub fn new(tree: sled::Tree) -> Self {
        Self {
            tree,
            flush: Default::default(),
        }
    }

    /// Open items, of one registration or (`None`) of all, in key order.
    pub fn list(&self, client_id: Option<&str>) -> Result<Vec<DriftItem>> {
        let prefix = match client_id {
            Some(c) => format!("d/{c}/"),
            None => "d/".into(),
        };
        self.tree
            .scan_prefix(prefix.as_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                serde_json::from_slice(&v).map_err(|e| VerifyError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    message: e.to_string(),
                })
            })
            .collect()
    }

    async fn put(&self, item: &DriftItem) -> Result<()> {
        let bytes = serde_json::to_vec(item).map_err(|e| VerifyError::Corrupt {
            key: item.key.clone(),
            message: e.to_string(),
        })?;
        self.tree
            .insert(item_key(&item.client_id, &item.key), bytes)?;
        self.flush().await
    }

    async fn remove(&self, client_id: &str, key: &str) -> Result<()> {
        self.tree.remove(item_key(client_id, key))?;
        self.flush().await
    }

    async fn flush(&self) -> Result<()> {
        self.flush
            .flush(&self.tree)
            .await
            .map_err(|e| VerifyError::Store(sled::Error::ReportableBug(e.to_string())))
    }
}

/// How drift runs behave.
#[derive(Debug, Clone, Default)]
pub struct MonitorConfig {
    /// Profiles whose missing permissions and roles are repaired automatically.
    pub repair_profiles: Vec<String>,
    /// The audit `actor` of scheduled runs (e.g. `onboard:drift-monitor`).
    pub actor: String,
}

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Registrations verified.
    pub verified: usize,
    /// Items newly detected.
    pub detected: Vec<DriftItem>,
    /// Items no longer observed or repaired (keys).
    pub resolved: Vec<String>,
    /// Repairs that succeeded (keys).
    pub repaired: Vec<String>,
    /// Registrations that could not be verified, with why.
    pub errors: Vec<String>,
}

/// Scheduled verification with drift records and optional repair.
pub struct DriftMonitor {
    /// Runs the checks.
    verifier: Verifier,
    /// Knows the registrations.
    targets: Arc<dyn Targets>,
    /// Where every report, drift and repair goes first.
    audit: AuditLog,
    /// Open items.
    store: DriftStore,
    /// Repair profiles and actor.
    config: MonitorConfig,
    /// One run at a time (the scheduler and a manual run may overlap).
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for DriftMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftMonitor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An entry of `action` about `input`'s registration, with its profile.
fn entry(action: Action, phase: Phase, actor: &str, input: &VerifyInput) -> AuditEntry {
    registration_entry(
        (action, phase, actor),
        &input.tenant_id,
        &input.client_id,
        input.service_id.clone(),
        input.app_object_id.clone(),
    )
    .with_detail("profile", input.profile.clone())
}

impl DriftMonitor {
    /// A monitor over `targets`, recording to `audit` and keeping open items in `store`.
    pub fn new(
        verifier: Verifier,
        targets: Arc<dyn Targets>,
        audit: AuditLog,
        store: DriftStore,
        config: MonitorConfig,
    ) -> Self {
        Self {
            verifier,
            targets,
            audit,
            store,
            config,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The verifier (for on-demand reports).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The target source.
    pub fn targets(&self) -> &Arc<dyn Targets> {
        &self.targets
    }

    /// Open drift items of one registration, or (`None`) of all. The client id is matched
    /// whole and ignoring case, as Verify matches it (item keys keep the case the registration
    /// was recorded with, so a key prefix would miss them, and part of an id could match
    /// another registration's keys).
    pub fn open_drift(&self, client_id: Option<&str>) -> Result<Vec<DriftItem>> {
        let mut items = self.store.list(None)?;
        if let Some(c) = client_id {
            items.retain(|i| i.client_id.eq_ignore_ascii_case(c));
        }
        Ok(items)
    }

    /// Runs the scheduler: a run every `every` (the first after one interval) until shutdown
    /// begins; a run in progress then gets the shutdown grace to finish. A failed run is
    /// logged and the next one still happens. `None` when shutdown has already begun.
    pub fn spawn(
        self: Arc<Self>,
        every: Duration,
        shutdown: &Shutdown,
    ) -> Option<tokio::task::JoinHandle<Option<()>>> {
        let stop = shutdown.clone();
        shutdown.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.recv() => return,
                    _ = tick.tick() => {}
                }
                match self.run_once().await {
                    Ok(s) => tracing::info!(
                        verified = s.verified,
                        detected = s.detected.len(),
                        resolved = s.resolved.len(),
                        repaired = s.repaired.len(),
                        errors = s.errors.len(),
                        "drift run finished"
                    ),
                    Err(e) => tracing::error!(error = %e, "drift run failed"),
                }
            }
        })
    }

    /// Verifies every registration now. Audit failures end the run (fail closed); a
    /// registration that cannot be resolved is skipped and named in `errors`.
    pub async fn run_once(&self) -> Result<RunSummary> {
        let _one = self.running.lock().await;
        let mut summary = RunSummary::default();
        for target in self.targets.all().await? {
            let input = match self.targets.resolve(&target).await {
                Ok(i) => i,
                Err(e @ VerifyError::Audit(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(target = %target.describe(), error = %e, "drift run: cannot resolve");
                    summary.errors.push(format!("{}: {e}", target.describe()));
                    continue;
                }
            };
            self.run_one(&target, &input, &mut summary).await?;
            summary.verified += 1;
        }
        Ok(summary)
    }

    async fn run_one(
        &self,
        _target: &Target,
        input: &VerifyInput,
        summary: &mut RunSummary,
    ) -> Result<()> {
        let actor = self.config.actor.as_str();
        let report = self.verifier.verify(input).await;
        let report_seq = report
            .record(&self.audit, actor, "scheduled", &input.profile)
            .await?;
        self.observe(input, &report, report_seq, summary).await?;
        if self.config.repair_profiles.contains(&input.profile) {
            self.repair(input, &report, summary).await?;
        }
        Ok(())
    }

    /// Compares the report's findings with the open items: new ones are detected, missing ones
    /// resolved. Only checks that could be read resolve items: a WARN "could not read" does
    /// not close a role item.
    async fn observe(
        &self,
        input: &VerifyInput,
        report: &Report,
        report_seq: u64,
        summary: &mut RunSummary,
    ) -> Result<()> {
        let actor = self.config.actor.as_str();
        let open = self.store.list(Some(&input.client_id))?;
        let now = onboard_core::time::now();
        for f in &report.findings {
            let key = f.key();
            if let Some(mut item) = open.iter().find(|i| i.key == key).cloned() {
                item.last_seen = now.clone();
                self.store.put(&item).await?;
                continue;
            }
            let seq = entry(Action::DriftDetected, Phase::Succeeded, actor, input)
                .with_detail("kind", f.kind())
                .with_detail("key", key.clone())
                .with_detail("detail", f.detail())
                .with_detail("finding", serde_json::to_value(f).unwrap_or(Value::Null))
                .with_detail("report_seq", report_seq)
                .append(&self.audit)
                .await?;
            let item = DriftItem {
                client_id: input.client_id.clone(),
                tenant_id: input.tenant_id.clone(),
                service_id: input.service_id.clone(),
                kind: f.kind().into(),
                key,
                detail: f.detail(),
                first_seen: now.clone(),
                last_seen: now.clone(),
                audit_seq: seq,
            };
            self.store.put(&item).await?;
            summary.detected.push(item);
        }
        let readable = |item: &DriftItem| -> bool {
            let check = match item.kind.as_str() {
                "role" => crate::report::names::DIRECTORY_ROLES,
                "permission" => crate::report::names::TOKEN_ROLES,
                _ => return true,
            };
            report
                .check(check)
                .is_none_or(|c| c.status != crate::report::Status::Warn)
        };
        for item in open {
            let still = report.findings.iter().any(|f| f.key() == item.key);
            if !still && readable(&item) {
                self.resolve(input, &item, "no longer observed", report_seq)
                    .await?;
                summary.resolved.push(item.key.clone());
            }
        }
        Ok(())
    }

    async fn resolve(
        &self,
        input: &VerifyInput,
        item: &DriftItem,
        reason: &str,
        seq: u64,
    ) -> Result<()> {
        entry(
            Action::DriftResolved,
            Phase::Succeeded,
            &self.config.actor,
            input,
        )
        .with_detail("kind", item.kind.clone())
        .with_detail("key", item.key.clone())
        .with_detail("reason", reason)
        .with_detail("detected_seq", item.audit_seq)
        .with_detail("evidence_seq", seq)
        .append(&self.audit)
        .await?;
        self.store.remove(&item.client_id, &item.key).await
    }

    /// Re-grants missing permissions and re-assigns missing roles with the source's admin
    /// token; each change is an `intent` entry first, then its outcome.
    async fn repair(
        &self,
        input: &VerifyInput,
        report: &Report,
        summary: &mut RunSummary,
    ) -> Result<()> {
        let todo: Vec<&Finding> = report.findings.iter().filter(|f| f.repairable()).collect();
        if todo.is_empty() {
            return Ok(());
        }
        let actor = self.config.actor.as_str();
        let Some(token) = self.targets.writer_token(input).await? else {
            for f in todo {
                entry(Action::DriftRepair, Phase::Skipped, actor, input)
                    .with_detail("key", f.key())
                    .with_detail("reason", "repair needs an admin sign-in")
                    .append(&self.audit)
                    .await?;
            }
            return Ok(());
        };
        for f in todo {
            let key = f.key();
            let repair = entry(Action::DriftRepair, Phase::Intent, actor, input)
                .with_detail("key", key.clone())
                .with_detail("change", repair_change(f));
            let intent_seq = repair.append(&self.audit).await?;
            let mut done = repair.with_detail("intent_seq", intent_seq);
            let outcome = self.apply(input, f, token.clone()).await;
            match outcome {
                Ok((assignment_id, request_id)) => {
                    done.phase = Phase::Succeeded;
                    done.graph_request_id = request_id;
                    let seq = done
                        .with_detail("assignment_id", assignment_id)
                        .append(&self.audit)
                        .await?;
                    if let Some(item) = self
                        .store
                        .list(Some(&input.client_id))?
                        .into_iter()
                        .find(|i| i.key == key)
                    {
                        self.resolve(input, &item, "repaired", seq).await?;
                        summary.resolved.push(key.clone());
                    }
                    summary.repaired.push(key);
                }
                Err(e) => {
                    done.phase = Phase::Failed;
                    done.with_error(e).append(&self.audit).await?;
                }
            }
        }
        Ok(())
    }

    /// Makes one repair; returns (assignment id, Graph request id) or the error text.
    async fn apply(
        &self,
        input: &VerifyInput,
        f: &Finding,
        token: SecretString,
    ) -> Result<(String, Option<String>), String> {
        let graph = self.verifier.entra().graph(token);
        let ctx = OpContext::new();
        match f {
            Finding::MissingPermission { api, value } => {
                let res = graph
                    .resource_service_principal(api.app_id(), &ctx)
                    .await
                    .map_err(|e| e.to_string())?
                    .value;
                let role = res
                    .app_role(value)
                    .ok_or_else(|| format!("{} offers no app role {value}", api.key()))?;
                match graph
                    .grant_app_role(&res.id, &input.sp_id, &role.id, &ctx)
                    .await
                {
                    Ok(r) => Ok((r.value.id, r.meta.request_id)),
                    // The finding came from a token or a list that trails a grant made since
                    // (Graph: "replication delays for app role assignments that were recently
                    // granted"): it is in place, and its id is what the repair records.
                    Err(e) if e.is_already_exists() => match graph
                        .find_app_role_grant(&res.id, &input.sp_id, &role.id, &ctx)
                        .await
                    {
                        Ok(Some(a)) => Ok((a.value.id, None)),
                        _ => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                }
            }
            Finding::MissingRole { template_id, .. } => {
                match graph
                    .assign_directory_role(template_id, &input.sp_id, &ctx)
                    .await
                {
                    Ok(r) => Ok((r.value.id, r.meta.request_id)),
                    // Assigned since the list that found it missing was read: in place.
                    Err(e) if e.is_already_exists() => match graph
                        .find_directory_role_assignment(template_id, &input.sp_id, &ctx)
                        .await
                    {
                        Ok(Some(a)) => Ok((a.value.id, None)),
                        _ => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                }
            }
            other => Err(format!("{} is not repairable", other.key())),
        }
    }
}

fn repair_change(f: &Finding) -> String {
    match f {
        Finding::MissingPermission { api, value } => {
            format!("grant app role {value} of {}", api.key())
        }
        Finding::MissingRole { name, template_id } => {
            format!("assign directory role {name} ({template_id})")
        }
        other => other.detail(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::targets::BoxFuture;

    /// No registrations; counts how often a run asked for them.
    struct Counting(Arc<AtomicUsize>);

    impl Targets for Counting {
        fn resolve<'a>(&'a self, t: &'a Target) -> BoxFuture<'a, Result<VerifyInput>> {
            Box::pin(async move { Err(VerifyError::NotFound(t.describe())) })
        }
        fn all(&self) -> BoxFuture<'_, Result<Vec<Target>>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(Vec::new()) })
        }
        fn writer_token<'a>(
            &'a self,
            _: &'a VerifyInput,
        ) -> BoxFuture<'a, Result<Option<SecretString>>> {
            Box::pin(async { Ok(None) })
        }
    }

    // Paused time: no Entra or network IO happens (there are no targets), so the clock is ours.
    #[tokio::test(start_paused = true)]
    async fn the_schedule_runs_every_interval_and_stops_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let signer = audit_log::NoteSigner::new(
            "t.test/audit",
            ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]),
        )
        .unwrap();
        let audit = AuditLog::open(
            audit_log::LogConfig::new(dir.path().join("a"), "t.test/audit"),
            signer,
        )
        .unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let entra = entra_client::EntraClient::new(&entra_client::EntraConfig::default()).unwrap();
        let monitor = Arc::new(DriftMonitor::new(
            Verifier::new(entra),
            Arc::new(Counting(runs.clone())),
            audit,
            DriftStore::new(db.open_tree("drift").unwrap()),
            MonitorConfig::default(),
        ));
        let stop = onboard_core::ShutdownController::default();
        let task = monitor
            .spawn(Duration::from_secs(60), &stop.handle())
            .unwrap();
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            0,
            "the first run waits one interval"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        stop.begin();
        task.await.unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
