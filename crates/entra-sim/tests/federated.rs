//! Federated identity credentials (`/applications/{id}/federatedIdentityCredentials`, Graph
//! `federatedIdentityCredential`): created, listed, read by id or name and deleted as Graph
//! does, with Entra's rules refused the way Graph refuses them, and only by who may write the
//! app.

use serde_json::{Value, json};
use testkit::wire::{Wire, str_of};

/// A GitHub Actions credential named `name`.
fn credential(name: &str) -> Value {
    json!({
        "name": name,
        "issuer": "https://token.actions.githubusercontent.com",
        "subject": "repo:contoso/deploy:environment:prod",
        "description": "deploys from CI",
        "audiences": ["api://AzureADTokenExchange"],
    })
}

/// A new application made with `token`: it, and its credentials' path.
async fn new_app(env: &Wire, token: &str) -> (Value, String) {
    let app = env
        .post(token, "/applications", json!({"displayName": "fed"}))
        .await
        .expect(201);
    let fics = format!(
        "/applications/{}/federatedIdentityCredentials",
        str_of(&app["id"])
    );
    (app, fics)
}

#[tokio::test]
async fn a_credential_is_made_listed_read_and_deleted() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let (app, fics) = new_app(&env, &t).await;
    assert_eq!(env.get(&t, &fics).await.expect(200)["value"], json!([]));

    let made = env.post(&t, &fics, credential("ci-prod")).await.expect(201);
    let id = str_of(&made["id"]);
    assert_eq!(made["name"], "ci-prod");
    assert_eq!(made["audiences"], json!(["api://AzureADTokenExchange"]));
    let context = made["@odata.context"].as_str().unwrap_or_default();
    assert!(
        context.contains("/federatedIdentityCredentials/$entity"),
        "{made}"
    );

    // Listed, also through the app's alternate key; read by id and by name.
    let listed = env.get(&t, &fics).await.expect(200);
    assert_eq!(listed["value"][0]["id"], id.as_str());
    let by_app_id = format!(
        "/applications(appId='{}')/federatedIdentityCredentials",
        str_of(&app["appId"])
    );
    assert_eq!(
        env.get(&t, &by_app_id).await.expect(200)["value"],
        listed["value"]
    );
    for key in [id.as_str(), "ci-prod"] {
        let one = env.get(&t, &format!("{fics}/{key}")).await.expect(200);
        assert_eq!(one["subject"], "repo:contoso/deploy:environment:prod");
    }

    env.delete(&t, &format!("{fics}/{id}")).await.expect(204);
    assert_eq!(env.get(&t, &fics).await.expect(200)["value"], json!([]));
    let gone = env.get(&t, &format!("{fics}/{id}")).await;
    gone.expect_error(404, "Request_ResourceNotFound");
}

#[tokio::test]
async fn entras_rules_are_refused_as_graph_refuses_them() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let (_, fics) = new_app(&env, &t).await;
    env.post(&t, &fics, credential("taken")).await.expect(201);
    let edits: [(&str, Value); 6] = [
        ("name", json!("taken")),
        ("name", json!("ab")),
        ("name", json!("x".repeat(121))),
        ("issuer", Value::Null),
        ("subject", json!("")),
        (
            "audiences",
            json!(["api://AzureADTokenExchange", "api://other"]),
        ),
    ];
    for (prop, value) in edits {
        let mut body = credential("fresh");
        body[prop] = value.clone();
        let refused = env.post(&t, &fics, body).await;
        let e = refused.expect_error(400, "Request_BadRequest");
        let message = str_of(&e["error"]["message"]);
        assert!(message.contains(prop), "{prop}={value}: {message}");
    }
    // At most 20 on one app.
    for n in 1..20 {
        env.post(&t, &fics, credential(&format!("ci-{n:02}")))
            .await
            .expect(201);
    }
    let full = env.post(&t, &fics, credential("one-too-many")).await;
    full.expect_error(400, "Request_BadRequest");
}

#[tokio::test]
async fn only_who_may_write_the_app_makes_one() {
    let (env, admin) = Wire::signed_in("globaladmin").await;
    let (_, fics) = new_app(&env, &admin).await;
    let user = env.access_token("user").await;
    let refused = env.post(&user, &fics, credential("sneaky")).await;
    refused.expect_error(403, "Authorization_RequestDenied");
    assert_eq!(env.get(&admin, &fics).await.expect(200)["value"], json!([]));
}
