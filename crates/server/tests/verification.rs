//! The Verification service over gRPC against the Entra emulator: who may call it, errors for
//! empty and unknown targets, a real report after a real onboarding (and its audit entry), and
//! scheduled drift detection and repair.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use entra_client::graph::roles::template::TEAMS_ADMINISTRATOR;
use onboard_proto::v1 as pb;
use onboard_proto::v1::verification_client::VerificationClient;
use pb::verify_request::Target;
use secrecy::SecretString;
use serde_json::Value;
use testkit::config::PlatformService;
use testkit::platform::Platform;
use testkit::server::{ADMIN, AUDITOR, Authed, OPERATOR, bad_fields};
use testkit::server_helpers::Refusal;
use testkit::sim_server::SimServer;
use testkit::snapshot::{grants_of, roles_of};
use tonic::Code;

async fn client(env: &SimServer, token: Option<&str>) -> Result<VerificationClient<Authed>> {
    env.server.verification(token).await
}

fn by_service(id: &str) -> pb::VerifyRequest {
    pb::VerifyRequest {
        target: Some(Target::ServiceId(id.into())),
    }
}

fn table(r: &pb::VerifyReport) -> String {
    r.checks
        .iter()
        .map(|c| format!("{} {:?} {}", c.name, c.status(), c.detail))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check<'a>(r: &'a pb::VerifyReport, name: &str) -> Result<&'a pb::Check> {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .with_context(|| format!("no {name} in\n{}", table(r)))
}

/// The open drift items of registration `client_id`.
async fn drift(c: &mut VerificationClient<Authed>, client_id: &str) -> Result<Vec<pb::DriftItem>> {
    let r = pb::ListDriftRequest {
        client_id: client_id.into(),
    };
    Ok(c.list_drift(r).await?.into_inner().items)
}

/// Invitation, sign-in as the Global Administrator, provision; returns (onboarding id, client id).
async fn onboard(env: &SimServer) -> Result<(String, String)> {
    let o = env.onboarded("direct-routing", "Sbc-One").await?;
    Ok((o.onboarding_id, o.done.client_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_is_for_operators_and_names_bad_targets() -> Result<()> {
    let env = SimServer::start().await?;
    for (token, code) in [
        (None, Code::Unauthenticated),
        (Some(AUDITOR), Code::PermissionDenied),
        (Some(ADMIN), Code::PermissionDenied),
    ] {
        let mut c = client(&env, token).await?;
        c.verify(by_service("dr-1")).refused(code, &[]).await?;
        c.list_drift(pb::ListDriftRequest::default())
            .refused(code, &[])
            .await?;
    }
    let mut c = client(&env, Some(OPERATOR)).await?;
    let by_client = |id: &str| pb::VerifyRequest {
        target: Some(Target::ClientId(id.into())),
    };
    // (request, the code, the fields it names, what the message says)
    let cases: [(pb::VerifyRequest, Code, &[&str], &str); 4] = [
        (
            pb::VerifyRequest { target: None },
            Code::InvalidArgument,
            &["target"],
            "",
        ),
        (by_client(""), Code::InvalidArgument, &["client_id"], ""),
        (by_service("dr-9"), Code::NotFound, &[], "dr-9"),
        (
            by_client("00000000-0000-0000-0000-000000000001"),
            Code::NotFound,
            &[],
            "",
        ),
    ];
    for (req, code, fields, text) in cases {
        let s = c.verify(req.clone()).await.err().context("accepted")?;
        ensure!(
            s.code() == code && bad_fields(&s) == fields && s.message().contains(text),
            "{req:?}: {s:?}"
        );
    }
    ensure!(drift(&mut c, "").await?.is_empty());
    // ListDrift's filter: what cannot be a client id is refused for the field (a '/' would
    // match part of another registration's keys; an oversized one, the audit entry).
    for bad in [
        "00000000-0000-0000-0000-000000000001/permission",
        &"a".repeat(70_000),
    ] {
        let r = pb::ListDriftRequest {
            client_id: bad.to_owned(),
        };
        let s = c.list_drift(r).refusal().await?;
        ensure!(
            s.code() == Code::InvalidArgument && bad_fields(&s) == ["client_id"],
            "{s:?}"
        );
    }
    Ok(())
}

/// A service two registrations hold secrets for: Verify by service id does not pick one for
/// the caller; it is FAILED_PRECONDITION naming both, and each verifies by its client id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_two_registrations_asks_for_the_client_id() -> Result<()> {
    let env = SimServer::start().await?;
    let one = env
        .onboarded("direct-routing", "Sbc-One")
        .await?
        .done
        .client_id;
    let two = env
        .onboarded("direct-routing", "Sbc-Two")
        .await?
        .done
        .client_id;
    let mut c = client(&env, Some(OPERATOR)).await?;
    let s = c
        .verify(by_service(testkit::sim_server::SERVICE))
        .refused(Code::FailedPrecondition, &["client_id", &one, &two])
        .await?;
    ensure!(bad_fields(&s).is_empty(), "{s:?}");
    let r = c
        .verify(pb::VerifyRequest {
            target: Some(Target::ClientId(two.clone())),
        })
        .await?
        .into_inner();
    ensure!(r.client_id == two, "{r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_onboarding_verifies_ok_and_the_report_is_audited() -> Result<()> {
    let p = Platform::start("dr-1", true).await?;
    let env =
        SimServer::start_with(|b| Ok(b.platform_service(PlatformService::grpc("dr-1", &p.url()))))
            .await?;
    let (_, client_id) = onboard(&env).await?;
    let mut c = client(&env, Some(OPERATOR)).await?;
    let r = c.verify(by_service("dr-1")).await?.into_inner();
    ensure!(r.client_id == client_id && r.tenant_id == env.info.tenant_id);
    ensure!(r.checks.len() == 8, "{}", table(&r));
    for ch in &r.checks {
        ensure!(ch.status() == pb::CheckStatus::Ok, "{}", table(&r));
    }
    ensure!(r.overall() == pb::CheckStatus::Ok);
    ensure!(r.checked_at.is_some());

    let entries = env.server.entries()?;
    let e = entries
        .get(usize::try_from(r.audit_seq)?)
        .context("the report's entry")?;
    ensure!(
        e["action"] == "verification.report" && e["actor"] == "portal",
        "{e}"
    );
    ensure!(
        e["overall"] == "OK" && e["client_id"] == client_id.as_str(),
        "{e}"
    );
    ensure!(e["trigger"] == "on_demand", "{e}");

    // The platform reports not serving: FAIL, and by client id too (blanks around a pasted
    // id are trimmed for the lookup as for the check).
    p.set("dr-1", false).await;
    let r = c
        .verify(pb::VerifyRequest {
            target: Some(Target::ClientId(format!(" {client_id}\n"))),
        })
        .await?
        .into_inner();
    let ps = check(&r, "platform_status")?;
    ensure!(
        ps.status() == pb::CheckStatus::Fail && ps.detail.contains("NOT_SERVING"),
        "{}",
        table(&r)
    );
    ensure!(r.overall() == pb::CheckStatus::Fail);
    let entries = env.server.entries()?;
    let e = &entries[usize::try_from(r.audit_seq)?];
    ensure!(e["overall"] == "FAIL", "{e}");
    Ok(())
}

/// Removes Teams Administrator and User.Read.All from the app's SP outside Onboard, with the
/// onboarding's stored admin session (the emulator's Global Administrator); returns the SP id.
async fn tamper(env: &SimServer, id: &str) -> Result<String> {
    let engine = env.server.app.engine();
    let token: SecretString = engine.admin_session(id)?.context("admin session")?;
    let sp_id = engine.get(id)?.and_then(|o| o.sp_id).context("sp id")?;
    testkit::portal::tamper(&env.entra_client()?.graph(token), &sp_id).await?;
    Ok(sp_id)
}

const PERMISSION_KEY: &str = "permission/graph/User.Read.All/missing";

fn role_key() -> String {
    format!("role/{TEAMS_ADMINISTRATOR}/missing")
}

/// Waits until `pred` holds for the audit entries (polling; the scheduler runs every second).
async fn wait_for(
    env: &SimServer,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>> {
    testkit::wait::until(what, Duration::from_secs(30), async || {
        let entries = env.server.entries()?;
        let last = entries[entries.len().saturating_sub(12)..].to_vec();
        Ok(testkit::wait::settled(pred(&entries), entries, last))
    })
    .await
}

fn has(entries: &[Value], action: &str, phase: &str, key: &str) -> bool {
    entries
        .iter()
        .any(|e| e["action"] == action && e["phase"] == phase && e["key"] == key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_reports_a_removed_role_and_permission() -> Result<()> {
    let env = SimServer::start_with(|b| Ok(b.verification_interval(1))).await?;
    let (id, client_id) = onboard(&env).await?;
    // A clean registration: scheduled reports, no drift.
    wait_for(&env, "a scheduled report", |es| {
        es.iter()
            .any(|e| e["action"] == "verification.report" && e["trigger"] == "scheduled")
    })
    .await?;
    ensure!(
        !env.server
            .entries()?
            .iter()
            .any(|e| e["action"] == "drift.detected")
    );

    tamper(&env, &id).await?;
    let entries = wait_for(&env, "both drift items", |es| {
        has(es, "drift.detected", "succeeded", PERMISSION_KEY)
            && has(es, "drift.detected", "succeeded", &role_key())
    })
    .await?;
    let e = entries
        .iter()
        .find(|e| e["action"] == "drift.detected" && e["key"] == PERMISSION_KEY)
        .context("entry")?;
    ensure!(
        e["actor"] == onboard_server::DRIFT_ACTOR && e["client_id"] == client_id.as_str(),
        "{e}"
    );
    // Repair is off for this profile: nothing is put back.
    ensure!(!entries.iter().any(|e| e["action"] == "drift.repair"));

    let mut c = client(&env, Some(OPERATOR)).await?;
    let items = drift(&mut c, &client_id).await?;
    let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    ensure!(
        keys.contains(&PERMISSION_KEY) && keys.contains(&role_key().as_str()),
        "{items:#?}"
    );
    ensure!(
        items
            .iter()
            .all(|i| i.first_seen.is_some() && i.audit_seq > 0)
    );
    // Client ids match ignoring case, as Verify matches them.
    let upper = drift(&mut c, &client_id.to_ascii_uppercase()).await?;
    ensure!(upper == items, "{upper:#?}");
    // Detected once, not again on every run.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let n = env
        .server
        .entries()?
        .iter()
        .filter(|e| e["action"] == "drift.detected" && e["key"] == PERMISSION_KEY)
        .count();
    ensure!(n == 1, "detected {n} times");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_repair_enabled_the_role_and_permission_come_back_audited() -> Result<()> {
    let env = SimServer::start_with(|b| {
        Ok(b.verification_interval(1)
            .repair_profiles(&["direct-routing"]))
    })
    .await?;
    let (id, client_id) = onboard(&env).await?;
    let sp_id = tamper(&env, &id).await?;
    let entries = wait_for(&env, "both repairs", |es| {
        has(es, "drift.repair", "succeeded", PERMISSION_KEY)
            && has(es, "drift.repair", "succeeded", &role_key())
    })
    .await?;
    for key in [PERMISSION_KEY.to_owned(), role_key()] {
        ensure!(
            has(&entries, "drift.detected", "succeeded", &key),
            "not detected: {key}"
        );
        ensure!(
            has(&entries, "drift.repair", "intent", &key),
            "no intent: {key}"
        );
        let intent = entries
            .iter()
            .position(|e| {
                e["action"] == "drift.repair" && e["phase"] == "intent" && e["key"] == key.as_str()
            })
            .context("intent")?;
        let done = entries
            .iter()
            .position(|e| {
                e["action"] == "drift.repair"
                    && e["phase"] == "succeeded"
                    && e["key"] == key.as_str()
            })
            .context("outcome")?;
        ensure!(intent < done && entries[done]["intent_seq"] == intent as u64);
        ensure!(entries.iter().any(|e| e["action"] == "drift.resolved"
            && e["key"] == key.as_str()
            && e["reason"] == "repaired"));
    }
    // Entra has them again.
    let snap = env.sim.snapshot();
    let roles = roles_of(&snap, &sp_id).len();
    let grants = grants_of(&snap, &sp_id).len();
    // Three Graph permissions (with self-rotation's Application.ReadWrite.OwnedBy) and the
    // Teams admin API's.
    ensure!(roles == 1 && grants == 4, "roles {roles}, grants {grants}");
    // Nothing left open, and the next on-demand report is clean.
    let mut c = client(&env, Some(OPERATOR)).await?;
    let items = drift(&mut c, &client_id).await?;
    ensure!(items.is_empty(), "{items:#?}");
    let r = c
        .verify(pb::VerifyRequest {
            target: Some(Target::ClientId(client_id)),
        })
        .await?
        .into_inner();
    for name in ["token_roles", "directory_roles"] {
        ensure!(
            check(&r, name)?.status() == pb::CheckStatus::Ok,
            "{}",
            table(&r)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_registration_is_verified_like_a_provisioned_one() -> Result<()> {
    // One server made the registration; a second one, which never saw it, has it attached
    // (the vendor's "Use App Registration" path) and verifies it.
    let (env, onboarding) = SimServer::with_onboarding("direct-routing", "Sbc-Made").await?;
    let done = onboarding.done;
    let other = env.another_server().await?;
    let mut creds = other.credentials(Some(OPERATOR)).await?;
    creds
        .attach_registration(pb::AttachRegistrationRequest {
            registration: Some(pb::RegistrationRef {
                tenant_id: env.info.tenant_id.clone(),
                client_id: done.client_id.clone(),
            }),
            profile: "direct-routing".into(),
            service_ids: vec!["dr-attached".into()],
            client_secret: done.secret.clone(),
            ..Default::default()
        })
        .await?;
    let mut c = other.verification(Some(OPERATOR)).await?;
    let r = c.verify(by_service("dr-attached")).await?.into_inner();
    ensure!(r.client_id == done.client_id, "{}", table(&r));
    for name in [
        "client_credentials",
        "tenant_admin_api_token",
        "token_roles",
    ] {
        ensure!(
            check(&r, name)?.status() == pb::CheckStatus::Ok,
            "{name}: {}",
            table(&r)
        );
    }
    // This server holds no admin session for the tenant: what needs one says so (WARN),
    // nothing FAILs.
    ensure!(
        check(&r, "directory_roles")?.status() == pb::CheckStatus::Warn,
        "{}",
        table(&r)
    );
    ensure!(r.overall() == pb::CheckStatus::Warn, "{}", table(&r));
    let entries = other.entries()?;
    ensure!(
        entries
            .iter()
            .any(|e| e["action"] == "verification.report"
                && e["client_id"] == done.client_id.as_str()),
        "no report entry on the second server"
    );
    other.stop().await?;
    env.server.stop().await
}

/// A secret, a certificate and a federated identity credential added to the app, and a secret
/// added to its service principal, outside Onboard (anyone holding one, or any token the
/// outside issuer gives, signs in as the app): Verify FAILs `app_credentials` naming each;
/// scheduled runs record each as drift (kind `credential`), once; removed, all resolve.
/// Onboard's own secret is never one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_certificate_or_federated_credential_added_outside_onboard_is_drift() -> Result<()>
{
    let env = SimServer::start_with(|b| Ok(b.verification_interval(1))).await?;
    let (id, client_id) = onboard(&env).await?;
    let by_client = || pb::VerifyRequest {
        target: Some(Target::ClientId(client_id.clone())),
    };
    let mut c = client(&env, Some(OPERATOR)).await?;
    let r = c.verify(by_client()).await?.into_inner();
    let ch = check(&r, "app_credentials")?;
    ensure!(ch.status() == pb::CheckStatus::Ok, "{}", table(&r));

    let engine = env.server.app.engine();
    let token: SecretString = engine.admin_session(&id)?.context("admin session")?;
    let portal = env.entra_client()?.graph(token.clone());
    let (secret_key, _) = testkit::portal::add_secret(&portal, &client_id).await?;
    let cert_key = testkit::portal::set_certificate(&portal, &client_id, "CN=elsewhere").await?;
    let sp_id = engine.get(&id)?.and_then(|o| o.sp_id).context("sp id")?;
    let (sp_key, sp_secret) = testkit::portal::add_principal_secret(&portal, &sp_id).await?;
    let fic_id =
        testkit::portal::add_federated_credential(&env.sim, &token, &client_id, "from-ci").await?;
    // It really signs in as the app: the STS takes the principal's secrets too.
    let client = env.entra_client()?;
    let tenant = &env.info.tenant_id;
    ensure!(testkit::sim::authenticates(&client, tenant, &client_id, &sp_secret).await);
    let r = c.verify(by_client()).await?.into_inner();
    let ch = check(&r, "app_credentials")?;
    ensure!(
        ch.status() == pb::CheckStatus::Fail
            && ch.detail.contains(&secret_key)
            && ch.detail.contains(&cert_key)
            && ch.detail.contains("CN=elsewhere")
            && ch.detail.contains(&format!(
                "service principal secret \"on the principal\" (key {sp_key})"
            ))
            && ch.detail.contains(&format!(
                "federated identity credential \"from-ci (issuer https://token.actions.githubusercontent.com, subject repo:elsewhere/deploy:ref:refs/heads/main)\" (key {fic_id})"
            )),
        "{}",
        table(&r)
    );
    let secret_item = format!("credential/{secret_key}/foreign");
    let cert_item = format!("credential/{cert_key}/foreign");
    let sp_item = format!("credential/{sp_key}/foreign");
    let fic_item = format!("credential/{fic_id}/foreign");
    let entries = wait_for(&env, "the four credentials as drift", |es| {
        has(es, "drift.detected", "succeeded", &secret_item)
            && has(es, "drift.detected", "succeeded", &cert_item)
            && has(es, "drift.detected", "succeeded", &sp_item)
            && has(es, "drift.detected", "succeeded", &fic_item)
    })
    .await?;
    let e = entries
        .iter()
        .find(|e| e["action"] == "drift.detected" && e["key"] == secret_item.as_str())
        .context("entry")?;
    ensure!(
        e["kind"] == "credential" && e["client_id"] == client_id.as_str(),
        "{e}"
    );
    let items = drift(&mut c, &client_id).await?;
    ensure!(
        items.len() == 4,
        "only the four foreign credentials: {items:#?}"
    );
    // Nothing is removed automatically, and nothing is repaired.
    ensure!(!entries.iter().any(|e| e["action"] == "drift.repair"));

    testkit::portal::remove_secret(&portal, &client_id, &secret_key).await?;
    testkit::portal::set_certificate(&portal, &client_id, "").await?;
    testkit::portal::remove_principal_secret(&portal, &sp_id, &sp_key).await?;
    testkit::portal::remove_federated_credential(&env.sim, &token, &client_id, &fic_id).await?;
    wait_for(&env, "all four resolved", |es| {
        has(es, "drift.resolved", "succeeded", &secret_item)
            && has(es, "drift.resolved", "succeeded", &cert_item)
            && has(es, "drift.resolved", "succeeded", &sp_item)
            && has(es, "drift.resolved", "succeeded", &fic_item)
    })
    .await?;
    ensure!(drift(&mut c, &client_id).await?.is_empty());
    let r = c.verify(by_client()).await?.into_inner();
    let ch = check(&r, "app_credentials")?;
    ensure!(ch.status() == pb::CheckStatus::Ok, "{}", table(&r));
    env.stop().await
}
