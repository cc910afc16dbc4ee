//! `onboard serve` is SIGKILLed at random moments of RotateSecret and restarted: after every
//! kill the service's current secret (as the stopped server's state holds it) still gets a
//! token from the emulator, every rotation converges to one new current secret (one killed
//! before its hand-over once the operator asks again: the new secret is made current only for
//! a caller), and at the end:
//! every secret was removed at most once and every removal is in the audit log, the service has
//! exactly one secret in Entra (the current one, which works), and no orphan is left.
//!
//! An orphan is a rotation's new secret that Entra created but whose value the killed process
//! never stored (a kill between `addPassword` and the record): the restarted server finds it by
//! its marker, removes it (audited) and adds another, so a run has one `removePassword` per
//! rotation plus one per orphan.
//!
//! Rounds: `ONBOARD_KILL_ROUNDS` (default 6); seed: `ONBOARD_KILL_SEED` (printed).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use credentials::{RegistrationRef, RotationState};
use entra_client::OpContext;
use entra_sim::{Faults, Sim};
use onboard_proto::v1 as pb;
use onboard_proto::v1::credentials_client::CredentialsClient;
use testkit::child::replay_plan;
use testkit::config::OPERATOR;
use testkit::onboard_binary;
use testkit::process::ServerFiles;
use testkit::server::{Authed, with_token};
use testkit::server_helpers::rotate_when_free;
use testkit::sim::{GRAPH_DEFAULT, calm, entra_client};
use testkit::snapshot::apps_named;
use testkit::wizard::{day_two_sign_in, onboard_timed};
use tonic::transport::Channel;

const SERVICE: &str = "dr-rot";

/// What the restarted server logs when it removes a secret whose value was lost.
const LOST_VALUE: &str = "new secret's value was lost in a crash";

/// A Credentials client presenting the operator's token.
fn credentials(ch: Channel) -> CredentialsClient<Authed> {
    CredentialsClient::new(with_token(ch, Some(OPERATOR)))
}

/// RotateSecret for the service with a 1 s overlap.
fn rotate(reg: &pb::RegistrationRef) -> pb::RotateSecretRequest {
    pb::RotateSecretRequest {
        registration: Some(reg.clone()),
        service_id: SERVICE.into(),
        overlap: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        seal_to: None,
    }
}

/// The service's secrets as ListSecrets reports them.
async fn secrets(ch: Channel, reg: &pb::RegistrationRef) -> Result<Vec<pb::SecretInfo>> {
    Ok(credentials(ch)
        .list_secrets(pb::ListSecretsRequest {
            registration: Some(reg.clone()),
        })
        .await?
        .into_inner()
        .secrets
        .into_iter()
        .filter(|s| s.service_id == SERVICE)
        .collect())
}

/// The stopped server's state, read from its files.
struct Stopped {
    /// Key id of the service's current secret, which got a token.
    working: String,
    /// The rotation the state holds (the restarted server resumes it), if any.
    pending: Option<RotationState>,
}

/// With the server stopped: the service's current secret as its state holds it gets a
/// client-credentials token (the "never without a working secret" promise), and whether a
/// rotation is recorded.
async fn stopped_state(files: &ServerFiles, sim: &Sim, reg: &RegistrationRef) -> Result<Stopped> {
    let config = onboard_server::Config::load(&files.config)?;
    let app = tokio::task::spawn_blocking(move || onboard_server::App::open(config)).await??;
    let (stored, value) = app.credentials().current_secret(reg, SERVICE)?;
    let pending = app
        .credentials()
        .registration(reg)?
        .rotations
        .get(SERVICE)
        .cloned();
    let closing = app.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    drop(app);
    entra_client(sim)?
        .sts()
        .client_credentials(
            &reg.tenant_id,
            &reg.client_id,
            &value,
            GRAPH_DEFAULT,
            &OpContext::new(),
        )
        .await
        .with_context(|| format!("the current secret {} does not authenticate", stored.key_id))?;
    Ok(Stopped {
        working: stored.key_id.to_ascii_lowercase(),
        pending,
    })
}

/// Key ids (lower case) and display names of the app's secrets in the emulator.
fn entra_secrets(sim: &Sim, client_id: &str) -> Result<Vec<(String, String)>> {
    let snap = sim.snapshot();
    let app = snap["applications"]
        .as_array()
        .context("applications")?
        .iter()
        .find(|a| a["app_id"] == client_id)
        .context("the app is gone")?;
    Ok(app["passwords"]
        .as_array()
        .context("passwords")?
        .iter()
        .map(|p| {
            (
                p["key_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                p["display_name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// Per key id (lower case): how many entries of `action` in each phase the audit log holds.
#[derive(Default)]
struct Audited(BTreeMap<String, BTreeMap<String, usize>>);

impl Audited {
    fn read(files: &ServerFiles, action: &str) -> Result<Self> {
        let audit = audit_log::AuditLog::open_read_only(
            files.data_dir().join("audit"),
            audit_log::StartupCheck::Full,
        )?;
        let mut out = Audited::default();
        for seq in 0..audit.size() {
            let e: serde_json::Value = serde_json::from_slice(&audit.entry(seq)?)?;
            // A hand-over to a caller (it names its `delivery`) is not a secret made current.
            if e["action"] == action && e["delivery"].is_null() {
                let key = e["target"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let phase = e["phase"].as_str().unwrap_or_default().to_owned();
                *out.0.entry(key).or_default().entry(phase).or_default() += 1;
            }
        }
        Ok(out)
    }

    fn count(&self, key: &str, phase: &str) -> usize {
        self.0
            .get(key)
            .and_then(|m| m.get(phase))
            .copied()
            .unwrap_or(0)
    }

    fn keys(&self) -> BTreeSet<String> {
        self.0.keys().cloned().collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_rotation_never_leaves_the_service_without_a_working_secret() -> Result<()> {
    let (rounds, mut rng) = replay_plan("ONBOARD_KILL", 6);

    let sim = testkit::sim::start(calm()).await?;
    let onboard = onboard_binary!();
    let files = ServerFiles::new(&sim)?;
    let log = files.log.clone();
    let mut server = onboard.serve(&files).await?;
    let ch = server.channel().await?;
    onboard_timed(ch.clone(), &sim, SERVICE, "Rot-App").await?;
    // Day-two changes act as a freshly signed-in admin ("Reinitiate Authentication Flow").
    day_two_sign_in(ch.clone(), &sim, SERVICE).await?;
    let snap = sim.snapshot();
    let client_id = apps_named(&snap, "Rot-App")
        .first()
        .and_then(|a| a["app_id"].as_str())
        .context("Rot-App")?
        .to_owned();
    let reg = pb::RegistrationRef {
        tenant_id: sim.info().tenant_id,
        client_id: client_id.clone(),
    };
    let rref = RegistrationRef::new(&reg.tenant_id, &reg.client_id);
    let secrets_at_start = entra_secrets(&sim, &client_id)?.len() as u64;
    let adds_at_start = sim.calls("POST addPassword");
    let removes_at_start = sim.calls("POST removePassword");
    // Each Entra call takes 40 ms, so kills land inside the rotation's stages.
    sim.set_faults(Faults {
        latency_ms: 40,
        device_code_interval_s: Some(1),
        ..Faults::default()
    });

    let mut old_keys = BTreeSet::new();
    for round in 0..rounds {
        let before: Vec<pb::SecretInfo> = secrets(server.channel().await?, &reg).await?;
        let old = before
            .iter()
            .find(|s| s.current)
            .context("no current secret")?
            .key_id
            .to_ascii_lowercase();
        let mut stream = credentials(server.channel().await?)
            .rotate_secret(rotate(&reg))
            .await?
            .into_inner();
        let delay = Duration::from_millis(rng.below(1100));
        let mut stages = Vec::new();
        let _ = tokio::time::timeout(delay, async {
            while let Ok(Some(e)) = stream.message().await {
                stages.push(format!("{}{}", e.stage, if e.done { "✓" } else { "…" }));
            }
        })
        .await;
        drop(stream);
        server.kill9()?;
        let stopped = stopped_state(&files, &sim, &rref)
            .await
            .with_context(|| format!("round {round} after the kill"))?;
        let working = &stopped.working;
        ensure!(
            *working == old
                || !before
                    .iter()
                    .any(|s| s.key_id.eq_ignore_ascii_case(working)),
            "round {round}: current secret {working} is neither the old one nor a new one"
        );
        // A secret Entra made under the rotation's marker whose value is not stored is an
        // orphan (printed for the record; the end checks hold whether or not one appears).
        let orphan = stopped.pending.as_ref().and_then(|p| {
            let sim_secrets = entra_secrets(&sim, &client_id).ok()?;
            sim_secrets
                .into_iter()
                .find(|(k, name)| *name == p.marker && p.new_key.as_deref() != Some(k.as_str()))
                .map(|(k, _)| k)
        });
        println!(
            "round {round}: killed after {delay:?} at {stages:?}; recorded: {:?}; orphan in Entra: {orphan:?}",
            stopped.pending.as_ref().map(|p| p.stage)
        );
        server = onboard.serve(&files).await?;
        match &stopped.pending {
            // Made current before the kill: the restarted server finishes it.
            Some(p) if p.handed_over() => {}
            // Finished before the kill.
            None if *working != old => {}
            // Recorded before the hand-over (the restarted server takes it up to there and
            // waits for a caller), or killed before anything was recorded: the operator, whose
            // call broke, asks again; that call resumes the rotation or starts it.
            _ => {
                println!("round {round}: rotating again");
                let mut c = credentials(server.channel().await?);
                rotate_when_free(&mut c, &rotate(&reg), Duration::from_secs(120)).await?;
            }
        }
        // One current secret, not the old one, and the old one gone.
        let what = format!("round {round}: one current secret, not the old one");
        let converged = testkit::wait::until(&what, Duration::from_secs(120), async || {
            let now = secrets(server.channel().await?, &reg).await?;
            let current: Vec<&pb::SecretInfo> = now.iter().filter(|s| s.current).collect();
            let one_new = now.len() == 1
                && current.len() == 1
                && !current[0].key_id.eq_ignore_ascii_case(&old);
            Ok(testkit::wait::settled(one_new, (), now))
        })
        .await;
        if let Err(e) = converged {
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow::bail!("{e}\n{server_log}");
        }
        old_keys.insert(old);
    }

    server.terminate()?;
    let current = stopped_state(&files, &sim, &rref).await?.working;
    // No orphan left: Entra holds exactly the service's current secret, which works.
    let left = entra_secrets(&sim, &client_id)?;
    ensure!(
        left.len() == 1 && left[0].0 == current,
        "Entra holds {left:?}; the current secret is {current}"
    );
    let deletes = Audited::read(&files, "password_credential.delete")?;
    let handed_over = Audited::read(&files, "secret.hand_over")?;
    // Every removal is audited (its intent precedes the call) and no secret was removed
    // twice: the emulator's successful removePassword calls are exactly the keys with a
    // removal intent, and no key has two successful removals.
    let removed = deletes.keys();
    let removes = sim.calls("POST removePassword") - removes_at_start;
    ensure!(
        removes == removed.len() as u64,
        "{removes} removePassword calls for {} audited removals: {removed:?}",
        removed.len()
    );
    for k in &removed {
        ensure!(
            deletes.count(k, "intent") >= 1,
            "{k}: removed without an intent"
        );
        ensure!(
            deletes.count(k, "succeeded") <= 1,
            "{k} removed {} times",
            deletes.count(k, "succeeded")
        );
    }
    ensure!(
        !removed.contains(&current),
        "the current secret {current} was removed"
    );
    ensure!(
        handed_over.count(&current, "succeeded") == 1,
        "the current secret {current} was never handed over"
    );
    // Each rotation removed its old secret.
    let missing: Vec<_> = old_keys.difference(&removed).collect();
    ensure!(missing.is_empty(), "old secrets never removed: {missing:?}");
    // Anything else removed is an orphan: a new secret that was never handed over, whose
    // removal the restarted server logged and audited as succeeded.
    let orphans: BTreeSet<_> = removed.difference(&old_keys).cloned().collect();
    let text = std::fs::read_to_string(&log)?;
    for k in &orphans {
        ensure!(
            handed_over.count(k, "succeeded") == 0,
            "orphan {k} was handed over"
        );
        ensure!(
            deletes.count(k, "succeeded") == 1,
            "orphan {k}: removal not audited as done"
        );
        ensure!(
            text.lines()
                .any(|l| l.contains(LOST_VALUE) && l.to_ascii_lowercase().contains(k)),
            "orphan {k} removed but not as a lost value:\n{text}"
        );
    }
    ensure!(
        text.matches(LOST_VALUE).count() == orphans.len(),
        "{} lost-value removals logged for {} orphans:\n{text}",
        text.matches(LOST_VALUE).count(),
        orphans.len()
    );
    // Every secret Entra ever made for the service is gone but the current one.
    let adds = sim.calls("POST addPassword") - adds_at_start;
    ensure!(
        removes == secrets_at_start + adds - 1,
        "{removes} removals for {secrets_at_start} + {adds} secrets, one left"
    );
    ensure!(
        removes == rounds + orphans.len() as u64,
        "{removes} removePassword calls for {rounds} rotations and {} orphans",
        orphans.len()
    );
    println!(
        "{rounds} rotations, {} orphans removed, {removes} removePassword calls",
        orphans.len()
    );
    onboard.export_and_verify(&files)
}
