//! The audit entry contract, from the flows that write it: one server runs an onboarding,
//! day-two secret and role changes, verification with drift detection and repair, audit reads,
//! an operator's cancel of a second onboarding, an invitation's revocation and a signing-key
//! rotation. Every entry it wrote validates against `docs/audit-entries.schema.json` (the
//! test kit checks each read of the log), and every action of `onboard_core::audit::Action` is
//! written here or named below with the test that writes it, so a new action cannot ship
//! without an entry that was checked against the published schema.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use onboard_core::audit::{Action, AuditEntry, Phase, Scope, Target, TargetKind};
use onboard_proto::v1 as pb;
use onboard_proto::v1::verify_request::Target as VerifyTarget;
use serde_json::Value;
use testkit::server::OPERATOR;
use testkit::server::{AUDITOR, ServerConfigBuilder};
use testkit::sim::users::GLOBAL_ADMIN;
use testkit::sim_server::{SERVICE, SimServer};

/// Actions this flow does not write, with where they are written and checked instead.
const ELSEWHERE: &[(&str, &str)] = &[
    (
        "client_secret.remove",
        "the removal of a secret whose value a crash lost \
         (crates/provision/tests/durability.rs, `client_secret:changed`; entries checked by \
         testkit::engine)",
    ),
    (
        "onboarding.hand_off",
        "a wait for a privileged admin, finished, expired and cancelled \
         (crates/server/tests/hand_off.rs; every entry of those flows checked with \
         testkit::audit::check_schema)",
    ),
    (
        "admin_consent.observed",
        "grants made on Microsoft's admin-consent page for a waiting onboarding \
         (crates/server/tests/hand_off_consent.rs; entries checked with \
         testkit::audit::check_schema)",
    ),
    (
        "app_registration.update",
        "the admin-consent reply address removed when a hand-off ends \
         (crates/server/tests/hand_off_consent.rs; entries checked with \
         testkit::audit::check_schema)",
    ),
    (
        "store.migrate",
        "the MAC migration of release 0.1's records (tests/upgrade/, over the 0.1 fixture; \
         entries checked with testkit::audit::check_schema)",
    ),
    (
        "store.move_key",
        "a key release 0.1 generated into the state store moved out to a key file \
         (tests/upgrade/keys.rs, `onboard keys export` over the 0.1 fixture; entries checked \
         with testkit::audit::check_schema)",
    ),
    (
        "store.reanchor",
        "accepting a rolled-back log (crates/server/tests/integrity.rs, \
         `onboard_server::reanchor`; entry checked with testkit::audit::check_schema)",
    ),
];

/// Polls the log until `pred` holds (the drift scheduler runs every second).
async fn wait_for(env: &SimServer, what: &str, pred: impl Fn(&[Value]) -> bool) -> Result<()> {
    testkit::wait::until_true(what, Duration::from_secs(60), async || {
        Ok(pred(&env.server.entries()?))
    })
    .await
}

fn wrote(entries: &[Value], action: &str) -> bool {
    entries.iter().any(|e| e["action"] == action)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_written_by_a_flow_and_validates_against_the_published_schema() -> Result<()>
{
    // Key files, so the backup below runs (it refuses keys kept in the state store).
    let env = SimServer::start_with(|b: ServerConfigBuilder| {
        b.verification_interval(1)
            .repair_profiles(&["direct-routing"])
            .key_files()
    })
    .await?;

    // The onboarding, as the customer's wizard drives it.
    let first = env.onboarded("direct-routing", "Sbc-Schema").await?;
    let reg = Some(pb::RegistrationRef {
        tenant_id: env.info.tenant_id.clone(),
        client_id: first.done.client_id.clone(),
    });
    let mut onb = env.server.onboarding(Some(OPERATOR)).await?;
    onb.get_onboarding(pb::GetOnboardingRequest {
        onboarding_id: first.onboarding_id.clone(),
        ..Default::default()
    })
    .await?;
    onb.list_onboardings(pb::ListOnboardingsRequest::default())
        .await?;
    let mut watch = onb
        .watch(pb::WatchRequest {
            onboarding_id: first.onboarding_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    while watch.message().await?.is_some() {}

    // A customer who looks at the plan before changing anything.
    let (token, _) = env.invite(None).await?;
    let signed = env.signed_in(&token, GLOBAL_ADMIN).await?;
    env.server
        .onboarding(None)
        .await?
        .plan(pb::PlanRequest {
            onboarding_id: signed.onboarding_id,
            app_name: "Sbc-Looked".into(),
            invitation_token: token,
            ..Default::default()
        })
        .await?;

    // Day two: a fresh admin session, then secrets and roles.
    env.day_two_sign_in().await?;
    let mut creds = env.server.credentials(Some(OPERATOR)).await?;
    creds
        .list_secrets(pb::ListSecretsRequest {
            registration: reg.clone(),
        })
        .await?;
    creds
        .list_grants(pb::ListGrantsRequest {
            registration: reg.clone(),
        })
        .await?;
    creds
        .list_expiring(pb::ListExpiringRequest { horizon_days: 0 })
        .await?;
    // A second secret for the service makes the onboarding's one not current: revoke it.
    creds
        .add_service_secret(pb::AddServiceSecretRequest {
            registration: reg.clone(),
            service_id: SERVICE.into(),
            valid_for: None,
            seal_to: None,
        })
        .await?;
    creds
        .revoke_secret(pb::RevokeSecretRequest {
            registration: reg.clone(),
            key_id: first.done.key_id.clone(),
        })
        .await?;
    let mut rotation = creds
        .rotate_secret(pb::RotateSecretRequest {
            registration: reg.clone(),
            service_id: SERVICE.into(),
            overlap: Some(prost_types::Duration {
                seconds: 0,
                nanos: 0,
            }),
            seal_to: None,
        })
        .await?
        .into_inner();
    let mut rotated_secret = String::new();
    while let Some(e) = rotation.message().await? {
        if let Some(n) = e.new_secret {
            rotated_secret = n.secret;
        }
    }
    ensure!(
        !rotated_secret.is_empty(),
        "the rotation handed over its new secret"
    );

    // Verification; then someone removes a role and a permission in the portal, and the
    // scheduled run detects and repairs both.
    let mut ver = env.server.verification(Some(OPERATOR)).await?;
    ver.verify(pb::VerifyRequest {
        target: Some(VerifyTarget::ServiceId(SERVICE.into())),
    })
    .await?;
    let engine = env.server.app.engine();
    let token = engine
        .admin_session(&first.onboarding_id)?
        .context("admin session")?;
    let sp_id = engine
        .get(&first.onboarding_id)?
        .and_then(|o| o.sp_id)
        .context("sp id")?;
    testkit::portal::tamper(&env.entra_client()?.graph(token), &sp_id).await?;
    wait_for(&env, "drift repaired", |es| wrote(es, "drift.resolved")).await?;
    ver.list_drift(pb::ListDriftRequest::default()).await?;

    // An auditor reads the log.
    let mut audit = env.server.audit(Some(AUDITOR)).await?;
    audit.get_checkpoint(pb::GetCheckpointRequest {}).await?;
    audit
        .list_entries(pb::ListEntriesRequest {
            page_size: 10,
            ..Default::default()
        })
        .await?;

    // A second onboarding (self-rotating: its service principal owns the app) an operator
    // cancels; an invitation revoked before use.
    let second = env
        .onboarded("direct-routing-self-rotating", "Sbc-Undone")
        .await?;
    env.cancel(&second.onboarding_id, "customer asked").await?;
    let (_, unused) = env.invite(None).await?;
    env.revoke(&unused, "sent to the wrong address").await?;
    wait_for(&env, "the cancel's removals", |es| {
        wrote(es, "onboarding.cancel") && wrote(es, "app_registration.delete")
    })
    .await?;

    // A second server, which never saw the first registration, has it attached ("Use App
    // Registration"); its entries are checked against the schema too.
    let other = env.another_server().await?;
    other
        .credentials(Some(OPERATOR))
        .await?
        .attach_registration(pb::AttachRegistrationRequest {
            registration: reg.clone(),
            profile: "direct-routing".into(),
            service_ids: vec!["dr-attached".into()],
            client_secret: rotated_secret,
            ..Default::default()
        })
        .await?;
    let attached = other.entries()?;

    // A signing-key rotation, the entry `onboard audit rotate-key` writes.
    let new = audit_log::NoteSigner::generate(env.server.app.audit().origin())?;
    let record = AuditEntry::new(
        Action::SigningKeyRotate,
        Phase::Succeeded,
        &Scope::actor("operator:schema-test"),
    )
    .with_target(Target::new(
        TargetKind::SigningKey,
        new.verifier().to_string(),
    ));
    env.server
        .app
        .audit()
        .rotate_key(new, record.prepare()?)
        .await?;

    // A backup (`store.backup` intent and outcome), and the entry `onboard restore` appends
    // (`store.restore`; tests/backup/ runs the restore itself).
    testkit::server_helpers::backup(&env.server, "schema test").await??;
    let cp = env.server.app.audit().checkpoint();
    AuditEntry::new(
        Action::StoreRestore,
        Phase::Succeeded,
        &Scope::actor("onboard:operator"),
    )
    .with_detail("reason", "schema test")
    .with_detail("forced", true)
    .with_detail("archive_sha256", "0".repeat(64))
    .with_detail("size", cp.checkpoint.size)
    .with_detail("root", hex::encode(cp.checkpoint.root))
    .with_detail("known_size", cp.checkpoint.size + 1)
    .with_detail("known_root", "")
    .with_detail("known_from", "the head note of DATA_DIR/audit")
    .with_detail("created_at", onboard_core::time::now())
    .append(env.server.app.audit())
    .await?;

    // Every entry validates (checked by `entries`), and every action was written.
    let mut entries = env.server.entries()?;
    entries.extend(attached);
    let seen: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    let elsewhere: BTreeSet<&str> = ELSEWHERE.iter().map(|(a, _)| *a).collect();
    let missing: Vec<&str> = Action::ALL
        .iter()
        .map(|a| a.as_str())
        .filter(|a| !seen.contains(a) && !elsewhere.contains(a))
        .collect();
    ensure!(
        missing.is_empty(),
        "actions no flow here wrote (write them, or name the test that does in ELSEWHERE): \
         {missing:?}"
    );
    // One entry of each action (its outcome when it has one), for the auditors' page's
    // examples: `cargo test -p onboard-server --test audit_schema -- --nocapture`.
    for action in &seen {
        let of = |e: &&Value| e["action"] == *action;
        let pick = entries.iter().filter(of).find(|e| e["phase"] != "intent");
        if let Some(e) = pick.or_else(|| entries.iter().find(of)) {
            println!("example {action}: {e}");
        }
    }
    let stale: Vec<&str> = elsewhere.intersection(&seen).copied().collect();
    ensure!(
        stale.is_empty(),
        "written here after all; drop from ELSEWHERE: {stale:?}"
    );
    ensure!(
        entries
            .iter()
            .all(|e| e["v"] == onboard_core::audit::SCHEMA_VERSION),
        "every new entry carries the current schema version"
    );
    Ok(())
}
