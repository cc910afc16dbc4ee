//! OData query options over real HTTPS: paging with `$top` and `@odata.nextLink`,
//! `$orderby`, `$search` and `$count`.

use reqwest::Method;
use serde_json::{Value, json};
use testkit::wire::{Wire, str_of};

/// The display names in a Graph collection, in order.
fn names(page: &Value) -> Vec<String> {
    let items = page["value"].as_array().unwrap();
    items.iter().map(|a| str_of(&a["displayName"])).collect()
}

/// Creates one application per name.
async fn create_apps(env: &Wire, t: &str, names: &[String]) {
    for name in names {
        let body = json!({"displayName": name});
        env.post(t, "/applications", body).await.expect(201);
    }
}

#[tokio::test]
async fn paging_with_top_and_next_link() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let made: Vec<String> = (0..5).map(|i| format!("page-{i}")).collect();
    create_apps(&env, &t, &made).await;
    let mut url =
        "/applications?$top=2&$filter=startswith(displayName,%20'page-')&$select=displayName"
            .to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = env.get(&t, &url).await.expect(200);
        pages += 1;
        seen.extend(names(&page));
        match page["@odata.nextLink"].as_str() {
            Some(next) => {
                let prefix = format!("{}/v1.0/applications?", env.info.base_url);
                assert!(next.starts_with(&prefix), "{next}");
                // Shaped as Graph's: option names as they are, `%20` for a space.
                let query = &next[prefix.len()..];
                assert!(
                    query.contains("$filter=startswith%28displayName%2C%20%27page-%27%29")
                        && query.contains("&$skiptoken=")
                        && !query.contains("%24")
                        && !query.contains('+'),
                    "{next}"
                );
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, made);
    let r = env.get(&t, "/applications?$top=1000").await;
    r.expect_error(400, "BadRequest");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn orderby_search_and_count_need_the_right_headers() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let made = ["bravo-svc", "alpha-svc", "charlie-other"].map(String::from);
    create_apps(&env, &t, &made).await;
    let eventual = [("ConsistencyLevel", "eventual")];
    // Sorting applications by displayName is an advanced query (docs/microsoft.md §22).
    let path = "/applications?$orderby=displayName desc&$select=displayName";
    env.get(&t, path)
        .await
        .expect_error(400, "Request_UnsupportedQuery");
    let path = format!("{path}&$count=true");
    let v = env.call(Method::GET, &path, &t, None, &eventual).await;
    assert_eq!(
        names(&v.expect(200)),
        ["charlie-other", "bravo-svc", "alpha-svc"]
    );

    let search = "/applications?$search=\"displayName:svc\"";
    env.get(&t, search)
        .await
        .expect_error(400, "Request_UnsupportedQuery");
    let path = format!("{search}&$count=true&$orderby=displayName&$top=1");
    let v = env.call(Method::GET, &path, &t, None, &eventual).await;
    let v = v.expect(200);
    assert_eq!(v["@odata.count"], 2);
    assert_eq!(names(&v), ["alpha-svc"]);
    let next = str_of(&v["@odata.nextLink"]);
    let v2 = env
        .call(Method::GET, &next, &t, None, &eventual)
        .await
        .json();
    let later = names(&v2);
    assert_eq!(
        later[0], "bravo-svc",
        "later pages keep $search and $orderby"
    );
    assert!(v2.get("@odata.nextLink").is_none());
    // Without the header Graph ignores `$count=true` on directory objects.
    let v = env.get(&t, "/applications?$count=true").await.expect(200);
    assert!(v.get("@odata.count").is_none(), "{v}");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn unknown_select_properties_options_unquoted_keys_and_untyped_bodies_are_refused() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    create_apps(&env, &t, &["select-me".to_owned()]).await;
    // A property the type does not have: Graph's 400, not the object without it.
    let err = env
        .get(&t, "/applications?$select=displayName,displayNmae")
        .await
        .expect_error(400, "BadRequest");
    let m = str_of(&err["error"]["message"]);
    assert!(
        m.contains("Could not find a property named 'displayNmae'"),
        "{m}"
    );
    let list = env
        .get(&t, "/applications?$select=displayName,APPID")
        .await
        .expect(200);
    let id = str_of(&list["value"][0]["appId"]);
    env.get(&t, &format!("/applications(appId='{id}')?$select=madeUp"))
        .await
        .expect_error(400, "BadRequest");
    // An alternate key is a string literal: unquoted, the URL is malformed, not a match.
    env.get(&t, &format!("/applications(appId={id})"))
        .await
        .expect_error(400, "BadRequest");
    env.get(&t, &format!("/applications(appId='{id}')"))
        .await
        .expect(200);
    // A system query option Graph does not have, or one the emulator does not serve.
    for option in ["$frobnicate=1", "$expand=owners"] {
        env.get(&t, &format!("/applications?{option}"))
            .await
            .expect_error(400, "BadRequest");
    }
    // A body must say it is JSON (Content-Type is "Required" on Graph's write pages).
    let body = Some(json!({"displayName": "untyped"}));
    let text = [("content-type", "text/plain")];
    env.call(Method::POST, "/applications", &t, body, &text)
        .await
        .expect_error(400, "BadRequest");
    env.sim.shutdown().await;
}
