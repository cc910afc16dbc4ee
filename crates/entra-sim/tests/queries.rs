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
        "/applications?$top=2&$filter=startswith(displayName,'page-')&$select=displayName"
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
