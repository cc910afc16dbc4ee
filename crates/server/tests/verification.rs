//! The Verification service over gRPC against the Entra emulator: who may call it, errors for
//! empty and unknown targets, a real report after a real onboarding (and its audit entry), and
//! scheduled drift detection and repair.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::sim::{self, completed};
use common::{ADMIN, AUDITOR, Authed, Bearer, OPERATOR, bad_fields};
use entra_client::graph::roles::template::TEAMS_ADMINISTRATOR;
use entra_client::{EntraClient, EntraConfig, MICROSOFT_GRAPH_APP_ID, OpContext};
use onboard_proto::v1 as pb;
use onboard_proto::v1::verification_client::VerificationClient;
use pb::verify_request::Target;
use secrecy::SecretString;
use serde_json::Value;
use tonic::Code;

/// A platform service answering gRPC health for `dr-1`.
struct Platform {
    addr: SocketAddr,
    reporter: tonic_health::server::HealthReporter,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn platform() -> Result<Platform> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("dr-1", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    Ok(Platform {
        addr,
        reporter,
        _stop: stop,
    })
}

fn platform_config(p: &Platform) -> String {
    format!(
        "[[platform.services]]\nid = \"dr-1\"\ngrpc_health = \"http://{}\"\ntimeout_ms = 3000\n",
        p.addr
    )
}

async fn client(env: &sim::Env, token: Option<&str>) -> Result<VerificationClient<Authed>> {
    Ok(VerificationClient::with_interceptor(
        env.server.channel().await?,
        Bearer::new(token),
    ))
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

/// Invitation, sign-in as the Global Administrator, provision; returns (onboarding id, client id).
async fn onboard(env: &sim::Env) -> Result<(String, String)> {
    let (id, events) = env.onboarded("direct-routing", "Sbc-One").await?;
    Ok((id, completed(&events)?.client_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_is_for_operators_and_names_bad_targets() -> Result<()> {
    let env = sim::start().await?;
    for (token, code) in [
        (None, Code::Unauthenticated),
        (Some(AUDITOR), Code::PermissionDenied),
        (Some(ADMIN), Code::PermissionDenied),
    ] {
        let s = client(&env, token)
            .await?
            .verify(by_service("dr-1"))
            .await
            .err()
            .context("refused")?;
        ensure!(s.code() == code, "{token:?}: {s:?}");
        let s = client(&env, token)
            .await?
            .list_drift(pb::ListDriftRequest::default())
            .await
            .err()
            .context("refused")?;
        ensure!(s.code() == code, "{token:?}: {s:?}");
    }
    let mut c = client(&env, Some(OPERATOR)).await?;
    let s = c
        .verify(pb::VerifyRequest { target: None })
        .await
        .err()
        .context("no target")?;
    ensure!(
        s.code() == Code::InvalidArgument && bad_fields(&s) == ["target"],
        "{s:?}"
    );
    let s = c
        .verify(pb::VerifyRequest {
            target: Some(Target::ClientId(String::new())),
        })
        .await
        .err()
        .context("empty")?;
    ensure!(
        s.code() == Code::InvalidArgument && bad_fields(&s) == ["client_id"],
        "{s:?}"
    );
    let s = c
        .verify(by_service("dr-9"))
        .await
        .err()
        .context("unknown")?;
    ensure!(
        s.code() == Code::NotFound && s.message().contains("dr-9"),
        "{s:?}"
    );
    let s = c
        .verify(pb::VerifyRequest {
            target: Some(Target::ClientId(
                "00000000-0000-0000-0000-000000000001".into(),
            )),
        })
        .await
        .err()
        .context("unknown")?;
    ensure!(s.code() == Code::NotFound, "{s:?}");
    let drift = c
        .list_drift(pb::ListDriftRequest::default())
        .await?
        .into_inner();
    ensure!(drift.items.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_onboarding_verifies_ok_and_the_report_is_audited() -> Result<()> {
    let p = platform().await?;
    let env = sim::start_with(&platform_config(&p)).await?;
    let (_, client_id) = onboard(&env).await?;
    let mut c = client(&env, Some(OPERATOR)).await?;
    let r = c.verify(by_service("dr-1")).await?.into_inner();
    ensure!(r.client_id == client_id && r.tenant_id == env.info.tenant_id);
    ensure!(r.checks.len() == 7, "{}", table(&r));
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

    // The platform reports not serving: FAIL, and by client id too.
    p.reporter
        .set_service_status("dr-1", tonic_health::ServingStatus::NotServing)
        .await;
    let r = c
        .verify(pb::VerifyRequest {
            target: Some(Target::ClientId(client_id.clone())),
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

/// The stored admin session of onboarding `id`, as the emulator's Global Administrator.
fn admin_graph(env: &sim::Env, id: &str) -> Result<entra_client::GraphClient> {
    let token: SecretString = env
        .server
        .app
        .engine()
        .admin_session(id)?
        .context("admin session")?;
    let ca = env.server.dir.path().join("sim-ca.pem");
    let cfg = EntraConfig::with_bases(env.sim.base_url(), env.sim.base_url())
        .trust_pem(std::fs::read(ca)?);
    Ok(EntraClient::new(&cfg)?.graph(token))
}

/// Removes Teams Administrator and User.Read.All from the app's SP, outside Onboard.
async fn tamper(env: &sim::Env, id: &str) -> Result<String> {
    let g = admin_graph(env, id)?;
    let ctx = OpContext::new();
    let sp_id = env
        .server
        .app
        .engine()
        .get(id)?
        .and_then(|o| o.sp_id)
        .context("sp id")?;
    let roles = g.list_directory_role_assignments(&sp_id, &ctx).await?.value;
    let role = roles
        .iter()
        .find(|a| a.role_definition_id == TEAMS_ADMINISTRATOR)
        .context("role assignment")?;
    g.remove_directory_role_assignment(&role.id, &ctx).await?;
    let graph_sp = g
        .resource_service_principal(MICROSOFT_GRAPH_APP_ID, &ctx)
        .await?
        .value;
    let app_role = graph_sp.app_role("User.Read.All").context("app role")?;
    let grants = g.list_app_role_assignments(&sp_id, &ctx).await?.value;
    let grant = grants
        .iter()
        .find(|a| a.app_role_id == app_role.id)
        .context("grant")?;
    g.revoke_app_role(&graph_sp.id, &grant.id, &ctx).await?;
    Ok(sp_id)
}

const PERMISSION_KEY: &str = "permission/graph/User.Read.All/missing";

fn role_key() -> String {
    format!("role/{TEAMS_ADMINISTRATOR}/missing")
}

/// Waits until `pred` holds for the audit entries (polling; the scheduler runs every second).
async fn wait_for(
    env: &sim::Env,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let entries = env.server.entries()?;
        if pred(&entries) {
            return Ok(entries);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "timed out waiting for {what}; entries: {:#?}",
                &entries[entries.len().saturating_sub(12)..]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn has(entries: &[Value], action: &str, phase: &str, key: &str) -> bool {
    entries
        .iter()
        .any(|e| e["action"] == action && e["phase"] == phase && e["key"] == key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_reports_a_removed_role_and_permission() -> Result<()> {
    let env = sim::start_with("[verification]\ninterval_secs = 1\n").await?;
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
    let items = c
        .list_drift(pb::ListDriftRequest {
            client_id: client_id.clone(),
        })
        .await?
        .into_inner()
        .items;
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
    let env = sim::start_with(
        "[verification]\ninterval_secs = 1\nrepair_profiles = [\"direct-routing\"]\n",
    )
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
    let roles = snap["role_assignments"]
        .as_array()
        .context("roles")?
        .iter()
        .filter(|a| a["principal_id"] == sp_id.as_str())
        .count();
    let grants = snap["app_role_assignments"]
        .as_array()
        .context("grants")?
        .iter()
        .filter(|a| a["principal_id"] == sp_id.as_str())
        .count();
    ensure!(roles == 1 && grants == 3, "roles {roles}, grants {grants}");
    // Nothing left open, and the next on-demand report is clean.
    let mut c = client(&env, Some(OPERATOR)).await?;
    let items = c
        .list_drift(pb::ListDriftRequest {
            client_id: client_id.clone(),
        })
        .await?
        .into_inner()
        .items;
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
    let env = sim::start().await?;
    let done = completed(&env.onboarded("direct-routing", "Sbc-Made").await?.1)?;
    let other = env.another_server().await?;
    let mut creds = onboard_proto::v1::credentials_client::CredentialsClient::with_interceptor(
        other.channel().await?,
        Bearer::new(Some(OPERATOR)),
    );
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
    let mut c =
        VerificationClient::with_interceptor(other.channel().await?, Bearer::new(Some(OPERATOR)));
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
