//! Provisioning against the Entra emulator: the full run as a Global Administrator, the
//! Application-Administrator-only plan, name rules, and fail-closed auditing.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::Faults;
use onboard_core::roles::Right;
use provision::{EventKind, FailureCause, NameRule, PlanRequest, ProvisionError, Status};
use secrecy::ExposeSecret;
use serde_json::Value;
use testkit::audit::assert_direct_routing_changes;
use testkit::engine::{EngineEnv, collect, completion};
use testkit::sim::{TOKEN_APP, calm};
use testkit::snapshot::{apps_named, grants_of, no_duplicates, provisioned_once, sps_where};
use tokio_stream::StreamExt;

fn plan_req(name: &str) -> PlanRequest {
    PlanRequest {
        app_name: name.into(),
        profile: "direct-routing".into(),
        platform_version: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_admin_provisions_everything_audited_in_order() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("globaladmin").await?;
    assert_eq!(admin.tenant_id, env.info.tenant_id);

    let plan = env.engine.plan(&admin, &plan_req("Sbc-One")).await?;
    ensure!(plan.missing_rights.is_empty(), "{:?}", plan.missing_rights);
    let ops: Vec<(&str, &str)> = plan
        .changes
        .iter()
        .map(|c| (c.action.as_str(), c.operation.as_str()))
        .collect();
    ensure!(
        ops.contains(&("app_registration.create", "create")),
        "{ops:?}"
    );
    ensure!(ops.contains(&("temporary_app.delete", "delete")), "{ops:?}");
    ensure!(
        plan.changes
            .iter()
            .filter(|c| c.action == "app_role_assignment.create")
            .count()
            == 4
    );
    // The plan changed nothing.
    ensure!(apps_named(&env.snapshot(), "Sbc-One").is_empty());
    ensure!(sps_where(&env.snapshot(), "display_name", TOKEN_APP).len() == 1);

    let mut stream = env
        .engine
        .provision(env.request("onb-1", "Sbc-One"), admin)
        .await?;
    // Read live: when a Done arrives, its outcome entries must already be in the signed log.
    let mut events = Vec::new();
    while let Some(e) =
        tokio::time::timeout(std::time::Duration::from_secs(120), stream.next()).await?
    {
        if let EventKind::Done { audit_seqs, .. } = &e.kind {
            let size = env.audit.size();
            ensure!(
                audit_seqs.iter().all(|s| *s < size),
                "Done before its audit entry: {e:?}"
            );
        }
        events.push(e);
    }
    let c = completion(&events)?;
    ensure!(c.tenant_id == env.info.tenant_id);
    let secret = c
        .secret
        .clone()
        .context("live Completed carries the secret")?;

    // Events are numbered without gaps and every step reported Started then Done.
    for (i, e) in events.iter().enumerate() {
        ensure!(e.seq == i as u64 + 1, "event {i} has seq {}", e.seq);
    }
    for step in [
        "app_registration",
        "service_principal",
        "client_secret",
        "permissions_and_roles",
        "temporary_app_removal",
        "verify_authentication",
    ] {
        let started = events
            .iter()
            .position(|e| e.step == step && matches!(e.kind, EventKind::Started { .. }));
        let done = events
            .iter()
            .position(|e| e.step == step && matches!(e.kind, EventKind::Done { .. }));
        ensure!(
            matches!((started, done), (Some(s), Some(d)) if s < d),
            "step {step}"
        );
    }

    // Entra: one app, one SP, one secret, 3 grants (2 Graph + Teams admin API), 1 role, no token app.
    let snap = env.snapshot();
    let (app_id, _sp) = no_duplicates(&snap, "Sbc-One")?;
    ensure!(app_id == c.client_id);
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).is_empty(),
        "token app still there"
    );

    // The new secret authenticates.
    ensure!(env.authenticates(&c.client_id, &secret).await);

    // Audit: intent/outcome pairs for every change, and each Done's outcome entries exist.
    let entries = env.audit_entries("onb-1")?;
    assert_direct_routing_changes(&entries, "onb-1")?;
    let by_seq: HashMap<u64, &Value> = entries
        .iter()
        .filter_map(|e| Some((e["seq"].as_u64()?, e)))
        .collect();
    for e in &events {
        if let EventKind::Done { audit_seqs, .. } = &e.kind {
            for s in audit_seqs {
                let entry = by_seq.get(s).context("Done names a missing audit entry")?;
                ensure!(entry["phase"] == "succeeded", "{entry}");
            }
        }
    }
    let secret_entry = entries
        .iter()
        .find(|e| e["action"] == "client_secret.add" && e["phase"] == "succeeded")
        .context("secret entry")?;
    ensure!(secret_entry["target"]["id"] == c.key_id.as_str());

    // The secret value is nowhere: not in the audit log, the persisted events, or the store.
    let value = secret.expose_secret();
    for r in env.audit.entries(0, u64::MAX) {
        let (_, bytes) = r?;
        ensure!(
            !String::from_utf8_lossy(&bytes).contains(value),
            "secret in the audit log"
        );
    }
    for kv in env.db.open_tree("provision")?.iter() {
        let (_, v) = kv?;
        ensure!(
            !String::from_utf8_lossy(&v).contains(value),
            "secret in the store"
        );
    }
    let replay = collect(env.engine.watch("onb-1", 1)?, 10).await?;
    ensure!(replay.len() == events.len());
    ensure!(
        matches!(&replay.last().map(|e| &e.kind), Some(EventKind::Completed(c)) if c.secret.is_none())
    );
    let tail = collect(env.engine.watch("onb-1", 5)?, 10).await?;
    ensure!(tail.first().map(|e| e.seq) == Some(5));

    let got = env.engine.get("onb-1")?.context("record")?;
    ensure!(
        got.status == Status::Completed && got.secret_key_id.as_deref() == Some(c.key_id.as_str())
    );
    ensure!(env.engine.secret("onb-1")?.expose_secret() == value);

    // The same name is now taken (any case); a completed onboarding cannot be run again.
    let admin = env.signed_in("globaladmin").await?;
    match env
        .engine
        .provision(env.request("onb-2", "SBC-ONE"), admin.clone())
        .await
    {
        Err(ProvisionError::NameTaken { existing, .. }) => ensure!(existing == "onb-1"),
        other => bail!("expected NameTaken, got {:?}", other.err()),
    }
    ensure!(matches!(
        env.engine
            .provision(env.request("onb-1", "Sbc-One"), admin)
            .await,
        Err(ProvisionError::InvalidState { .. })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_admin_gets_missing_rights_and_nothing_changes() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("appadmin").await?;
    let rights =
        admin.rights_for(&onboard_core::ProfileSet::defaults()?.resolve("direct-routing", None)?);
    let held: Vec<(Right, bool)> = rights.iter().map(|r| (r.right, r.held)).collect();
    ensure!(
        held == vec![
            (Right::ManageApplications, true),
            (Right::GrantGraphAppRoles, false),
            (Right::GrantOtherAppRoles, true),
            (Right::AssignDirectoryRoles, false)
        ],
        "{held:?}"
    );

    let plan = env.engine.plan(&admin, &plan_req("Sbc-Two")).await?;
    let missing: Vec<(Right, Vec<String>)> = plan
        .missing_rights
        .iter()
        .map(|m| (m.right, m.changes.clone()))
        .collect();
    ensure!(
        missing
            == vec![
                (
                    Right::GrantGraphAppRoles,
                    vec![
                        "Microsoft Graph/Organization.Read.All".to_string(),
                        "Microsoft Graph/User.Read.All".to_string(),
                        "Microsoft Graph/Application.ReadWrite.OwnedBy".to_string()
                    ]
                ),
                (
                    Right::AssignDirectoryRoles,
                    vec!["Teams Administrator".to_string()]
                ),
            ],
        "{missing:?}"
    );
    ensure!(
        plan.changes
            .iter()
            .any(|c| c.action == "app_registration.create" && c.allowed)
    );

    let before = env.audit.size();
    match env
        .engine
        .provision(env.request("onb-aa", "Sbc-Two"), admin)
        .await
    {
        Err(ProvisionError::MissingRights { missing }) => {
            ensure!(
                missing
                    .iter()
                    .any(|m| m.contains("Privileged Role Administrator")),
                "{missing:?}"
            );
        }
        other => bail!("expected MissingRights, got {:?}", other.err()),
    }
    let snap = env.snapshot();
    ensure!(apps_named(&snap, "Sbc-Two").is_empty(), "an app was made");
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).len() == 1,
        "token app removed"
    );
    ensure!(env.audit.size() == before, "audit entries were written");
    ensure!(env.engine.get("onb-aa")?.is_none());

    // No admin role at all: refused at sign-in, in words (not a Rust list). Wrong account:
    // refused too.
    let tokens = env.sign_in("user").await?;
    match env.engine.sign_in(&tokens, &env.upn("user"), None).await {
        Err(ProvisionError::MissingRights { missing }) => ensure!(
            missing.len() == 1
                && missing[0].contains(" holds no administrator role; creating the app")
                && !missing[0].contains('['),
            "{missing:?}"
        ),
        other => bail!("expected MissingRights, got {:?}", other.err()),
    }
    let tokens = env.sign_in("globaladmin").await?;
    ensure!(matches!(
        env.engine
            .sign_in(&tokens, &env.upn("APPADMIN"), None)
            .await,
        Err(ProvisionError::WrongUser { .. })
    ));
    ensure!(
        env.engine
            .sign_in(&tokens, &env.upn("GlobalAdmin"), None)
            .await
            .is_ok(),
        "UPN case ignored"
    );
    // The tenant an invitation names must be the one signed in to: by id, or by one of its
    // verified domains (in any case); another tenant's id or domain is WrongTenant.
    let ga = env.upn("globaladmin");
    let domain = env.info.tenant_domain.to_ascii_uppercase();
    for ok in [env.info.tenant_id.as_str(), domain.as_str()] {
        let signed = env.engine.sign_in(&tokens, &ga, Some(ok)).await;
        ensure!(signed.is_ok(), "{ok}: {:?}", signed.err());
    }
    for other in ["00000000-0000-4000-8000-000000000001", "fabrikam.example"] {
        match env.engine.sign_in(&tokens, &ga, Some(other)).await {
            Err(e @ ProvisionError::WrongTenant { .. }) => ensure!(
                e.to_string().contains(other) && e.to_string().contains(&env.info.tenant_id),
                "{e}"
            ),
            r => bail!("{other}: expected WrongTenant, got {:?}", r.err()),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_rule_is_enforced_before_anything_happens() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("globaladmin").await?;
    let cases: Vec<(&str, NameRule)> = vec![
        ("ab", NameRule::Length { chars: 2 }),
        ("abcdefghijklmnop", NameRule::Length { chars: 16 }),
        ("a\\bc", NameRule::ForbiddenCharacter { found: '\\' }),
        ("a/bc", NameRule::ForbiddenCharacter { found: '/' }),
        ("a:bc", NameRule::ForbiddenCharacter { found: ':' }),
        ("a*bc", NameRule::ForbiddenCharacter { found: '*' }),
        ("a?bc", NameRule::ForbiddenCharacter { found: '?' }),
        ("a\"bc", NameRule::ForbiddenCharacter { found: '"' }),
        ("a<bc", NameRule::ForbiddenCharacter { found: '<' }),
        ("a>bc", NameRule::ForbiddenCharacter { found: '>' }),
        ("a|bc", NameRule::ForbiddenCharacter { found: '|' }),
        ("a.bc", NameRule::Dot),
        ("a bc", NameRule::Blank),
        ("Audit", NameRule::Reserved),
    ];
    let before = env.audit.size();
    for (i, (name, rule)) in cases.into_iter().enumerate() {
        match env
            .engine
            .provision(env.request(&format!("n{i}"), name), admin.clone())
            .await
        {
            Err(ProvisionError::InvalidName { rule: got, .. }) => {
                ensure!(got == rule, "{name}: {got:?}")
            }
            other => bail!("{name}: expected InvalidName, got {:?}", other.err()),
        }
        ensure!(matches!(
            env.engine.plan(&admin, &plan_req(name)).await,
            Err(ProvisionError::InvalidName { .. })
        ));
    }
    ensure!(env.audit.size() == before);
    ensure!(env.snapshot()["applications"].as_array().map(Vec::len) == Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_audit_log_means_no_entra_change() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("globaladmin").await?;
    env.audit.clone().close();
    match env
        .engine
        .provision(env.request("onb-x", "Sbc-Three"), admin)
        .await
    {
        Err(ProvisionError::Audit(_)) => {}
        other => bail!("expected an audit error, got {:?}", other.err()),
    }
    let snap = env.snapshot();
    ensure!(
        snap["applications"].as_array().map(Vec::len) == Some(0),
        "an app was made"
    );
    ensure!(sps_where(&snap, "display_name", TOKEN_APP).len() == 1);
    ensure!(env.engine.get("onb-x")?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_platform_and_qoe_profiles_provision_their_own_sets() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("globaladmin").await?;
    let mut old = env.request("onb-old", "Sbc-Old");
    old.platform_version = Some("8.0.517.100".into());
    let events = env.run(old, admin.clone()).await?;
    completion(&events)?;
    let snap = env.snapshot();
    // The older platform's two, self-rotation's one and the default three.
    let (_, sp) = provisioned_once(&snap, "Sbc-Old", 6, 1)?;
    let graph_sp = snap["service_principals"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|s| s["app_id"] == entra_client::MICROSOFT_GRAPH_APP_ID)
        })
        .and_then(|s| s["id"].as_str())
        .context("graph sp")?
        .to_owned();
    let granted: Vec<&str> = grants_of(&snap, &sp)
        .iter()
        .filter(|g| g["resource_id"] == graph_sp.as_str())
        .filter_map(|g| g["app_role_id"].as_str())
        .collect();
    for id in [
        "5b567255-7703-4780-807c-7be8301ae99b", // Group.Read.All
        "483bed4a-2ad3-4361-a73b-c83ccdbdc53c", // RoleManagement.Read.Directory
        "498476ce-e0fe-48b0-b801-37ba7e2685c6", // Organization.Read.All
        "df021288-bdef-4463-88db-98f22de89214", // User.Read.All
    ] {
        ensure!(granted.contains(&id), "{id} not granted: {granted:?}");
    }

    let mut qoe = env.request("onb-qoe", "Sbc-Qoe");
    qoe.profile = "qoe".into();
    let events = env.run(qoe, admin).await?;
    completion(&events)?;
    let snap = env.snapshot();
    provisioned_once(&snap, "Sbc-Qoe", 2, 0)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_grants_and_roles_run_concurrently() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("globaladmin").await?;
    env.sim.set_faults(entra_sim::Faults {
        latency_ms: 200,
        device_code_interval_s: Some(1),
        ..Default::default()
    });
    let events = env.run(env.request("onb-par", "Sbc-Par"), admin).await?;
    completion(&events)?;
    let sub = |e: &&provision::Event| e.step.starts_with("grant:") || e.step.starts_with("role:");
    let first_done = events
        .iter()
        .filter(sub)
        .position(|e| matches!(e.kind, EventKind::Done { .. }))
        .context("no grant done")?;
    let started_before: usize = events
        .iter()
        .filter(sub)
        .take(first_done)
        .filter(|e| matches!(e.kind, EventKind::Started { .. }))
        .count();
    // 5 items (four app-role grants, one role) with the default concurrency of 6: all start
    // before the first finishes.
    ensure!(
        started_before == 5,
        "only {started_before} started before the first finished"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_the_teams_admin_api_gets_the_fix_not_a_graph_404() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("globaladmin").await?;
    // Microsoft adds its apps' service principals to a tenant only when something uses them.
    let g = env.graph_as("globaladmin").await?;
    let ctx = entra_client::OpContext::new();
    let teams = g
        .resource_service_principal(entra_client::TEAMS_TENANT_ADMIN_API_APP_ID, &ctx)
        .await?
        .value;
    g.delete_service_principal(&teams.id, &ctx).await?;
    let err = env
        .engine
        .plan(&admin, &plan_req("Sbc-NoTeams"))
        .await
        .unwrap_err();
    ensure!(matches!(err, ProvisionError::MissingResource(_)), "{err:?}");
    let text = err.to_string();
    ensure!(
        text.contains("Skype and Teams Tenant Admin API")
            && text.contains("New-MgServicePrincipal -AppId 48ac35b8-9aa8-4d74-927d-1f4a14a0b239"),
        "{text}"
    );
    ensure!(apps_named(&env.snapshot(), "Sbc-NoTeams").is_empty());
    Ok(())
}

/// The tenant's app management policy forbids client secrets: the run fails at the secret
/// with the tenant as its cause (Provision again fails the same way until the policy changes),
/// not Microsoft's (which says a retry may succeed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_tenant_policy_forbids_fails_for_the_tenant() -> Result<()> {
    let env = EngineEnv::start(
        Faults {
            forbid_passwords: true,
            ..calm()
        },
        None,
    )
    .await?;
    let admin = env.signed_in("globaladmin").await?;
    let events = env.provision("onb-policy", "Sbc-Policy", admin).await?;
    let failed = events.iter().find_map(|e| match &e.kind {
        EventKind::Failed { error, cause } => Some((error.clone(), *cause)),
        _ => None,
    });
    let Some((error, cause)) = failed else {
        anyhow::bail!("the run did not fail: {events:#?}");
    };
    ensure!(cause == FailureCause::Tenant, "{cause:?}: {error}");
    ensure!(error.contains("AsPerAppPolicy"), "{error}");
    Ok(())
}
