//! The admin-consent endpoint: an admin grants an app's requested permissions in one step.

use entra_sim::Faults;
use serde_json::{Value, json};
use testkit::wire::ids::{GRAPH, USER_READ_ALL};
use testkit::wire::{Wire, access_claims, count, str_of};

const USER_READ_SCOPE: &str = "e1fe6dd8-ba31-4d61-89e7-88639da4683d";
const CALLBACK: &str = "https://localhost/callback";

#[tokio::test]
async fn admin_consent_grants_roles_and_scopes_then_redirects() {
    let wire = Wire::start(Faults::default()).await;
    let env = &wire;
    let ga = env.access_token("globaladmin").await;
    let access =
        json!([{"id": USER_READ_ALL, "type": "Role"}, {"id": USER_READ_SCOPE, "type": "Scope"}]);
    let app = json!({
        "displayName": "consent-me",
        "web": {"redirectUris": [CALLBACK]},
        "requiredResourceAccess": [{"resourceAppId": GRAPH, "resourceAccess": access}]
    });
    let app = env.post(&ga, "/applications", app).await.expect(201);
    let app_id = str_of(&app["appId"]);
    let pw = env.add_password(&ga, &app, Value::Null).await.json();
    let secret = str_of(&pw["secretText"]);

    let browser = reqwest::Client::builder()
        .tls_certs_only([Wire::ca(&env.sim)])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = env.url(&format!("/{}/adminconsent", env.info.tenant_id));
    let (browser, url) = (&browser, &url);
    let get = move |pairs: &[(&str, &str)]| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            ser.append_pair(k, v);
        }
        let rb = browser.get(format!("{url}?{}", ser.finish()));
        env.send("GET adminconsent".into(), rb)
    };
    let q = [
        ("client_id", app_id.as_str()),
        ("state", "s-42"),
        ("redirect_uri", CALLBACK),
    ];
    let html = get(&q).await.expect_text(200);
    assert!(
        html.contains("consent-me") && html.contains("User.Read.All (application)"),
        "{html}"
    );

    // An unregistered redirect URI is refused (AADSTS50011).
    let bad = [
        ("client_id", app_id.as_str()),
        ("redirect_uri", "https://evil.example/"),
    ];
    assert!(get(&bad).await.expect_text(400).contains("AADSTS50011"));

    // Application Administrator cannot consent to Microsoft Graph app roles.
    let post = move |nick: &str, action: &str| {
        let (upn, action) = (env.upn(nick), action.to_string());
        let form = [
            &q[..],
            &[("upn", upn.as_str()), ("action", action.as_str())],
        ]
        .concat();
        let rb = browser.post(url).form(&form);
        async move {
            let r = env.send(format!("POST adminconsent as {upn}"), rb).await;
            assert_eq!(r.status, 302, "{}", r.text);
            r.headers["location"].to_str().unwrap().to_string()
        }
    };
    let loc = post("appadmin", "accept").await;
    assert!(
        loc.starts_with(CALLBACK)
            && loc.contains("error=permission_denied")
            && loc.contains("state=s-42"),
        "{loc}"
    );
    let loc = post("privroleadmin", "cancel").await;
    assert!(loc.contains("error=permission_denied"), "{loc}");

    let loc = post("privroleadmin", "accept").await;
    let tenant = &env.info.tenant_id;
    let want = format!("{CALLBACK}?tenant={tenant}&state=s-42&admin_consent=True");
    assert_eq!(loc, want);

    // The SP now exists with the app role and the delegated grant.
    let tok = env.app_token(&app, &secret).await.expect(200);
    assert_eq!(access_claims(&tok)["roles"], json!(["User.Read.All"]));
    let sp = env
        .get(&ga, &format!("/servicePrincipals(appId='{app_id}')"))
        .await;
    let sp = format!("/servicePrincipals/{}", str_of(&sp.expect(200)["id"]));
    let grants = env.get(&ga, &format!("{sp}/oauth2PermissionGrants")).await;
    let grants = grants.expect(200);
    assert_eq!(grants["value"][0]["scope"], "User.Read");
    assert_eq!(grants["value"][0]["consentType"], "AllPrincipals");
    // Consenting twice adds nothing.
    post("globaladmin", "accept").await;
    let assigned = env.get(&ga, &format!("{sp}/appRoleAssignments")).await;
    assert_eq!(count(&assigned.expect(200)), 1);
    wire.sim.shutdown().await;
}
