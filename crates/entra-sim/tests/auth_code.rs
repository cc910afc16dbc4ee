//! The authorization code flow with PKCE over real HTTPS (Learn v2-oauth2-auth-code-flow,
//! RFC 7636): the sign-in page, the redirect back to the app, the code's redemption and its
//! refusals; and a Conditional Access policy that blocks the device code flow only.

use std::collections::HashMap;

use base64::Engine;
use entra_sim::{Faults, SimError};
use serde_json::json;
use sha2::Digest;
use testkit::sim::{TOKEN_APP, authorize};
use testkit::wire::ids::GRAPH;
use testkit::wire::{Answer, CP1_CLAIMS, SCOPE, Wire, access_claims, claims, str_of};

/// The wizard's callback, registered as the token app's public-client redirect URI.
const CALLBACK: &str = "https://wizard.example/wizard/signed-in";
/// A PKCE verifier (RFC 7636: 43 to 128 unreserved characters).
const VERIFIER: &str = "Mk3.yQ_~pL0-zZ9aVb8cXd7eWf6gUh5iTj4kSl3mRn2oQp1xw";
/// Graph's delegated `User.Read`.
const USER_READ_SCOPE: &str = "e1fe6dd8-ba31-4d61-89e7-88639da4683d";

/// Request or form parameters a case edits.
type Pairs = Vec<(&'static str, String)>;

fn challenge(verifier: &str) -> String {
    let digest = sha2::Sha256::digest(verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// Sets `key` to `value` (replacing it).
fn set(pairs: &mut Pairs, key: &'static str, value: &str) {
    pairs.retain(|(k, _)| *k != key);
    pairs.push((key, value.to_string()));
}

/// Removes `key`.
fn remove(pairs: &mut Pairs, key: &str) {
    pairs.retain(|(k, _)| *k != key);
}

/// A case's change to the parameters: `-key` removes it, `key=value` sets it; anything else
/// (`@tenant`, `Origin`: how the request is sent) leaves them.
fn edit(pairs: &mut Pairs, spec: &'static str) {
    if let Some(key) = spec.strip_prefix('-') {
        remove(pairs, key);
    } else if let Some((key, value)) = spec.split_once('=') {
        set(pairs, key, value);
    }
}

fn encode(pairs: &Pairs) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish()
}

/// The emulator with the wizard's callback registered for the token app.
async fn start(faults: Faults) -> Wire {
    let env = Wire::start(faults).await;
    env.sim.set_token_app_redirect_uris(vec![CALLBACK.into()]);
    env
}

/// The wizard's authorization request for the token app (S256 PKCE, state `s-42`).
fn request(env: &Wire) -> Pairs {
    vec![
        ("client_id", env.info.token_app_client_id.clone()),
        ("response_type", "code".into()),
        ("redirect_uri", CALLBACK.into()),
        ("scope", SCOPE.into()),
        ("state", "s-42".into()),
        ("code_challenge", challenge(VERIFIER)),
        ("code_challenge_method", "S256".into()),
    ]
}

fn authorize_url(env: &Wire, tenant: &str, q: &Pairs) -> String {
    env.url(&format!("/{tenant}/oauth2/v2.0/authorize?{}", encode(q)))
}

/// A browser that does not follow redirects.
fn browser(env: &Wire) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([Wire::ca(&env.sim)])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// GET `url` in the browser.
async fn open(env: &Wire, url: &str) -> Answer {
    env.send(format!("GET {url}"), browser(env).get(url)).await
}

/// The page's form posted by hand: the request `q`, `upn` of `nick`, `action`.
async fn post_page(env: &Wire, tenant: &str, q: &Pairs, nick: &str, action: &str) -> Answer {
    let mut form = q.clone();
    form.extend([("upn", env.upn(nick)), ("action", action.to_string())]);
    let url = env.url(&format!("/{tenant}/oauth2/v2.0/authorize"));
    env.send(format!("POST {url}"), browser(env).post(url).form(&form))
        .await
}

/// The parameters of a redirect to `callback` (query or, with `#`, fragment).
fn back(callback: &str, location: &str) -> HashMap<String, String> {
    let rest = location.strip_prefix(callback);
    let query = rest.and_then(|r| r.strip_prefix('?').or_else(|| r.strip_prefix('#')));
    let query = query.unwrap_or_else(|| panic!("not a redirect to {callback}: {location}"));
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// `nick` signs in through the page at `url` (a redirect to `callback`): the code.
async fn code_at(env: &Wire, url: &str, callback: &str, nick: &str) -> String {
    let location = authorize(&env.sim, url, nick, true).await.unwrap();
    let q = back(callback, &location);
    assert_eq!(q["state"], "s-42", "{location}");
    q.get("code")
        .unwrap_or_else(|| panic!("no code: {location}"))
        .clone()
}

/// A code for the wizard's request at `tenant`, signed in as the Global Administrator.
async fn code(env: &Wire, tenant: &str) -> String {
    let url = authorize_url(env, tenant, &request(env));
    code_at(env, &url, CALLBACK, "globaladmin").await
}

/// The wizard's redemption of `code`, declaring `cp1`.
fn redemption(env: &Wire, code: &str) -> Pairs {
    vec![
        ("grant_type", "authorization_code".into()),
        ("client_id", env.info.token_app_client_id.clone()),
        ("code", code.into()),
        ("redirect_uri", CALLBACK.into()),
        ("code_verifier", VERIFIER.into()),
        ("scope", SCOPE.into()),
        ("claims", CP1_CLAIMS.into()),
    ]
}

/// POSTs `form` to `tenant`'s token endpoint, with an `Origin` header when `origin`.
async fn redeem(env: &Wire, tenant: &str, form: &Pairs, origin: bool) -> Answer {
    let url = env.url(&format!("/{tenant}/oauth2/v2.0/token"));
    let mut rb = env.http.post(url).form(form);
    if origin {
        rb = rb.header("origin", "https://spa.example");
    }
    env.send(format!("POST token at {tenant}"), rb).await
}

#[tokio::test]
async fn a_user_signs_in_with_a_code_and_pkce_at_each_authority() {
    let env = start(Faults::default()).await;
    let tid = env.info.tenant_id.clone();
    let domain = env.info.tenant_domain.clone();
    let upn = env.upn("globaladmin");
    for tenant in [tid.as_str(), domain.as_str(), "organizations"] {
        let mut q = request(&env);
        q.push(("login_hint", env.upn("appadmin")));
        let url = authorize_url(&env, tenant, &q);
        let page = open(&env, &url).await.expect_text(200);
        assert!(page.contains(TOKEN_APP), "{page}");
        let hinted = format!("value=\"{}\" selected>", env.upn("appadmin"));
        assert!(page.contains(&hinted), "login_hint pre-selects: {page}");
        let hidden = format!("name=\"code_challenge\" value=\"{}\"", challenge(VERIFIER));
        assert!(page.contains(&hidden), "{page}");

        let code = code_at(&env, &url, CALLBACK, "globaladmin").await;
        let tok = redeem(&env, tenant, &redemption(&env, &code), false).await;
        let tok = tok.expect(200);
        for field in ["access_token", "refresh_token", "id_token"] {
            assert!(tok[field].is_string(), "{tenant}: no {field} in {tok}");
        }
        assert_eq!(claims(&str_of(&tok["id_token"]))["preferred_username"], upn);
        let access = access_claims(&tok);
        assert_eq!(
            (&access["tid"], &access["xms_cc"]),
            (&json!(tid), &json!(["cp1"]))
        );
        let me = env.get(&str_of(&tok["access_token"]), "/me").await;
        assert_eq!(me.expect(200)["userPrincipalName"], upn.as_str());
        env.refresh(&tok).await.expect(200);
    }
    // The first consent made the token app's service principal in the tenant, once.
    let sps = env.sim.snapshot()["service_principals"].clone();
    let ours = sps.as_array().unwrap().iter();
    let ours = ours.filter(|sp| sp["app_id"] == env.info.token_app_client_id.as_str());
    assert_eq!(ours.count(), 1);
}

#[tokio::test]
async fn cancel_and_the_decline_fault_send_access_denied_back() {
    let declined = Faults {
        decline_all_signins: true,
        ..Faults::default()
    };
    for (accept, faults) in [(false, Faults::default()), (true, declined)] {
        let env = start(faults).await;
        let url = authorize_url(&env, &env.info.tenant_id, &request(&env));
        let location = authorize(&env.sim, &url, "globaladmin", accept).await;
        let q = back(CALLBACK, &location.unwrap());
        assert_eq!(q["error"], "access_denied");
        let why = "AADSTS65004: User declined to consent to access the app.";
        assert_eq!(q["error_description"], why);
        assert_eq!(q["state"], "s-42");
        assert!(!q.contains_key("code"));
    }
}

#[tokio::test]
async fn an_unknown_app_tenant_or_reply_address_gets_an_error_page_never_a_redirect() {
    let env = start(Faults::default()).await;
    let tid = env.info.tenant_id.clone();
    let cases = [
        (
            "client_id=6c1f7b3e-0000-4000-8000-000000000001",
            "AADSTS700016",
        ),
        ("redirect_uri=https://evil.example/cb", "AADSTS50011"),
        (
            "redirect_uri=HTTPS://WIZARD.EXAMPLE/WIZARD/SIGNED-IN",
            "AADSTS50011",
        ),
        ("-redirect_uri", "AADSTS900971"),
        ("@nosuch.example", "AADSTS90002"),
    ];
    for (spec, code) in cases {
        let mut q = request(&env);
        edit(&mut q, spec);
        let tenant = spec.strip_prefix('@').unwrap_or(&tid);
        let page = open(&env, &authorize_url(&env, tenant, &q)).await;
        let posted = post_page(&env, tenant, &q, "globaladmin", "accept").await;
        for answer in [page, posted] {
            assert!(!answer.headers.contains_key("location"), "{spec}");
            assert!(answer.expect_text(400).contains(code), "{spec}");
        }
    }
    // Until the token app has the callback registered, it is not its reply address.
    env.sim.set_token_app_redirect_uris(vec![]);
    let page = open(&env, &authorize_url(&env, &tid, &request(&env))).await;
    assert!(page.expect_text(400).contains("AADSTS50011"));
}

#[tokio::test]
async fn other_request_errors_go_back_to_the_registered_reply_address() {
    let env = start(Faults::default()).await;
    let cases = [
        ("-response_type", "invalid_request", 900144),
        ("response_type=token", "unsupported_response_type", 70005),
        (
            "response_type=code id_token",
            "unsupported_response_type",
            700054,
        ),
        ("-scope", "invalid_request", 900144),
        ("scope=Nope.Nothing", "invalid_scope", 70011),
        ("code_challenge_method=S512", "invalid_request", 50149),
        ("code_challenge=abc", "invalid_request", 501491),
        ("-code_challenge", "invalid_request", 50147),
        ("response_mode=bogus", "invalid_request", 70007),
        ("prompt=none", "login_required", 50058),
    ];
    for (spec, error, code) in cases {
        let mut q = request(&env);
        edit(&mut q, spec);
        let answer = open(&env, &authorize_url(&env, &env.info.tenant_id, &q)).await;
        assert_eq!(answer.status, 302, "{spec}: {}", answer.text);
        let q = back(CALLBACK, answer.headers["location"].to_str().unwrap());
        assert_eq!(q["error"], error, "{spec}");
        let description = &q["error_description"];
        let prefix = format!("AADSTS{code}: ");
        assert!(description.starts_with(&prefix), "{spec}: {description}");
        assert_eq!(q["state"], "s-42", "{spec}");
    }
}

#[tokio::test]
async fn fragment_and_form_post_answer_modes() {
    let env = start(Faults::default()).await;
    let tid = env.info.tenant_id.clone();
    let mut q = request(&env);
    set(&mut q, "response_mode", "fragment");
    let answer = post_page(&env, &tid, &q, "globaladmin", "accept").await;
    let location = answer.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{CALLBACK}#code=")),
        "{location}"
    );
    let code = &back(CALLBACK, location)["code"];
    redeem(&env, &tid, &redemption(&env, code), false)
        .await
        .expect(200);

    set(&mut q, "response_mode", "form_post");
    let html = post_page(&env, &tid, &q, "globaladmin", "accept").await;
    let html = html.expect_text(200);
    assert!(html.contains(&format!("action=\"{CALLBACK}\"")), "{html}");
    assert!(html.contains("name=\"code\" value=\"") && html.contains("value=\"s-42\""));
}

#[tokio::test]
async fn a_redemption_is_refused_as_entra_refuses_it() {
    let env = start(Faults::default()).await;
    let tid = env.info.tenant_id.clone();
    let cases = [
        ("code=not-a-code", "invalid_grant", 9002313),
        ("-code", "invalid_request", 900144),
        (
            "client_id=6c1f7b3e-0000-4000-8000-000000000002",
            "invalid_grant",
            70000,
        ),
        (
            "redirect_uri=https://wizard.example/x",
            "invalid_grant",
            50011,
        ),
        ("@organizations", "invalid_grant", 700005),
        ("-code_verifier", "invalid_grant", 50148),
        (
            "code_verifier=0000000000000000000000000000000000000000000",
            "invalid_grant",
            501481,
        ),
        ("code_verifier=short", "invalid_grant", 501481),
        ("client_secret=s3cret", "invalid_client", 700025),
        ("Origin", "invalid_request", 9002326),
    ];
    for (spec, error, number) in cases {
        let code = code(&env, &tid).await;
        let mut form = redemption(&env, &code);
        edit(&mut form, spec);
        let tenant = spec.strip_prefix('@').unwrap_or(&tid);
        let answer = redeem(&env, tenant, &form, spec == "Origin").await;
        let status = if error == "invalid_client" { 401 } else { 400 };
        assert_eq!(answer.status, status, "{spec}: {}", answer.text);
        answer.expect_sts_error(status, error, number);
    }
}

#[tokio::test]
async fn a_code_is_single_use_and_short_lived() {
    let env = start(Faults::default()).await;
    let tid = env.info.tenant_id.clone();
    let used = code(&env, &tid).await;
    redeem(&env, &tid, &redemption(&env, &used), false)
        .await
        .expect(200);
    let again = redeem(&env, &tid, &redemption(&env, &used), false).await;
    again.expect_sts_error(400, "invalid_grant", 54005);

    // A failed PKCE check by the code's own client spends the code.
    let spent = code(&env, &tid).await;
    let mut wrong = redemption(&env, &spent);
    set(&mut wrong, "code_verifier", &"y".repeat(43));
    let r = redeem(&env, &tid, &wrong, false).await;
    r.expect_sts_error(400, "invalid_grant", 501481);
    let r = redeem(&env, &tid, &redemption(&env, &spent), false).await;
    r.expect_sts_error(400, "invalid_grant", 54005);

    // A request that is not the code's client's (another reply address) leaves it.
    let kept = code(&env, &tid).await;
    let mut elsewhere = redemption(&env, &kept);
    set(&mut elsewhere, "redirect_uri", "https://wizard.example/x");
    let r = redeem(&env, &tid, &elsewhere, false).await;
    r.expect_sts_error(400, "invalid_grant", 50011);
    redeem(&env, &tid, &redemption(&env, &kept), false)
        .await
        .expect(200);

    env.sim.set_faults(Faults {
        auth_code_ttl_s: Some(0),
        ..Faults::default()
    });
    let expired = code(&env, &tid).await;
    let r = redeem(&env, &tid, &redemption(&env, &expired), false).await;
    let body = r.expect_sts_error(400, "invalid_grant", 70008);
    let why = "AADSTS70008: The provided authorization code or refresh token has expired";
    assert!(str_of(&body["error_description"]).starts_with(why));
}

#[tokio::test]
async fn a_web_app_redeems_with_its_secret_and_an_spa_cross_origin_with_pkce() {
    const WEB: &str = "https://app.example/signin-oidc";
    const SPA: &str = "https://spa.example/";
    let env = &start(Faults::default()).await;
    let tid = env.info.tenant_id.clone();
    let ga = env.access_token("globaladmin").await;
    let access = json!([{"id": USER_READ_SCOPE, "type": "Scope"}]);
    let app = json!({
        "displayName": "code-flow-app",
        "web": {"redirectUris": [WEB]},
        "spa": {"redirectUris": [SPA]},
        "requiredResourceAccess": [{"resourceAppId": GRAPH, "resourceAccess": access}]
    });
    let app = env.post(&ga, "/applications", app).await.expect(201);
    let app_id = str_of(&app["appId"]);
    let pw = env.add_password(&ga, &app, serde_json::Value::Null).await;
    let secret = str_of(&pw.expect(200)["secretText"]);
    let code_for = |callback: &'static str, pkce: bool| {
        let mut q = request(env);
        set(&mut q, "client_id", &app_id);
        set(&mut q, "redirect_uri", callback);
        set(&mut q, "scope", "User.Read offline_access openid");
        if !pkce {
            remove(&mut q, "code_challenge");
            remove(&mut q, "code_challenge_method");
        }
        let url = authorize_url(env, &tid, &q);
        async move { code_at(env, &url, callback, "globaladmin").await }
    };
    let form = |code: &str, callback: &str| {
        let mut f = redemption(env, code);
        set(&mut f, "client_id", &app_id);
        set(&mut f, "redirect_uri", callback);
        remove(&mut f, "scope");
        f
    };

    // A web app is a confidential client: its secret (missing, wrong, then right).
    let code = code_for(WEB, false).await;
    let mut f = form(&code, WEB);
    remove(&mut f, "code_verifier");
    let r = redeem(env, &tid, &f, false).await;
    r.expect_sts_error(401, "invalid_client", 7000218);
    set(&mut f, "client_secret", "not-the-secret");
    let r = redeem(env, &tid, &f, false).await;
    r.expect_sts_error(401, "invalid_client", 7000215);
    set(&mut f, "client_secret", &secret);
    let tok = redeem(env, &tid, &f, false).await.expect(200);
    assert_eq!(access_claims(&tok)["scp"], "User.Read");

    // An SPA redeems cross-origin, and only with PKCE.
    let code = code_for(SPA, false).await;
    let r = redeem(env, &tid, &form(&code, SPA), true).await;
    r.expect_sts_error(400, "invalid_request", 9002325);
    let code = code_for(SPA, true).await;
    let r = redeem(env, &tid, &form(&code, SPA), false).await;
    r.expect_sts_error(400, "invalid_request", 9002327);
    redeem(env, &tid, &form(&code, SPA), true).await.expect(200);
}

#[tokio::test]
async fn conditional_access_blocks_the_device_code_flow_but_not_the_code_flow() {
    let env = start(Faults {
        block_device_code: true,
        ..Faults::default()
    })
    .await;
    let upn = env.upn("globaladmin");
    let blocked = "AADSTS53003: Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.";
    for way in [
        "Sim::complete_device_login",
        "/_sim/devicelogin",
        "/devicelogin",
    ] {
        let dc = env.device_code(SCOPE).await;
        let user_code = str_of(&dc["user_code"]);
        match way {
            "Sim::complete_device_login" => {
                let err = env.sim.complete_device_login(&user_code, &upn).await;
                let err = err.unwrap_err();
                assert!(matches!(err, SimError::BlockedByConditionalAccess), "{err}");
                assert_eq!(err.to_string(), blocked);
            }
            "/_sim/devicelogin" => {
                let body = env.sim_login(&user_code, &upn, None).await.expect(403);
                assert_eq!(body["error"], "access_blocked");
                assert_eq!(body["error_description"], blocked);
            }
            _ => {
                let form = [
                    ("user_code", user_code.as_str()),
                    ("upn", &upn),
                    ("action", "approve"),
                ];
                let page = env.post_form("/devicelogin", &form).await.expect_text(403);
                assert!(page.contains("AADSTS53003"), "{page}");
            }
        }
        let poll = env.poll(&str_of(&dc["device_code"])).await;
        let body = poll.expect_sts_error(400, "invalid_grant", 53003);
        assert!(
            str_of(&body["error_description"]).starts_with(blocked),
            "{way}"
        );
    }
    let tid = env.info.tenant_id.clone();
    let code = code(&env, &tid).await;
    redeem(&env, &tid, &redemption(&env, &code), false)
        .await
        .expect(200);
}

/// Microsoft's localhost exceptions (reply-url, RFC 8252 §7.3): a loopback reply address
/// registered without a port accepts the port a native app listens on at the time; the host
/// still counts; the redemption names the very address the request did.
#[tokio::test]
async fn a_loopback_reply_address_matches_on_any_port_and_nothing_else() {
    let env = start(Faults::default()).await;
    let registered = "http://localhost/wizard/signed-in";
    env.sim.set_token_app_redirect_uris(vec![registered.into()]);
    let tid = env.info.tenant_id.clone();
    let at_port = "http://localhost:53123/wizard/signed-in";
    let mut q = request(&env);
    set(&mut q, "redirect_uri", at_port);
    let code = code_at(&env, &authorize_url(&env, &tid, &q), at_port, "globaladmin").await;
    let mut form = redemption(&env, &code);
    set(&mut form, "redirect_uri", at_port);
    let tok = redeem(&env, &tid, &form, false).await.expect(200);
    assert!(tok["access_token"].is_string(), "{tok}");

    let code = code_at(&env, &authorize_url(&env, &tid, &q), at_port, "globaladmin").await;
    for other_port in [registered, "http://localhost:1/wizard/signed-in"] {
        let mut form = redemption(&env, &code);
        set(&mut form, "redirect_uri", other_port);
        let answer = redeem(&env, &tid, &form, false).await;
        answer.expect_sts_error(400, "invalid_grant", 50011);
    }

    for other in [
        "http://127.0.0.1:53123/wizard/signed-in",
        "https://localhost:53123/wizard/signed-in",
        "http://localhost:53123/Wizard/signed-in",
    ] {
        set(&mut q, "redirect_uri", other);
        let page = open(&env, &authorize_url(&env, &tid, &q)).await;
        assert!(page.expect_text(400).contains("AADSTS50011"), "{other}");
    }
}
