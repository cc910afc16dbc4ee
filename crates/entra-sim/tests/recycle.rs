//! A deleted application keeps its `uniqueName` while it sits in the recycle bin
//! (microsoftgraph/msgraph-bicep-types#137, #202): the upsert answers 400 until the app is
//! restored or permanently deleted.

use serde_json::{Value, json};
use testkit::wire::{Wire, str_of};

const KEY: &str = "/applications(uniqueName='onboard-reserved')";

#[tokio::test]
async fn deleted_application_keeps_its_unique_name_until_restored_or_purged() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let upsert = || env.upsert(&t, KEY, json!({"displayName": "sbc-one"}));
    let first = upsert().await.expect(201);
    let id = str_of(&first["id"]);
    let by_id = format!("/applications/{id}");
    env.delete(&t, &by_id).await.expect(204);

    // Gone for reads by key, but the key is still taken.
    env.get(&t, KEY).await.expect(404);
    let body = upsert().await.expect_error(400, "Request_BadRequest");
    assert_eq!(
        body["error"]["message"],
        "Another object with the same value for property uniqueName already exists."
    );
    // POST with the same uniqueName is refused the same way.
    let same = json!({"displayName": "x", "uniqueName": "onboard-reserved"});
    env.post(&t, "/applications", same).await.expect(400);
    assert_eq!(env.sim.snapshot()["applications"], json!([]));

    // The recycle bin lists it with its uniqueName and deletion time.
    let bin = "/directory/deletedItems/microsoft.graph.application";
    let bin = env.get(&t, bin).await.expect(200);
    let listed = &bin["value"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["uniqueName"], "onboard-reserved");
    assert!(listed["deletedDateTime"].is_string(), "{listed}");

    // Restore: the upsert then updates the restored app (204), no second app.
    let restore = format!("/directory/deletedItems/{id}/restore");
    env.post(&t, &restore, Value::Null).await.expect(200);
    upsert().await.expect(204);
    let apps = env.sim.snapshot()["applications"].as_array().unwrap().len();
    assert_eq!(apps, 1);

    // Permanent deletion frees the key: the next upsert creates a new app.
    env.delete(&t, &by_id).await;
    let purge = format!("/directory/deletedItems/{id}");
    env.delete(&t, &purge).await.expect(204);
    let again = upsert().await.expect(201);
    assert_ne!(again["id"], id.as_str());
    env.sim.shutdown().await;
}
