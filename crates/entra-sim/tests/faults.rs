//! Fault switches: replication lag with Entra's real errors, throttling, server errors,
//! latency and app management policies.

use std::time::{Duration, Instant};

use entra_sim::Faults;
use serde_json::{Value, json};
use testkit::wire::ids::{APPLICATION_READ_WRITE_ALL, TEAMS, TEAMS_ADMIN, USER_READ_ALL};
use testkit::wire::{Wire, access_claims, str_of};

/// Long enough that a loaded CI machine still makes the follow-up calls inside the window.
const LAG: u64 = 1_500;
const NOT_FOUND: &str = "Request_ResourceNotFound";
const ROLE_ASSIGNMENTS: &str = "/roleManagement/directory/roleAssignments";

async fn after_lag() {
    tokio::time::sleep(Duration::from_millis(LAG + 100)).await;
}

/// The emulator with a global admin's token, then `faults` switched on.
async fn admin_under(faults: Faults) -> (Wire, String) {
    let (env, token) = Wire::signed_in("globaladmin").await;
    env.sim.set_faults(faults);
    (env, token)
}

/// Asserts an error message contains `part`.
#[track_caller]
fn assert_message(body: &Value, part: &str) {
    let message = str_of(&body["error"]["message"]);
    assert!(message.contains(part), "{message}");
}

#[tokio::test]
async fn replication_lag_returns_the_real_errors_then_succeeds() {
    let (env, ga) = Wire::signed_in("globaladmin").await;
    let graph_sp = env.graph_sp_id(&ga).await;
    env.sim.set_faults(Faults {
        replication_lag_ms: LAG,
        ..Faults::default()
    });

    let app = env
        .post(&ga, "/applications", json!({"displayName": "lagged"}))
        .await;
    assert_eq!(app.status, 201, "the write itself succeeds");
    let app = app.json();
    let (id, app_id) = (str_of(&app["id"]), str_of(&app["appId"]));
    let body = env.get(&ga, &format!("/applications/{id}")).await;
    assert_message(&body.expect_error(404, NOT_FOUND), &id);
    let list = env
        .get(&ga, &format!("/applications?$filter=appId eq '{app_id}'"))
        .await;
    let list = list.expect(200);
    assert_eq!(
        list["value"],
        json!([]),
        "not yet replicated to the read replica"
    );
    let for_app = json!({"appId": app_id});
    let body = env.post(&ga, "/servicePrincipals", for_app.clone()).await;
    let body = body.expect_error(400, "Request_BadRequest");
    assert_eq!(
        body["error"]["details"][0]["code"],
        "NoBackingApplicationObject"
    );
    assert_message(&body, "does not reference a valid application object");
    let r = env.add_password(&ga, &app, Value::Null).await;
    r.expect_error(404, NOT_FOUND);

    after_lag().await;
    env.get(&ga, &format!("/applications/{id}"))
        .await
        .expect(200);
    let sp = env
        .post(&ga, "/servicePrincipals", for_app)
        .await
        .expect(201);

    let body = env
        .assign_role(&ga, &graph_sp, &sp["id"], USER_READ_ALL)
        .await;
    let body = body.expect(400);
    assert_eq!(body["error"]["message"], "Not a valid reference update.");
    let ra =
        json!({"roleDefinitionId": TEAMS_ADMIN, "principalId": sp["id"], "directoryScopeId": "/"});
    let r = env.post(&ga, ROLE_ASSIGNMENTS, ra.clone()).await;
    r.expect_error(404, NOT_FOUND);
    let r = env
        .get(&ga, &format!("/servicePrincipals(appId='{app_id}')"))
        .await;
    r.expect(404);
    let pw = env.add_password(&ga, &app, Value::Null).await.expect(200);
    let secret = str_of(&pw["secretText"]);
    let body = env.app_token(&app, &secret).await.expect(400);
    assert_eq!(
        body["error_codes"][0], 700016,
        "new SP not replicated to the STS"
    );

    after_lag().await;
    env.assign_role(&ga, &graph_sp, &sp["id"], USER_READ_ALL)
        .await
        .expect(201);
    env.post(&ga, ROLE_ASSIGNMENTS, ra).await.expect(201);
    let c = access_claims(&env.app_token(&app, &secret).await.expect(200));
    assert!(
        c.get("roles").is_none(),
        "the fresh grant has not reached the STS yet: {c}"
    );

    // A second secret on a replicated app: the STS rejects it as wrong until it replicates.
    let pw2 = env.add_password(&ga, &app, Value::Null).await.expect(200);
    let secret2 = str_of(&pw2["secretText"]);
    let body = env.app_token(&app, &secret2).await.expect(401);
    assert_eq!(body["error_codes"][0], 7000215);
    after_lag().await;
    let c = access_claims(&env.app_token(&app, &secret2).await.expect(200));
    assert_eq!(c["roles"], json!(["User.Read.All"]));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn upsert_is_consistent_even_under_lag() {
    let env = Wire::start(Faults {
        replication_lag_ms: 5_000,
        ..Faults::default()
    })
    .await;
    let t = env.access_token("appadmin").await;
    let key = "/applications(uniqueName='lag-svc')";
    env.upsert(&t, key, json!({"displayName": "lag-svc"}))
        .await
        .expect(201);
    let r = env.upsert(&t, key, json!({"displayName": "lag-svc"})).await;
    assert_eq!(r.status, 204, "a retried upsert updates, never duplicates");
    let apps = env.sim.snapshot()["applications"].as_array().unwrap().len();
    assert_eq!(apps, 1);
    env.sim.shutdown().await;
}

/// A stale replica: an app a request has just found is not found by the next requests the
/// fault names (404, Entra's words), then is again. Other methods and objects made long ago
/// are not affected and take none of the answers.
#[tokio::test]
async fn a_stale_replica_misses_a_new_object_that_was_seen_before() {
    let (env, ga) = Wire::signed_in("globaladmin").await;
    let graph_sp = env.graph_sp_id(&ga).await;
    let app = env
        .post(&ga, "/applications", json!({"displayName": "stale"}))
        .await
        .expect(201);
    let path = format!("/applications/{}", str_of(&app["id"]));
    env.get(&ga, &path).await.expect(200);
    env.sim.set_faults(Faults {
        stale_replica_answers: 2,
        stale_replica_method: Some("DELETE".into()),
        ..Faults::default()
    });
    env.get(&ga, &path).await.expect(200);
    let old = format!(
        "/servicePrincipals/{graph_sp}/appRoleAssignedTo/{}",
        str_of(&app["id"])
    );
    env.delete(&ga, &old).await.expect_error(404, NOT_FOUND);
    for _ in 0..2 {
        let body = env.delete(&ga, &path).await.expect_error(404, NOT_FOUND);
        assert_message(&body, str_of(&app["id"]).as_str());
    }
    let left = env.get_raw("/_sim/faults").await.expect(200);
    assert_eq!(left["stale_replica_answers"], 0, "{left}");
    assert_eq!(env.delete(&ga, &path).await.status, 204);
    env.get(&ga, &path).await.expect_error(404, NOT_FOUND);
    env.sim.shutdown().await;
}

/// A stale replica's list leaves out what it has not seen: a `$filter` by `appId` finds no
/// service principal for a new app, then finds it again. A fault for the list's path is not
/// met by a read of the object itself.
#[tokio::test]
async fn a_stale_replica_lists_without_a_new_object() {
    let (env, ga) = Wire::signed_in("globaladmin").await;
    let app = env
        .post(&ga, "/applications", json!({"displayName": "stale-list"}))
        .await
        .expect(201);
    let app_id = str_of(&app["appId"]);
    let sp = env
        .post(&ga, "/servicePrincipals", json!({"appId": app_id}))
        .await
        .expect(201);
    let list = format!("/servicePrincipals?$filter=appId%20eq%20'{app_id}'");
    env.sim.set_faults(Faults {
        stale_replica_answers: 1,
        stale_replica_path: Some("servicePrincipals".into()),
        ..Faults::default()
    });
    let one = format!("/servicePrincipals/{}", str_of(&sp["id"]));
    env.get(&ga, &one).await.expect(200);
    let listed = |body: serde_json::Value| body["value"].as_array().map(Vec::len);
    assert_eq!(listed(env.get(&ga, &list).await.expect(200)), Some(0));
    assert_eq!(listed(env.get(&ga, &list).await.expect(200)), Some(1));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn throttling_sends_429_with_retry_after_deterministically() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let faults = Faults {
        throttle_rate: 0.5,
        throttle_retry_after_s: 3,
        seed: Some(42),
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        env.sim.set_faults(faults.clone());
        let mut seq = Vec::new();
        for _ in 0..20 {
            let r = env.get(&t, "/organization").await;
            seq.push(r.status.as_u16());
            if r.status == 429 {
                assert_eq!(r.headers["retry-after"], "3");
                let body = r.json();
                assert_eq!(body["error"]["code"], "TooManyRequests");
                assert!(body["error"]["innerError"]["request-id"].is_string());
            } else {
                r.expect(200);
            }
        }
        runs.push(seq);
    }
    assert_eq!(runs[0], runs[1], "same seed, same sequence");
    assert!(
        runs[0].contains(&429) && runs[0].contains(&200),
        "{:?}",
        runs[0]
    );
    // The STS is not throttled by this switch.
    env.sim.set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    });
    let dc = env.device_code(testkit::wire::SCOPE).await;
    assert!(dc["user_code"].is_string());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_cycle_503_500_504() {
    let (env, t) = admin_under(Faults {
        error_rate: 1.0,
        throttle_retry_after_s: 4,
        seed: Some(1),
        ..Faults::default()
    })
    .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = env.get(&t, "/me").await;
        if r.status == 503 {
            assert_eq!(r.headers["retry-after"], "4");
        }
        assert!(r.json()["error"]["code"].is_string());
        got.push(r.status.as_u16());
    }
    assert_eq!(got, vec![503, 500, 504]);
    env.sim.set_faults(Faults::default());
    env.get(&t, "/me").await.expect(200);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let (env, t) = admin_under(Faults {
        latency_ms: 300,
        ..Faults::default()
    })
    .await;
    let t0 = Instant::now();
    env.get(&t, "/me").await.expect(200);
    let elapsed = t0.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn app_management_policy_errors() {
    let (env, t) = Wire::signed_in("appadmin").await;
    let app = env
        .post(&t, "/applications", json!({"displayName": "policy"}))
        .await;
    let app = app.json();

    env.sim.set_faults(Faults {
        forbid_passwords: true,
        ..Faults::default()
    });
    let body = env.add_password(&t, &app, Value::Null).await.expect(400);
    assert_eq!(
        body["error"]["code"],
        "CredentialTypeNotAllowedAsPerAppPolicy"
    );

    env.sim.set_faults(Faults {
        password_lifetime_max_days: Some(180),
        ..Faults::default()
    });
    let r = env.add_password(&t, &app, Value::Null).await;
    assert_eq!(
        r.status, 400,
        "the default two-year lifetime exceeds the cap"
    );
    let body = r.json();
    assert_eq!(
        body["error"]["code"],
        "CredentialInvalidLifetimeAsPerAppPolicy"
    );
    assert!(
        str_of(&body["error"]["message"]).starts_with(
            "Credential lifetime exceeds the max value allowed as per assigned policy"
        )
    );
    let end = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    let end = end
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = env
        .add_password(&t, &app, json!({"endDateTime": end}))
        .await;
    r.expect(200);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn app_only_sp_creation_under_lag_gets_the_local_tenant_403() {
    let (env, ga) = Wire::signed_in("globaladmin").await;
    let (app, sp, secret) = env.provision(&ga, "automation").await;
    let graph_sp = env.graph_sp_id(&ga).await;
    let role = APPLICATION_READ_WRITE_ALL; // Application.ReadWrite.All
    env.assign_role(&ga, &graph_sp, &sp["id"], role)
        .await
        .expect(201);
    let app_token = env.app_token(&app, &secret).await.access_token();
    env.sim.set_faults(Faults {
        replication_lag_ms: LAG,
        ..Faults::default()
    });
    let made = json!({"displayName": "made-by-app"});
    let new_app = env
        .post(&app_token, "/applications", made)
        .await
        .expect(201);
    let for_app = json!({"appId": new_app["appId"]});
    let body = env
        .post(&app_token, "/servicePrincipals", for_app.clone())
        .await;
    let local =
        "backing application of the service principal being created must in the local tenant";
    assert_message(&body.expect(403), local);
    after_lag().await;
    env.post(&app_token, "/servicePrincipals", for_app)
        .await
        .expect(201);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn assignment_lists_lag_behind_assignments_already_in_force() {
    let (env, ga) = Wire::signed_in("globaladmin").await;
    let (_app, sp, _secret) = env.provision(&ga, "listed-late").await;
    let graph_sp = env.graph_sp_id(&ga).await;
    env.sim.set_faults(Faults {
        assignment_list_lag_ms: LAG,
        ..Faults::default()
    });
    let sp_id = str_of(&sp["id"]);
    let held = format!("/servicePrincipals/{sp_id}/appRoleAssignments");
    let assigned_to = format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo");
    let roles = format!("{ROLE_ASSIGNMENTS}?$filter=principalId eq '{sp_id}'");
    let grant = env
        .assign_role(&ga, &graph_sp, &sp["id"], USER_READ_ALL)
        .await
        .expect(201);
    let ra =
        json!({"roleDefinitionId": TEAMS_ADMIN, "principalId": sp["id"], "directoryScopeId": "/"});
    let role = env
        .post(&ga, ROLE_ASSIGNMENTS, ra.clone())
        .await
        .expect(201);
    // Made and in force, but not listed yet.
    for list in [&held, &assigned_to, &roles] {
        let ids: Vec<Value> = env.get(&ga, list).await.expect(200)["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].clone())
            .collect();
        assert!(
            !ids.contains(&grant["id"]) && !ids.contains(&role["id"]),
            "{list}: {ids:?}"
        );
    }
    let again = env
        .assign_role(&ga, &graph_sp, &sp["id"], USER_READ_ALL)
        .await;
    assert_message(
        &again.expect_error(400, "Request_BadRequest"),
        "Permission being assigned already exists on the object",
    );
    let again = env.post(&ga, ROLE_ASSIGNMENTS, ra).await;
    assert_message(&again.expect(400), "conflicting object");

    after_lag().await;
    assert_eq!(
        env.get(&ga, &held).await.expect(200)["value"][0]["id"],
        grant["id"]
    );
    let to: Vec<Value> = env.get(&ga, &assigned_to).await.expect(200)["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert!(to.contains(&grant["id"]), "{to:?}");
    assert_eq!(
        env.get(&ga, &roles).await.expect(200)["value"][0]["id"],
        role["id"]
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn sts_throttling_is_plain_text_429_with_retry_after() {
    let env = Wire::start(Faults {
        sts_throttle_rate: 1.0,
        throttle_retry_after_s: 9,
        ..Faults::default()
    })
    .await;
    let r = env
        .client_credentials("x", "y", testkit::wire::GRAPH_DEFAULT)
        .await;
    assert_eq!(r.headers["retry-after"], "9");
    assert_eq!(r.expect_text(429), "Too Many Requests");
    // Discovery is not throttled, and lifting the switch restores service.
    env.discovery(&env.info.tenant_id).await.expect(200);
    env.sim.set_faults(Faults::default());
    assert!(env.device_code(testkit::wire::SCOPE).await["device_code"].is_string());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn claims_challenge_refuses_delegated_tokens_in_microsofts_form() {
    let (env, ga) = Wire::signed_in("globaladmin").await;
    let (app, _sp, secret) = env.provision(&ga, "ca-app").await;
    let app_token = env.app_token(&app, &secret).await.access_token();
    let plain = str_of(&env.sign_in_without_capabilities("globaladmin").await["access_token"]);
    env.sim.set_faults(Faults {
        claims_challenge: true,
        ..Faults::default()
    });
    let r = env.get(&ga, "/me").await;
    let challenge = r.headers["www-authenticate"].to_str().unwrap().to_owned();
    let body = r.expect_error(401, "InvalidAuthenticationToken");
    assert_message(&body, "Continuous access evaluation resulted in challenge");
    for part in [
        "Bearer realm=\"\"",
        "authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\"",
        "client_id=\"00000003-0000-0000-c000-000000000000\"",
        "error=\"insufficient_claims\"",
        "claims=\"",
    ] {
        assert!(challenge.contains(part), "{part} missing: {challenge}");
    }
    // Graph sends claims challenges only to clients that declared `cp1`.
    env.get(&plain, "/me").await.expect(200);
    // App-only tokens are not refused by the switch; off again, the user's token works.
    let r = env.get(&app_token, "/organization").await;
    assert_ne!(r.status, 401, "{}", r.text);
    env.sim.set_faults(Faults::default());
    env.get(&ga, "/me").await.expect(200);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn opaque_access_tokens_are_not_jwts_and_graph_still_takes_them() {
    let (env, jwt_admin) = Wire::signed_in("globaladmin").await;
    assert_eq!(
        jwt_admin.split('.').count(),
        3,
        "a JWT while the switch is off"
    );
    let (app, _, secret) = env.provision(&jwt_admin, "opaque").await;
    env.sim.set_faults(Faults {
        opaque_access_tokens: true,
        ..Faults::default()
    });
    let admin = env.access_token("globaladmin").await;
    let app_token = env.app_token(&app, &secret).await.access_token();
    let teams = env
        .client_credentials(
            &str_of(&app["appId"]),
            &secret,
            &format!("{TEAMS}/.default"),
        )
        .await
        .access_token();
    for t in [&admin, &app_token, &teams] {
        assert!(!t.contains('.'), "not a JWS compact serialization");
    }
    // Graph accepts them, as Microsoft's own API does.
    let me = env.get(&admin, "/me").await.expect(200);
    assert_eq!(str_of(&me["userPrincipalName"]), env.upn("globaladmin"));
    // The app holds no Graph permission: refused for that (403), not as a bad token (401).
    let own = env.get(&app_token, "/applications").await;
    assert_eq!(own.status.as_u16(), 403, "{}", own.text);
    env.get(&jwt_admin, "/me").await.expect(200);
    // A made-up opaque string is still refused.
    env.get("EwAnotatoken", "/me")
        .await
        .expect_error(401, "InvalidAuthenticationToken");
    env.sim.shutdown().await;
}
