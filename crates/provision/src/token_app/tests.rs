use super::*;

/// The server's browser sign-in address in these tests.
const BROWSER: &str = "https://wizard.example.net/wizard/signed-in";

/// The facts of an app made exactly from the manifest.
fn from_manifest() -> AppFacts {
    let m = manifest("Fabrikam token app", &[BROWSER]).expect("manifest");
    let app: Application = serde_json::from_value(json!({
        "id": "obj",
        "appId": "11111111-2222-4333-8444-555555555555",
        "displayName": m["displayName"],
        "signInAudience": m["signInAudience"],
        "isFallbackPublicClient": m["isFallbackPublicClient"],
        "publicClient": m["publicClient"],
        "requiredResourceAccess": m["requiredResourceAccess"],
    }))
    .expect("application");
    AppFacts::from_application(&app)
}

#[test]
fn every_sign_in_scope_has_a_published_id_and_the_manifest_names_exactly_them() {
    let m = manifest("x", &[]).expect("manifest");
    let access = m["requiredResourceAccess"][0]["resourceAccess"]
        .as_array()
        .expect("array");
    let names: Vec<&str> = access
        .iter()
        .map(|a| {
            assert_eq!(a["type"], "Scope");
            graph_scope_name(a["id"].as_str().expect("id")).expect("known id")
        })
        .collect();
    assert_eq!(names, SIGN_IN_SCOPES);
    assert_eq!(m["signInAudience"], AUDIENCE);
    assert_eq!(m["isFallbackPublicClient"], true);
    assert_eq!(
        m["requiredResourceAccess"][0]["resourceAppId"],
        MICROSOFT_GRAPH_APP_ID
    );
}

#[test]
fn the_table_has_no_duplicate_names_or_ids() {
    for (i, (n, id)) in GRAPH_DELEGATED_SCOPE_IDS.iter().enumerate() {
        assert!(is_guid(id), "{n}: {id}");
        for (n2, id2) in &GRAPH_DELEGATED_SCOPE_IDS[i + 1..] {
            assert_ne!(n, n2);
            assert_ne!(id, id2, "{n} and {n2}");
        }
    }
}

#[test]
fn an_app_made_from_the_manifest_passes_every_rule() {
    let r = compare(&from_manifest(), None);
    assert_eq!(r.len(), 4);
    assert!(r.iter().all(|x| x.verdict == Verdict::Ok), "{r:#?}");
    assert_eq!(worst(&r), Verdict::Ok);
    // With the server's browser sign-in address, which the manifest then lists.
    let r = compare(&from_manifest(), Some(BROWSER));
    assert_eq!(r.len(), 5);
    assert!(r.iter().all(|x| x.verdict == Verdict::Ok), "{r:#?}");
}

#[test]
fn a_missing_browser_redirect_uri_is_a_warning_with_the_fix() {
    let mut app = from_manifest();
    app.public_client_redirect_uris.retain(|u| u != BROWSER);
    let r = compare(&app, Some(BROWSER));
    let rule = r
        .iter()
        .find(|x| x.rule == "browser_redirect_uri")
        .expect("rule");
    assert_eq!(rule.verdict, Verdict::Warn);
    assert!(rule.detail.contains("AADSTS50011"), "{}", rule.detail);
    let fix = rule.fix.as_deref().expect("fix");
    assert!(
        fix.contains(BROWSER) && fix.contains(NATIVE_CLIENT_REDIRECT_URI),
        "{fix}"
    );
    assert_eq!(worst(&r), Verdict::Warn);
    // Entra compares redirect URIs exactly: another path or letter case is not it.
    app.public_client_redirect_uris
        .push("https://wizard.example.net/wizard/Signed-In".into());
    let r = compare(&app, Some(BROWSER));
    assert_eq!(worst(&r), Verdict::Warn);
}

#[test]
fn a_missing_scope_is_a_fail_naming_it_and_its_id() {
    let mut app = from_manifest();
    let id = graph_scope_id("AppRoleAssignment.ReadWrite.All").expect("id");
    app.graph_scope_ids.retain(|i| i != id);
    let r = compare(&app, None);
    let scopes = r.iter().find(|x| x.rule == "graph_scopes").expect("rule");
    assert_eq!(scopes.verdict, Verdict::Fail);
    assert!(scopes.detail.contains("AppRoleAssignment.ReadWrite.All"));
    assert!(!scopes.detail.contains("Application.Read.All,"));
    assert!(
        scopes
            .fix
            .as_deref()
            .is_some_and(|f| f.contains(&format!("{id}=Scope")))
    );
    assert_eq!(worst(&r), Verdict::Fail);
}

#[test]
fn extra_scopes_are_fine_and_mentioned() {
    let mut app = from_manifest();
    app.graph_scope_ids
        .push(graph_scope_id("User.Read.All").expect("id").to_owned());
    app.graph_scope_ids.push("not-a-known-id".into());
    let r = compare(&app, None);
    let scopes = r.iter().find(|x| x.rule == "graph_scopes").expect("rule");
    assert_eq!(scopes.verdict, Verdict::Ok);
    assert!(scopes.detail.contains("User.Read.All"), "{}", scopes.detail);
    assert!(scopes.detail.contains("not-a-known-id"));
}

#[test]
fn public_client_flows_off_or_null_fail() {
    for v in [Some(false), None] {
        let mut app = from_manifest();
        app.public_client_flows = v;
        let r = compare(&app, None);
        assert_eq!(r[0].rule, "public_client_flows");
        assert_eq!(r[0].verdict, Verdict::Fail);
        assert!(
            r[0].fix
                .as_deref()
                .is_some_and(|f| f.contains("--is-fallback-public-client true"))
        );
    }
}

#[test]
fn audiences() {
    for (aud, want) in [
        (Some("AzureADMyOrg"), Verdict::Fail),
        (Some("PersonalMicrosoftAccount"), Verdict::Fail),
        (None, Verdict::Fail),
        (Some("AzureADandPersonalMicrosoftAccount"), Verdict::Warn),
        (Some("AzureADMultipleOrgs"), Verdict::Ok),
    ] {
        let mut app = from_manifest();
        app.sign_in_audience = aud.map(str::to_owned);
        let r = compare(&app, None);
        assert_eq!(r[1].rule, "sign_in_audience");
        assert_eq!(r[1].verdict, want, "{aud:?}");
    }
}

#[test]
fn a_missing_redirect_uri_is_only_a_warning() {
    let mut app = from_manifest();
    app.public_client_redirect_uris.clear();
    let r = compare(&app, None);
    assert_eq!(r[3].verdict, Verdict::Warn);
    assert_eq!(worst(&r), Verdict::Warn);
}

#[test]
fn client_id_rules() {
    assert!(client_id_problem("").is_some());
    assert!(client_id_problem("  ").is_some());
    assert!(client_id_problem("xyz").is_some());
    assert!(client_id_problem("00000000-0000-0000-0000-000000000000").is_some());
    assert!(client_id_problem("1f2e3d4c-0000-4000-8000-00000000abcd").is_none());
    assert!(!is_guid("1f2e3d4c00004000800000000000abcd"));
}

#[test]
fn a_loopback_browser_address_is_listed_without_its_port_and_found_on_any() {
    let at_port = "http://localhost:53123/wizard/signed-in";
    let listed = "http://localhost/wizard/signed-in";
    let m = manifest("x", &[at_port, listed, BROWSER]).expect("manifest");
    assert_eq!(
        m["publicClient"]["redirectUris"],
        json!([NATIVE_CLIENT_REDIRECT_URI, listed, BROWSER])
    );
    let table = [
        (at_port, listed),
        (
            "http://127.0.0.1:8080/wizard/signed-in",
            "http://127.0.0.1/wizard/signed-in",
        ),
        (
            "https://localhost:8443/wizard/signed-in",
            "https://localhost/wizard/signed-in",
        ),
        (BROWSER, BROWSER),
        (
            "https://wizard.example.net:8443/wizard/signed-in",
            "https://wizard.example.net:8443/wizard/signed-in",
        ),
        (
            "http://[::1]:8080/wizard/signed-in",
            "http://[::1]:8080/wizard/signed-in",
        ),
    ];
    for (uri, want) in table {
        assert_eq!(registered_redirect_uri(uri), want, "{uri}");
    }

    let mut app = from_manifest();
    app.public_client_redirect_uris = vec![listed.into()];
    for (uri, verdict) in [
        (at_port, Verdict::Ok),
        ("http://localhost:1/wizard/signed-in", Verdict::Ok),
        (listed, Verdict::Ok),
        // The host, scheme and path still count.
        ("http://127.0.0.1:53123/wizard/signed-in", Verdict::Warn),
        ("https://localhost:53123/wizard/signed-in", Verdict::Warn),
        ("http://localhost:53123/wizard/Signed-In", Verdict::Warn),
    ] {
        let r = compare(&app, Some(uri));
        let rule = r.iter().find(|x| x.rule == "browser_redirect_uri");
        assert_eq!(rule.map(|x| x.verdict), Some(verdict), "{uri}: {r:#?}");
    }
    // The fix names the address as the manifest lists it.
    app.public_client_redirect_uris.clear();
    let r = compare(&app, Some(at_port));
    let rule = r
        .iter()
        .find(|x| x.rule == "browser_redirect_uri")
        .expect("rule");
    let fix = rule.fix.as_deref().expect("fix");
    assert!(fix.contains(listed) && !fix.contains(at_port), "{fix}");
}
