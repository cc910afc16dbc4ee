//! Every check against the Entra emulator: all OK after a real onboarding, then each FAIL case
//! (wrong secret, missing role, missing permission, platform not serving or unreachable,
//! temporary app still present, secret near expiry) and the WARNs that say what could not be
//! read.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use secrecy::SecretString;
use verifier::report::names;
use verifier::{Finding, Probe, Report, Status, Verifier};

use entra_client::graph::roles::template::TEAMS_ADMINISTRATOR;
use testkit::engine::{EngineEnv, Onboarded};
use testkit::platform::{Platform, grpc_endpoint, status_page, verify_input};
use testkit::portal;
use testkit::sim::{TOKEN_APP, users};

/// The platform service's id, also its gRPC health service name.
const SERVICE: &str = "dr-1";

/// A calm emulator and one completed onboarding by the Global Administrator.
async fn onboarded() -> Result<(EngineEnv, Onboarded)> {
    EngineEnv::with_onboarding("ob-1", "lp-dr1").await
}

/// `v`'s report on `o`, whose platform is the gRPC health service `service` at `addr`.
async fn verify_grpc(v: &Verifier, o: &Onboarded, addr: SocketAddr, service: &str) -> Report {
    v.verify(&verify_input(
        o,
        SERVICE,
        vec![grpc_endpoint(addr, service)],
    ))
    .await
}

fn status(r: &Report, name: &str) -> Result<(Status, String)> {
    let c = r
        .check(name)
        .with_context(|| format!("no {name} check in {r:#?}"))?;
    Ok((c.status, c.detail.clone()))
}

/// Check `name` of `r` is WARN (not checked, or needing attention) and its detail says `says`.
fn warns(r: &Report, name: &str, says: &str) -> Result<()> {
    let (s, d) = status(r, name)?;
    anyhow::ensure!(
        s == Status::Warn && d.contains(says),
        "{name}: {}",
        table(r)
    );
    Ok(())
}

fn table(r: &Report) -> String {
    r.checks
        .iter()
        .map(|c| format!("{} {} {}", c.name, c.status.as_str(), c.detail))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_onboarding_is_all_ok_and_the_report_is_an_audit_entry() -> Result<()> {
    let (env, o) = onboarded().await?;
    let platform = Platform::start(SERVICE, true).await?;
    let v = Verifier::new(env.client.clone());
    let r = verify_grpc(&v, &o, platform.addr, SERVICE).await;
    let names_in_order: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names_in_order,
        [
            names::PLATFORM_STATUS,
            names::CLIENT_CREDENTIALS,
            names::TENANT_ADMIN_API_TOKEN,
            names::TOKEN_ROLES,
            names::DIRECTORY_ROLES,
            names::SECRET_EXPIRY,
            names::TEMPORARY_APP_REMOVED
        ]
    );
    for c in &r.checks {
        assert_eq!(c.status, Status::Ok, "{}", table(&r));
    }
    assert_eq!(r.overall(), Status::Ok);
    assert!(r.findings.is_empty());
    assert!(
        status(&r, names::TOKEN_ROLES)?
            .1
            .contains("application_access")
    );

    let seq = r
        .record(&env.audit, "tester", "on_demand", "direct-routing")
        .await?;
    let (_, bytes) = env.audit.entries(seq, seq + 1).next().context("entry")??;
    let text = String::from_utf8(bytes.to_vec())?;
    let e: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(e["action"], "verification.report");
    assert_eq!(e["overall"], "OK");
    assert_eq!(e["client_id"], o.client_id.as_str());
    assert_eq!(e["checks"].as_array().map(Vec::len), Some(7));
    use secrecy::ExposeSecret;
    assert!(!text.contains(o.secret.expose_secret()));
    assert!(!text.contains(o.admin_token.expose_secret()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_cases_each_say_what_is_wrong() -> Result<()> {
    let (env, o) = onboarded().await?;
    let v = Verifier::new(env.client.clone());
    let serving = Platform::start(SERVICE, true).await?;
    let good = vec![grpc_endpoint(serving.addr, SERVICE)];

    // Wrong secret.
    let mut input = verify_input(&o, SERVICE, good.clone());
    input.secret = SecretString::from("not-the-secret".to_owned());
    let r = v.verify(&input).await;
    let (s, d) = status(&r, names::CLIENT_CREDENTIALS)?;
    assert_eq!(s, Status::Fail, "{d}");
    assert!(d.contains("7000215"), "{d}");
    assert!(!d.contains("not-the-secret"));
    assert_eq!(status(&r, names::TOKEN_ROLES)?.0, Status::Warn);
    assert!(
        r.findings
            .iter()
            .any(|f| matches!(f, Finding::SecretRejected { .. }))
    );
    assert_eq!(r.overall(), Status::Fail);

    // Platform service not serving, and a platform service that is not there.
    let down = Platform::start(SERVICE, false).await?;
    let r = verify_grpc(&v, &o, down.addr, SERVICE).await;
    let (s, d) = status(&r, names::PLATFORM_STATUS)?;
    assert_eq!(s, Status::Fail, "{d}");
    assert!(d.contains("NOT_SERVING"), "{d}");
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let r = verify_grpc(&v, &o, gone, SERVICE).await;
    let (s, d) = status(&r, names::PLATFORM_STATUS)?;
    assert_eq!(s, Status::Fail, "{d}");
    assert!(
        d.contains(&gone.to_string()) && d.contains("unreachable"),
        "{d}"
    );
    // The service id is the health service name: another name is unknown to the platform.
    let r = verify_grpc(&v, &o, serving.addr, "dr-2").await;
    assert_eq!(status(&r, names::PLATFORM_STATUS)?.0, Status::Fail);

    // The HTTPS JSON probe alternative (plain HTTP on loopback here).
    for (answer, want) in [("OK", Status::Ok), ("DEGRADED", Status::Fail)] {
        let page = status_page(answer).await?;
        let mut input = verify_input(&o, SERVICE, vec![]);
        input.platform = vec![verifier::PlatformEndpoint {
            probe: Probe::HttpJson {
                url: format!("http://{page}/status"),
            },
            ca_pem: None,
            timeout: Duration::from_secs(3),
        }];
        let r = v.verify(&input).await;
        let (s, d) = status(&r, names::PLATFORM_STATUS)?;
        assert_eq!(s, want, "{d}");
        assert!(d.contains(answer), "{d}");
    }

    // Secret near expiry (FAIL within the critical window, WARN within the horizon).
    let mut input = verify_input(&o, SERVICE, good.clone());
    input.secret_expires = Some(time::OffsetDateTime::now_utc() + time::Duration::days(2));
    let r = v.verify(&input).await;
    let (s, d) = status(&r, names::SECRET_EXPIRY)?;
    assert_eq!(s, Status::Fail, "{d}");
    assert!(d.contains("rotate"), "{d}");
    input.secret_expires = Some(time::OffsetDateTime::now_utc() + time::Duration::days(20));
    let r = v.verify(&input).await;
    assert_eq!(status(&r, names::SECRET_EXPIRY)?.0, Status::Warn);
    assert_eq!(r.overall(), Status::Warn, "{}", table(&r));

    // Missing directory role and missing permission, and an extra permission, changed outside
    // Onboard.
    let g = env.client.graph(o.admin_token.clone());
    portal::remove_role(&g, &o.sp_id, TEAMS_ADMINISTRATOR).await?;
    portal::revoke_permission(&g, &o.sp_id, "User.Read.All").await?;
    portal::grant_permission(&g, &o.sp_id, "Directory.Read.All").await?;
    let r = v.verify(&verify_input(&o, SERVICE, good.clone())).await;
    let (s, d) = status(&r, names::DIRECTORY_ROLES)?;
    assert_eq!(s, Status::Fail, "{d}");
    assert!(d.contains("lack Teams Administrator"), "{d}");
    let (s, d) = status(&r, names::TOKEN_ROLES)?;
    assert_eq!(s, Status::Fail, "{d}");
    assert!(
        d.contains("Graph token roles lack User.Read.All; extra: Directory.Read.All"),
        "{d}"
    );
    assert!(!d.contains("Tenant Admin API token roles"), "{d}");
    let keys: Vec<String> = r.findings.iter().map(Finding::key).collect();
    assert!(keys.contains(&"permission/graph/User.Read.All/missing".to_owned()));
    assert!(keys.contains(&"permission/graph/Directory.Read.All/extra".to_owned()));
    assert!(
        keys.iter()
            .any(|k| k.starts_with("role/") && k.ends_with("/missing"))
    );

    // Temporary app still present: a new device-code sign-in consents the token app again.
    env.sign_in(users::GLOBAL_ADMIN).await?;
    let r = v.verify(&verify_input(&o, SERVICE, good)).await;
    let (s, d) = status(&r, names::TEMPORARY_APP_REMOVED)?;
    assert_eq!(s, Status::Fail, "{d}");
    assert!(d.contains(TOKEN_APP) && d.contains("still present"), "{d}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reader_token_the_checks_say_what_they_need() -> Result<()> {
    let (env, o) = onboarded().await?;
    let v = Verifier::new(env.client.clone());
    let mut input = verify_input(&o, SERVICE, vec![]);
    input.reader_token = None;
    let r = v.verify(&input).await;
    warns(
        &r,
        names::DIRECTORY_ROLES,
        "needs RoleManagement.Read.Directory",
    )?;
    warns(
        &r,
        names::TEMPORARY_APP_REMOVED,
        "needs Application.Read.All",
    )?;
    warns(&r, names::PLATFORM_STATUS, "no platform endpoint")?;
    // What the app's own token can check is still checked.
    assert_eq!(status(&r, names::TOKEN_ROLES)?.0, Status::Ok);
    assert_eq!(r.overall(), Status::Warn);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_access_tokens_leave_the_token_roles_not_determinable_not_failed() -> Result<()> {
    let (env, o) = onboarded().await?;
    let platform = Platform::start(SERVICE, true).await?;
    // Microsoft may issue its APIs' access tokens as opaque strings, not JWTs.
    let mut faults = testkit::sim::calm();
    faults.opaque_access_tokens = true;
    env.entra.sim.set_faults(faults);
    let v = Verifier::new(env.client.clone());
    let r = verify_grpc(&v, &o, platform.addr, SERVICE).await;
    warns(&r, names::TOKEN_ROLES, "not a readable JWT")?;
    assert!(
        r.findings.is_empty(),
        "no missing or extra permission is made up: {:?}",
        r.findings
    );
    // Everything that does not read the tokens is still checked, and passes.
    for name in [
        names::PLATFORM_STATUS,
        names::CLIENT_CREDENTIALS,
        names::TENANT_ADMIN_API_TOKEN,
        names::DIRECTORY_ROLES,
        names::SECRET_EXPIRY,
        names::TEMPORARY_APP_REMOVED,
    ] {
        assert_eq!(status(&r, name)?.0, Status::Ok, "{}", table(&r));
    }
    assert_eq!(r.overall(), Status::Warn);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_service_outage_leaves_the_token_checks_unchecked_not_failed() -> Result<()> {
    let (env, o) = onboarded().await?;
    let platform = Platform::start(SERVICE, true).await?;
    // The STS throttles every token request, past the client's retries.
    let mut faults = testkit::sim::calm();
    (faults.sts_throttle_rate, faults.throttle_retry_after_s) = (1.0, 0);
    env.entra.sim.set_faults(faults);
    let v = Verifier::new(env.client.clone());
    let r = verify_grpc(&v, &o, platform.addr, SERVICE).await;
    for name in [names::CLIENT_CREDENTIALS, names::TENANT_ADMIN_API_TOKEN] {
        warns(&r, name, "could not be checked")?;
    }
    assert!(
        r.findings.is_empty(),
        "an outage is nothing to repair: {:?}",
        r.findings
    );
    assert_eq!(r.overall(), Status::Warn, "{}", table(&r));
    // Answering again, a wrong secret is still a FAIL (fail_cases_each_say_what_is_wrong).
    env.entra.sim.set_faults(testkit::sim::calm());
    let r = verify_grpc(&v, &o, platform.addr, SERVICE).await;
    assert_eq!(r.overall(), Status::Ok, "{}", table(&r));
    Ok(())
}

/// `app_credentials` with the app's own token (no admin sign-in): an app that owns itself
/// reads its application, so a secret added there by hand is reported; its service
/// principal it may not read, which the check says (WARN) rather than hiding the app's part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_own_token_reports_its_credentials_and_says_what_it_cannot_read() -> Result<()> {
    let (env, o) = onboarded().await?;
    let v = Verifier::new(env.client.clone());
    let mut input = verify_input(&o, SERVICE, vec![]);
    input.reader_token = None;
    input.managed_secrets = Some(vec![verifier::ManagedSecret {
        key_id: o.key_id.clone(),
        hint: String::new(),
        marker: None,
    }]);
    let r = v.verify(&input).await;
    let (s, d) = status(&r, names::APP_CREDENTIALS)?;
    anyhow::ensure!(
        s == Status::Warn
            && d.contains("only secrets Onboard manages (1)")
            && d.contains("service principal's own credentials could not be read"),
        "{}",
        table(&r)
    );
    let (key_id, _) = env.secret_by_hand(&o.client_id).await?;
    let r = v.verify(&input).await;
    let (s, d) = status(&r, names::APP_CREDENTIALS)?;
    anyhow::ensure!(s == Status::Fail && d.contains(&key_id), "{}", table(&r));
    anyhow::ensure!(r.findings.iter().any(|f| matches!(
        f,
        Finding::ForeignCredential { key_id: k, .. } if *k == key_id
    )));
    Ok(())
}
