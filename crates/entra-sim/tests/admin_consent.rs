//! The admin-consent endpoint: an admin grants an app's requested permissions in one step.

use entra_sim::Faults;
use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::wire::{Wire, claims};

const GRAPH: &str = "00000003-0000-0000-c000-000000000000";
const USER_READ_ALL_ROLE: &str = "df021288-bdef-4463-88db-98f22de89214";
const USER_READ_SCOPE: &str = "e1fe6dd8-ba31-4d61-89e7-88639da4683d";
const CALLBACK: &str = "https://localhost/callback";

#[tokio::test]
async fn admin_consent_grants_roles_and_scopes_then_redirects() {
    let env = Wire::start(Faults::default()).await;
    let ga = env.access_token("globaladmin").await;
    let (st, app) = env
        .graph(
            Method::POST,
            "/applications",
            &ga,
            Some(json!({
                "displayName": "consent-me",
                "web": {"redirectUris": [CALLBACK]},
                "requiredResourceAccess": [{"resourceAppId": GRAPH, "resourceAccess": [
                    {"id": USER_READ_ALL_ROLE, "type": "Role"}, {"id": USER_READ_SCOPE, "type": "Scope"}]}]
            })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let app_id = app["appId"].as_str().unwrap();
    let (_, pw) = env
        .graph(
            Method::POST,
            &format!("/applications/{}/addPassword", app["id"].as_str().unwrap()),
            &ga,
            Some(json!({})),
        )
        .await;
    let secret = pw["secretText"].as_str().unwrap();

    let ca = reqwest::Certificate::from_pem(env.sim.ca_pem().as_bytes()).unwrap();
    let browser = reqwest::Client::builder()
        .tls_certs_only([ca])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = env.url(&format!("/{}/adminconsent", env.info.tenant_id));
    let q = [
        ("client_id", app_id),
        ("state", "s-42"),
        ("redirect_uri", CALLBACK),
    ];
    let with_query = |pairs: &[(&str, &str)]| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            ser.append_pair(k, v);
        }
        format!("{url}?{}", ser.finish())
    };
    let page = browser.get(with_query(&q)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("consent-me") && html.contains("User.Read.All (application)"),
        "{html}"
    );

    // An unregistered redirect URI is refused (AADSTS50011).
    let bad = browser
        .get(with_query(&[
            ("client_id", app_id),
            ("redirect_uri", "https://evil.example/"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("AADSTS50011"));

    // Application Administrator cannot consent to Microsoft Graph app roles.
    let post = |upn: String, action: &'static str| {
        let browser = browser.clone();
        let url = url.clone();
        async move {
            browser
                .post(&url)
                .form(&[
                    ("client_id", app_id),
                    ("state", "s-42"),
                    ("redirect_uri", CALLBACK),
                    ("upn", upn.as_str()),
                    ("action", action),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(env.upn("appadmin"), "accept").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(CALLBACK)
            && loc.contains("error=permission_denied")
            && loc.contains("state=s-42"),
        "{loc}"
    );
    let r = post(env.upn("privroleadmin"), "cancel").await;
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=permission_denied")
    );

    let r = post(env.upn("privroleadmin"), "accept").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        loc,
        format!(
            "{CALLBACK}?tenant={}&state=s-42&admin_consent=True",
            env.info.tenant_id
        )
    );

    // The SP now exists with the app role and the delegated grant.
    let (st, tok) = env
        .client_credentials(app_id, secret, "https://graph.microsoft.com/.default")
        .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(
        claims(tok["access_token"].as_str().unwrap())["roles"],
        json!(["User.Read.All"])
    );
    let (_, sp) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals(appId='{app_id}')"),
            &ga,
            None,
        )
        .await;
    let (_, grants) = env
        .graph(
            Method::GET,
            &format!(
                "/servicePrincipals/{}/oauth2PermissionGrants",
                sp["id"].as_str().unwrap()
            ),
            &ga,
            None,
        )
        .await;
    assert_eq!(grants["value"][0]["scope"], "User.Read");
    assert_eq!(grants["value"][0]["consentType"], "AllPrincipals");
    // Consenting twice adds nothing.
    let r = post(env.upn("globaladmin"), "accept").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let (_, assigned) = env
        .graph(
            Method::GET,
            &format!(
                "/servicePrincipals/{}/appRoleAssignments",
                sp["id"].as_str().unwrap()
            ),
            &ga,
            None,
        )
        .await;
    assert_eq!(assigned["value"].as_array().unwrap().len(), 1);
    env.sim.shutdown().await;
}
