//! Behaviours where the emulator follows Microsoft's documentation to the letter, because a
//! client built against a kinder emulator would break against the real service
//! (docs/microsoft.md).

mod common;

use common::{Env, start};
use entra_sim::Faults;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A device sign-in as `nick` asking for exactly `scope`; returns the access token.
async fn token_with(env: &Env, nick: &str, scope: &str) -> String {
    let dc = env.device_code(scope).await;
    env.sim
        .complete_device_login(dc["user_code"].as_str().unwrap(), &env.upn(nick))
        .await
        .unwrap();
    let (st, body) = env.poll(dc["device_code"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn roles_in(body: &Value) -> Vec<&Value> {
    body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["@odata.type"] == "#microsoft.graph.directoryRole")
        .collect()
}

#[tokio::test]
async fn transitive_member_of_strips_directory_roles_the_token_may_not_read() {
    let env = start(Faults::default()).await;
    let narrow = token_with(&env, "globaladmin", "User.Read openid").await;
    let (st, body) = env
        .graph(Method::GET, "/me/transitiveMemberOf", &narrow, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let roles = roles_in(&body);
    assert_eq!(roles.len(), 1, "the membership is still listed: {body}");
    let r = roles[0].as_object().unwrap();
    assert!(r["id"].is_string());
    for (k, v) in r {
        if k != "@odata.type" && k != "id" {
            assert!(v.is_null(), "{k} must be null when stripped: {body}");
        }
    }

    for scope in [
        "User.Read RoleManagement.Read.Directory",
        "User.Read RoleManagement.ReadWrite.Directory",
        "User.Read Directory.Read.All",
    ] {
        let t = token_with(&env, "globaladmin", scope).await;
        let (_, body) = env
            .graph(Method::GET, "/me/transitiveMemberOf", &t, None)
            .await;
        let roles = roles_in(&body);
        assert_eq!(
            roles[0]["roleTemplateId"], "62e90394-69f5-4237-9190-012177145e10",
            "{scope}: {body}"
        );
    }
    env.sim.shutdown().await;
}
