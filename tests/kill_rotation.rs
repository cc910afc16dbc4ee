//! `onboard serve` is SIGKILLed at random moments of RotateSecret and restarted: after every
//! kill the service's current secret (as the stopped server's state holds it) still gets a
//! token from the emulator, every rotation converges to one new current secret, and each old
//! secret is removed exactly once.
//!
//! Rounds: `ONBOARD_KILL_ROUNDS` (default 6); seed: `ONBOARD_KILL_SEED` (printed).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use credentials::RegistrationRef;
use entra_client::OpContext;
use entra_sim::{Faults, Sim};
use onboard_proto::v1 as pb;
use onboard_proto::v1::credentials_client::CredentialsClient;
use testkit::config::OPERATOR;
use testkit::onboard_binary;
use testkit::process::{ServerFiles, kill_plan};
use testkit::server::{Authed, with_token};
use testkit::sim::{GRAPH_DEFAULT, calm, entra_client, users::GLOBAL_ADMIN};
use testkit::snapshot::apps_named;
use testkit::wizard::{invite, onboard_timed, signed_in};
use tonic::transport::Channel;

const SERVICE: &str = "dr-rot";

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

/// With the server stopped: the service's current secret as its state holds it gets a
/// client-credentials token (the "never without a working secret" promise).
async fn current_secret_works(
    files: &ServerFiles,
    sim: &Sim,
    reg: &RegistrationRef,
) -> Result<String> {
    let config = onboard_server::Config::load(&files.config)?;
    let app = tokio::task::spawn_blocking(move || onboard_server::App::open(config)).await??;
    let (stored, value) = app.credentials().current_secret(reg, SERVICE)?;
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
    Ok(stored.key_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_rotation_never_leaves_the_service_without_a_working_secret() -> Result<()> {
    let (rounds, mut rng) = kill_plan(6);

    let sim = testkit::sim::start(calm()).await?;
    let onboard = onboard_binary!();
    let files = ServerFiles::new(&sim)?;
    let log = files.log.clone();
    let mut server = onboard.serve(&files).await?;
    let ch = server.channel().await?;
    onboard_timed(ch.clone(), &sim, SERVICE, "Rot-App").await?;
    // Day-two changes act as a freshly signed-in admin ("Reinitiate Authentication Flow").
    let (token, _) = invite(ch.clone(), SERVICE, "direct-routing", None).await?;
    signed_in(ch.clone(), &sim, &token, GLOBAL_ADMIN).await?;
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
    // Each Entra call takes 40 ms, so kills land inside the rotation's stages.
    sim.set_faults(Faults {
        latency_ms: 40,
        device_code_interval_s: Some(1),
        ..Faults::default()
    });

    let mut old_keys = Vec::new();
    for round in 0..rounds {
        let before: Vec<pb::SecretInfo> = secrets(server.channel().await?, &reg).await?;
        let old = before
            .iter()
            .find(|s| s.current)
            .context("no current secret")?
            .key_id
            .clone();
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
        println!("round {round}: killed after {delay:?} at {stages:?}");
        let working = current_secret_works(&files, &sim, &rref)
            .await
            .with_context(|| format!("round {round} after the kill"))?;
        ensure!(
            working == old || !before.iter().any(|s| s.key_id == working),
            "round {round}: current secret {working} is neither the old one nor a new one"
        );
        server = onboard.serve(&files).await?;
        // The restarted server resumes the rotation (or it had finished): one current secret,
        // not the old one, and the old one gone.
        let start = tokio::time::Instant::now();
        let end = start + Duration::from_secs(60);
        let mut asked_again = false;
        loop {
            let now = secrets(server.channel().await?, &reg).await?;
            let current: Vec<&pb::SecretInfo> = now.iter().filter(|s| s.current).collect();
            if now.len() == 1 && current.len() == 1 && current[0].key_id != old {
                break;
            }
            // Killed before the rotation was recorded: nothing to resume, the old secret is
            // untouched, and the operator (whose call failed) asks again.
            let untouched = now.len() == 1 && current.len() == 1 && current[0].key_id == old;
            if untouched && !asked_again && start.elapsed() > Duration::from_secs(3) {
                asked_again = true;
                println!("round {round}: nothing was recorded; rotating again");
                let mut again = credentials(server.channel().await?)
                    .rotate_secret(rotate(&reg))
                    .await?
                    .into_inner();
                while again.message().await?.is_some() {}
            }
            if tokio::time::Instant::now() > end {
                anyhow::bail!(
                    "round {round}: rotation did not converge: {now:#?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        old_keys.push(old);
    }

    server.terminate()?;
    current_secret_works(&files, &sim, &rref).await?;
    // Each old secret was removed exactly once: one successful removal in the audit log, and
    // the emulator served exactly as many successful removePassword calls as rounds.
    let audit = audit_log::AuditLog::open_read_only(
        files.data_dir().join("audit"),
        audit_log::StartupCheck::Full,
    )?;
    let mut removed: BTreeMap<String, usize> = BTreeMap::new();
    for seq in 0..audit.size() {
        let e: serde_json::Value = serde_json::from_slice(&audit.entry(seq)?)?;
        if e["action"] == "password_credential.delete" && e["phase"] == "succeeded" {
            let key = e["target"]["id"].as_str().unwrap_or_default().to_owned();
            *removed.entry(key).or_default() += 1;
        }
    }
    for k in &old_keys {
        ensure!(
            removed.get(k) == Some(&1),
            "old secret {k} removed {:?} times",
            removed.get(k)
        );
    }
    ensure!(
        sim.calls("POST removePassword") == rounds,
        "{} removePassword calls for {rounds} rotations",
        sim.calls("POST removePassword")
    );
    drop(audit);
    onboard.export_and_verify(&files)
}
