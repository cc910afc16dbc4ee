//! `$filter` the way Graph v1.0 takes it, over real HTTPS: the advanced-query operators on
//! directory objects (docs/microsoft.md §22) and typed literals (§23).

use reqwest::Method;
use serde_json::{Value, json};
use testkit::wire::{Wire, count, str_of};

/// `ConsistencyLevel: eventual`, the header half of the advanced query parameters.
const EVENTUAL: [(&str, &str); 1] = [("ConsistencyLevel", "eventual")];

/// GET `path` with `token` and `headers`.
async fn get_with(env: &Wire, token: &str, path: &str, headers: &[(&str, &str)]) -> Value {
    env.call(Method::GET, path, token, None, headers)
        .await
        .json()
}

/// Asserts a 400 OData error with `code` and exactly `message`.
#[track_caller]
fn assert_refused(body: &Value, code: &str, message: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
    assert!(
        body["error"]["innerError"]["request-id"].is_string(),
        "{body}"
    );
}

/// Graph's refusal of an operator only advanced queries may use (the doc's `endsWith` text).
fn needs_advanced(op: &str) -> String {
    format!(
        "Operator '{op}' is not supported because the required parameters might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to https://aka.ms/graph-docs/advanced-queries for more information"
    )
}

const NE_REFUSED: &str = "Filter operator 'NotEqualsMatch' is not supported.";

#[tokio::test]
async fn ne_not_and_ends_with_need_consistency_level_eventual_and_count() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    for name in ["svc-a", "svc-b"] {
        let body = json!({"displayName": name});
        env.post(&t, "/applications", body).await.expect(201);
    }
    let ne = "$filter=displayName ne 'svc-a'";
    // Directory objects: applications, service principals, users; without both parameters.
    for set in ["applications", "servicePrincipals", "users"] {
        for (query, headers) in [
            (ne.to_string(), &[][..]),
            (ne.to_string(), &EVENTUAL[..]),
            (format!("{ne}&$count=true"), &[][..]),
        ] {
            let path = format!("/{set}?{query}");
            let r = env.call(Method::GET, &path, &t, None, headers).await;
            assert_refused(&r.expect(400), "Request_UnsupportedQuery", NE_REFUSED);
        }
    }
    // With both, `ne` is served, with the count.
    let path = format!("/applications?{ne}&$count=true");
    let v = get_with(&env, &t, &path, &EVENTUAL).await;
    assert_eq!(v["@odata.count"], 1, "{v}");
    assert_eq!(v["value"][0]["displayName"], "svc-b", "{v}");

    let not = "/applications?$filter=not(displayName eq 'svc-a')";
    let r = env.get(&t, not).await;
    assert_refused(
        &r.expect(400),
        "Request_UnsupportedQuery",
        &needs_advanced("not"),
    );
    let v = get_with(&env, &t, &format!("{not}&$count=true"), &EVENTUAL).await;
    assert_eq!(count(&v), 1, "{v}");

    let domain = &env.info.tenant_domain;
    let ends = format!("/users?$filter=endsWith(userPrincipalName,'@{domain}')");
    let r = env.get(&t, &ends).await;
    let refusal = needs_advanced("endsWith");
    assert_refused(&r.expect(400), "Request_UnsupportedQuery", &refusal);
    let v = get_with(&env, &t, &format!("{ends}&$count=true"), &EVENTUAL).await;
    assert!(count(&v) > 0, "{v}");
    // endsWith only on mail, otherMails, userPrincipalName and proxyAddresses.
    let path = "/applications?$filter=endsWith(displayName,'-a')&$count=true";
    let r = env.call(Method::GET, path, &t, None, &EVENTUAL).await;
    r.expect_error(400, "Request_UnsupportedQuery");

    // A bare `$count=true` is ignored without the header, not refused.
    let v = env.get(&t, "/applications?$count=true").await.expect(200);
    assert!(v.get("@odata.count").is_none(), "{v}");
    let v = get_with(&env, &t, "/applications?$count=true", &EVENTUAL).await;
    assert_eq!(v["@odata.count"], 2, "{v}");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn orderby_and_search_on_directory_objects_are_advanced_too() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let sorting = "Sorting not supported for current query.";
    let search = "/applications?$search=\"displayName:svc\"";
    let search_needs_header = "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'";
    for (path, message) in [
        ("/applications?$orderby=displayName", sorting),
        (
            "/users?$orderby=displayName&$filter=startswith(displayName,'a')",
            sorting,
        ),
        (search, search_needs_header),
    ] {
        let body = env.get(&t, path).await.expect(400);
        assert_refused(&body, "Request_UnsupportedQuery", message);
    }
    // users are sorted by displayName by default.
    env.get(&t, "/users?$orderby=displayName").await.expect(200);
    let r = env.call(Method::GET, search, &t, None, &EVENTUAL).await;
    r.expect(200);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn string_literals_must_be_quoted_and_guid_typed_ones_must_not() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let (app, _sp, _secret) = env.provision(&t, "O'Brien svc").await;
    let app_id = str_of(&app["appId"]);
    let incompatible = |want: &str, got: &str| {
        format!(
            "Invalid filter clause: A binary operator with incompatible types was detected. Found operand types '{want}' and '{got}' for operator kind 'Equal'."
        )
    };

    // appId is Edm.String in v1.0: a GUID value is still a quoted string.
    let r = env
        .get(&t, &format!("/applications?$filter=appId eq {app_id}"))
        .await;
    let guid_for_string = incompatible("Edm.String", "Edm.Guid");
    assert_refused(&r.expect(400), "BadRequest", &guid_for_string);
    let r = env
        .get(&t, &format!("/servicePrincipals?$filter=appId eq {app_id}"))
        .await;
    assert_refused(&r.expect(400), "BadRequest", &guid_for_string);
    let v = env
        .get(&t, &format!("/applications?$filter=appId eq '{app_id}'"))
        .await;
    assert_eq!(count(&v.expect(200)), 1);

    // A bare word is a property path to OData, not text.
    let r = env
        .get(&t, "/applications?$filter=displayName eq svc")
        .await;
    assert_refused(
        &r.expect(400),
        "BadRequest",
        "Invalid filter clause: Could not find a property named 'svc' on type 'microsoft.graph.application'.",
    );
    let path = "/servicePrincipals?$filter=servicePrincipalNames/any(x:x eq 5)";
    let r = env.get(&t, path).await;
    assert_refused(
        &r.expect(400),
        "BadRequest",
        &incompatible("Edm.String", "Edm.Int32"),
    );
    // An embedded quote is doubled.
    let v = env
        .get(&t, "/applications?$filter=displayName eq 'O''Brien svc'")
        .await;
    assert_eq!(count(&v.expect(200)), 1);

    // appOwnerOrganizationId is Edm.Guid: unquoted, and a quoted one is refused.
    let tid = &env.info.tenant_id;
    let path = format!("/servicePrincipals?$filter=appOwnerOrganizationId eq '{tid}'");
    let r = env.get(&t, &path).await;
    assert_refused(
        &r.expect(400),
        "BadRequest",
        &incompatible("Edm.Guid", "Edm.String"),
    );
    let path = format!("/servicePrincipals?$filter=appOwnerOrganizationId eq {tid}");
    assert!(count(&env.get(&t, &path).await.expect(200)) >= 1);
    env.sim.shutdown().await;
}
