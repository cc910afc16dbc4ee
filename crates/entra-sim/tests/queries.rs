//! OData query options over real HTTPS: paging with `$top` and `@odata.nextLink`,
//! `$orderby`, `$search` and `$count`.

use entra_sim::Faults;
use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::wire::{Wire, assert_odata_error};

#[tokio::test]
async fn paging_with_top_and_next_link() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("globaladmin").await;
    for i in 0..5 {
        let (st, _) = env
            .graph(
                Method::POST,
                "/applications",
                &t,
                Some(json!({"displayName": format!("page-{i}")})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let mut url =
        "/applications?$top=2&$filter=startswith(displayName,'page-')&$select=displayName"
            .to_string();
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let (st, page) = env.graph(Method::GET, &url, &t, None).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        pages += 1;
        for v in page["value"].as_array().unwrap() {
            names.push(v["displayName"].as_str().unwrap().to_string());
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with(&format!("{}/v1.0/applications?", env.info.base_url)),
                    "{next}"
                );
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        vec!["page-0", "page-1", "page-2", "page-3", "page-4"]
    );
    let (st, body) = env
        .graph(Method::GET, "/applications?$top=1000", &t, None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_odata_error(&body, "BadRequest");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn orderby_search_and_count_need_the_right_headers() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("globaladmin").await;
    for name in ["bravo-svc", "alpha-svc", "charlie-other"] {
        let (st, _) = env
            .graph(
                Method::POST,
                "/applications",
                &t,
                Some(json!({"displayName": name})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let (_, v) = env
        .graph(
            Method::GET,
            "/applications?$orderby=displayName desc&$select=displayName",
            &t,
            None,
        )
        .await;
    let names: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["charlie-other", "bravo-svc", "alpha-svc"]);

    let (st, body) = env
        .graph(
            Method::GET,
            "/applications?$search=\"displayName:svc\"",
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_odata_error(&body, "Request_BadRequest");
    let eventual = [("ConsistencyLevel", "eventual")];
    let (st, _, v) = env
        .graph_full(
            Method::GET,
            "/applications?$search=\"displayName:svc\"&$count=true&$orderby=displayName&$top=1",
            &t,
            None,
            &eventual,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["@odata.count"], 2);
    assert_eq!(v["value"][0]["displayName"], "alpha-svc");
    let next = v["@odata.nextLink"].as_str().unwrap();
    let (_, _, v2) = env.graph_full(Method::GET, next, &t, None, &eventual).await;
    assert_eq!(
        v2["value"][0]["displayName"], "bravo-svc",
        "later pages keep $search and $orderby"
    );
    assert!(v2.get("@odata.nextLink").is_none());
    let (st, _) = env
        .graph(Method::GET, "/applications?$count=true", &t, None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    env.sim.shutdown().await;
}
