//! A deleted application keeps its `uniqueName` while it sits in the recycle bin
//! (microsoftgraph/msgraph-bicep-types#137, #202): the upsert answers 400 until the app is
//! restored or permanently deleted.

use entra_sim::Faults;
use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::wire::{Wire, assert_odata_error};

const KEY: &str = "/applications(uniqueName='onboard-reserved')";
const PREFER: [(&str, &str); 1] = [("Prefer", "create-if-missing")];

#[tokio::test]
async fn deleted_application_keeps_its_unique_name_until_restored_or_purged() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("globaladmin").await;
    let upsert = |name: &'static str| {
        let (env, t) = (&env, t.clone());
        async move {
            env.graph_full(
                Method::PATCH,
                KEY,
                &t,
                Some(json!({"displayName": name})),
                &PREFER,
            )
            .await
        }
    };
    let (st, _, first) = upsert("sbc-one").await;
    assert_eq!(st, StatusCode::CREATED, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    let (st, _) = env
        .graph(Method::DELETE, &format!("/applications/{id}"), &t, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    // Gone for reads by key, but the key is still taken.
    let (st, body) = env.graph(Method::GET, KEY, &t, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    let (st, _, body) = upsert("sbc-one").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_odata_error(&body, "Request_BadRequest");
    assert_eq!(
        body["error"]["message"],
        "Another object with the same value for property uniqueName already exists."
    );
    // POST with the same uniqueName is refused the same way.
    let (st, body) = env
        .graph(
            Method::POST,
            "/applications",
            &t,
            Some(json!({"displayName": "x", "uniqueName": "onboard-reserved"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(env.sim.snapshot()["applications"], json!([]));

    // The recycle bin lists it with its uniqueName and deletion time.
    let (st, bin) = env
        .graph(
            Method::GET,
            "/directory/deletedItems/microsoft.graph.application",
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{bin}");
    let listed = &bin["value"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["uniqueName"], "onboard-reserved");
    assert!(listed["deletedDateTime"].is_string(), "{listed}");

    // Restore: the upsert then updates the restored app (204), no second app.
    let (st, restored) = env
        .graph(
            Method::POST,
            &format!("/directory/deletedItems/{id}/restore"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{restored}");
    let (st, _, body) = upsert("sbc-one").await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        env.sim.snapshot()["applications"].as_array().unwrap().len(),
        1
    );

    // Permanent deletion frees the key: the next upsert creates a new app.
    env.graph(Method::DELETE, &format!("/applications/{id}"), &t, None)
        .await;
    let (st, _) = env
        .graph(
            Method::DELETE,
            &format!("/directory/deletedItems/{id}"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, again) = upsert("sbc-one").await;
    assert_eq!(st, StatusCode::CREATED, "{again}");
    assert_ne!(again["id"], id.as_str());
    env.sim.shutdown().await;
}
