//! Microsoft Entra B2B collaboration users ("guests") over real HTTPS: a member of the
//! provider's tenant, added as a guest of the customer's, signs in at the customer's authority
//! and acts there as the guest object (Learn "B2B collaboration user properties", "Understand
//! user tokens in Microsoft Entra B2B collaboration"); at `organizations` it still lands at home;
//! an account the customer does not know is refused with AADSTS50020.

use base64::Engine;
use entra_sim::{APP_ADMIN, Faults, GLOBAL_ADMIN, SimConfig, SimError, SimInfo, SimUser};
use serde_json::Value;
use testkit::wire::{CP1_CLAIMS, SCOPE, Wire, access_claims, claims, count, str_of};

/// The provider's tenant, where the home accounts live.
const HOME: &str = "provider.example";
/// The home account added as a guest: Application Administrator at home only.
const HOME_UPN: &str = "appadmin@provider.example";
/// What a B2B guest's `wids` carries instead of the member role.
const GUEST_WID: &str = "13bd1c72-6f4a-4dcf-985f-18d3b80f208a";
/// The member role every member's `wids` carries.
const MEMBER_WID: &str = "b79fbf4d-3ef9-4689-8143-76b194e85509";
/// The wizard's callback, registered for the token app's authorization code flow.
const CALLBACK: &str = "https://wizard.example/wizard/signed-in";
/// A PKCE verifier, sent as a plain challenge.
const VERIFIER: &str = "Mk3.yQ_~pL0-zZ9aVb8cXd7eWf6gUh5iTj4kSl3mRn2oQp1xw";

/// The emulator (its primary tenant is the customer's), the provider's tenant, and the guest
/// of [`HOME_UPN`] in the customer's tenant, a Global Administrator there.
async fn with_guest(config: SimConfig) -> (Wire, SimInfo, SimUser) {
    let env = Wire::start_with(config).await;
    let home = env.sim.add_tenant(HOME);
    let guest = env
        .sim
        .add_guest(HOME_UPN, &env.info.tenant_id, &[GLOBAL_ADMIN]);
    (env, home, guest.unwrap())
}

/// The user `upn` of tenant `info`.
fn user<'a>(info: &'a SimInfo, upn: &str) -> &'a SimUser {
    info.users.iter().find(|u| u.upn == upn).unwrap()
}

/// A device sign-in of `upn` at `authority`: the token answer.
async fn device_sign_in(env: &Wire, authority: &str, upn: &str) -> Value {
    let dc = env.device_code_at(authority, SCOPE).await.expect(200);
    env.complete_at(authority, &dc, upn).await.expect(200)
}

/// A JSON array of strings as a list.
fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(str_of).collect()
}

/// The claims of a token answer as a guest of `customer` (tid) from `home` (tid) must carry.
fn assert_guest_claims(tok: &Value, guest: &SimUser, customer: &str, home: &str) {
    let at = access_claims(tok);
    assert_eq!(at["tid"], customer, "{at}");
    assert_eq!(at["oid"], guest.id.as_str());
    assert_eq!(at["iss"], format!("https://sts.windows.net/{customer}/"));
    assert_eq!(at["idp"], format!("https://sts.windows.net/{home}/"));
    assert_eq!(at["unique_name"], HOME_UPN);
    assert_eq!(at["email"], HOME_UPN);
    assert!(at.get("upn").is_none(), "a guest's token has no upn: {at}");
    let wids = strings(&at["wids"]);
    assert!(wids.contains(&GLOBAL_ADMIN.to_string()), "{wids:?}");
    assert!(wids.contains(&GUEST_WID.to_string()), "{wids:?}");
    for home_only in [APP_ADMIN, MEMBER_WID] {
        assert!(!wids.contains(&home_only.to_string()), "{wids:?}");
    }
    let id = claims(&str_of(&tok["id_token"]));
    assert_eq!(id["preferred_username"], HOME_UPN, "{id}");
    assert_eq!(id["tid"], customer);
    assert_eq!(id["oid"], guest.id.as_str());
    assert!(
        str_of(&id["iss"]).ends_with(&format!("/{customer}/v2.0")),
        "{id}"
    );
    assert_eq!(id["idp"], format!("https://sts.windows.net/{home}/"));
    assert_eq!(strings(&id["wids"]), wids);
}

#[tokio::test]
async fn a_guest_signs_in_at_the_resource_tenant_by_id_and_by_domain() {
    let (env, home, guest) = with_guest(SimConfig::default()).await;
    let customer = env.info.tenant_id.clone();
    let home_user = user(&home, HOME_UPN);
    assert_ne!(guest.id, home_user.id, "the guest is an object of its own");
    assert_eq!(guest.upn, HOME_UPN, "it signs in with its home account");
    let ext = "appadmin_provider.example#EXT#@contoso.onmicrosoft.com";
    assert_eq!(guest.guest_upn.as_deref(), Some(ext));
    assert_eq!(guest.role_template_ids, [GLOBAL_ADMIN]);
    assert_eq!(guest.display_name, home_user.display_name);

    // Consent follows the member rules: a guest without an admin role in the customer's
    // tenant may not consent to the token app's admin-only permissions for it.
    let plain = format!("privroleadmin@{HOME}");
    env.sim.add_guest(&plain, &customer, &[]).unwrap();
    let dc = env.device_code_at(&customer, SCOPE).await.expect(200);
    let err = env
        .sim
        .complete_device_login(&str_of(&dc["user_code"]), &plain)
        .await;
    assert!(matches!(err, Err(SimError::ConsentRequired(_))), "{err:?}");

    let domain = env.info.tenant_domain.to_ascii_uppercase();
    for authority in [customer.as_str(), domain.as_str()] {
        let tok = device_sign_in(&env, authority, HOME_UPN).await;
        assert_guest_claims(&tok, &guest, &customer, &home.tenant_id);
        let t = str_of(&tok["access_token"]);

        // Graph acts in the customer's tenant as the guest.
        let me = env.get(&t, "/me").await.expect(200);
        assert_eq!(me["id"], guest.id.as_str());
        assert_eq!(me["userPrincipalName"], ext);
        assert_eq!(me["mail"], HOME_UPN);
        assert_eq!(me["displayName"], home_user.display_name.as_str());
        assert!(me.get("userType").is_none(), "$select-only: {me}");
        let me = env.get(&t, "/me?$select=id,userType").await.expect(200);
        assert_eq!(me["userType"], "Guest", "{me}");
        for path in ["/me/transitiveMemberOf", "/me/memberOf"] {
            let of = env.get(&t, path).await.expect(200);
            let roles: Vec<String> = of["value"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["@odata.type"] == "#microsoft.graph.directoryRole")
                .map(|o| str_of(&o["roleTemplateId"]))
                .collect();
            assert_eq!(roles, [GLOBAL_ADMIN], "{path}: {of}");
        }
        let org = env.get(&t, "/organization").await.expect(200);
        assert_eq!(org["value"][0]["id"], customer.as_str());

        // Renewed, it is still the guest; client_info names the home account (MSAL's home
        // account id).
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", env.info.token_app_client_id.as_str()),
            ("refresh_token", &str_of(&tok["refresh_token"])),
            ("scope", SCOPE),
            ("client_info", "1"),
            ("claims", CP1_CLAIMS),
        ];
        let renewed = env.token_at(authority, &form).await.expect(200);
        assert_guest_claims(&renewed, &guest, &customer, &home.tenant_id);
        let info = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(str_of(&renewed["client_info"]))
            .unwrap();
        let info: Value = serde_json::from_slice(&info).unwrap();
        assert_eq!(info["uid"], home_user.id.as_str());
        assert_eq!(info["utid"], home.tenant_id.as_str());
    }

    // Writes land in the customer's tenant, and its own admin sees them; the guest's first
    // sign-in consented the token app there as a member admin's would.
    let t = str_of(&device_sign_in(&env, &customer, HOME_UPN).await["access_token"]);
    let (app, _, secret) = env.provision(&t, "guest-made").await;
    let app_token = env.app_token(&app, &secret).await.expect(200);
    assert_eq!(access_claims(&app_token)["tid"], customer.as_str());
    let path = "/applications?$filter=displayName eq 'guest-made'";
    let admin = env.access_token("globaladmin").await;
    assert_eq!(count(&env.get(&admin, path).await.expect(200)), 1);
    let snap = env.sim.snapshot();
    let grants = snap["oauth2_permission_grants"].as_array().unwrap();
    let all = grants
        .iter()
        .filter(|g| g["consent_type"] == "AllPrincipals");
    assert_eq!(all.count(), 1, "{grants:?}");
    let home_admin = device_sign_in(&env, HOME, &format!("globaladmin@{HOME}")).await;
    let home_t = str_of(&home_admin["access_token"]);
    assert_eq!(count(&env.get(&home_t, path).await.expect(200)), 0);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn the_guest_is_a_user_of_the_resource_tenant_only() {
    let (env, home, guest) = with_guest(SimConfig::default()).await;
    let t = env.access_token("globaladmin").await;
    let users = env.get(&t, "/users").await.expect(200);
    let listed = users["value"].as_array().unwrap();
    let found = listed
        .iter()
        .find(|u| u["id"] == guest.id.as_str())
        .unwrap();
    assert_eq!(
        found["userPrincipalName"],
        guest.guest_upn.as_deref().unwrap()
    );
    assert!(
        listed.iter().all(|u| u.get("userType").is_none()),
        "{users}"
    );
    let by_id = env
        .get(&t, &format!("/users/{}", guest.id))
        .await
        .expect(200);
    assert_eq!(by_id["mail"], HOME_UPN);
    let path =
        "/users?$filter=userType eq 'Guest'&$select=id,userType,creationType,externalUserState";
    let guests = env.get(&t, path).await.expect(200);
    assert_eq!(count(&guests), 1, "{guests}");
    assert_eq!(guests["value"][0]["id"], guest.id.as_str());
    assert_eq!(guests["value"][0]["creationType"], "Invitation");
    assert_eq!(guests["value"][0]["externalUserState"], "Accepted");
    let path = "/users?$filter=userType eq 'Member'&$select=id,userType,externalUserState";
    let members = env.get(&t, path).await.expect(200);
    assert_eq!(count(&members), listed.len() - 1, "{members}");
    assert!(members["value"][0]["externalUserState"].is_null());
    let info = env.sim.info();
    assert_eq!(
        user(&info, HOME_UPN).id,
        guest.id,
        "info lists it by sign-in name"
    );
    assert!(user(&info, &env.upn("user")).guest_upn.is_none());

    // Not a user of its home tenant.
    let home_t =
        str_of(&device_sign_in(&env, HOME, &format!("globaladmin@{HOME}")).await["access_token"]);
    let home_users = env.get(&home_t, "/users").await.expect(200);
    assert_eq!(count(&home_users), home.users.len(), "{home_users}");
    env.get(&home_t, &format!("/users/{}", guest.id))
        .await
        .expect_error(404, "Request_ResourceNotFound");

    // Adding it again adds the roles it lacks to the same object; refusals.
    let again = env.sim.add_guest(
        HOME_UPN,
        &env.info.tenant_domain,
        &[APP_ADMIN, GLOBAL_ADMIN],
    );
    let again = again.unwrap();
    assert_eq!(again.id, guest.id);
    assert_eq!(again.role_template_ids.len(), 2, "{again:?}");
    let err = env
        .sim
        .add_guest("ghost@provider.example", &env.info.tenant_id, &[]);
    assert!(matches!(err, Err(SimError::UnknownUser(_))), "{err:?}");
    let err = env.sim.add_guest(HOME_UPN, "nowhere.example", &[]);
    assert!(matches!(err, Err(SimError::UnknownTenant(_))), "{err:?}");
    let err = env
        .sim
        .add_guest(&env.upn("user"), &env.info.tenant_id, &[]);
    assert!(matches!(err, Err(SimError::AlreadyMember(..))), "{err:?}");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn organizations_and_common_still_sign_the_home_account_in_at_home() {
    let (env, home, guest) = with_guest(SimConfig::default()).await;
    let home_user = user(&home, HOME_UPN).clone();
    for authority in ["organizations", "common"] {
        let tok = device_sign_in(&env, authority, HOME_UPN).await;
        let at = access_claims(&tok);
        assert_eq!(at["tid"], home.tenant_id.as_str(), "{at}");
        assert_eq!(at["oid"], home_user.id.as_str());
        assert_eq!(at["upn"], HOME_UPN);
        assert!(at.get("idp").is_none(), "{at}");
        assert!(strings(&at["wids"]).contains(&APP_ADMIN.to_string()));
        assert!(!strings(&at["wids"]).contains(&GLOBAL_ADMIN.to_string()));
        let t = str_of(&tok["access_token"]);
        let me = env.get(&t, "/me?$select=id,userPrincipalName,userType");
        let me = me.await.expect(200);
        assert_eq!(me["id"], home_user.id.as_str());
        assert_eq!(me["userType"], "Member");
        assert_ne!(me["id"], guest.id.as_str());
    }
    // The guest's #EXT# name is no sign-in name, at any authority.
    let ext = guest.guest_upn.unwrap();
    for authority in ["organizations", env.info.tenant_id.as_str()] {
        let dc = env.device_code_at(authority, SCOPE).await.expect(200);
        let err = env
            .sim
            .complete_device_login(&str_of(&dc["user_code"]), &ext)
            .await;
        assert!(matches!(err, Err(SimError::UnknownUser(_))), "{err:?}");
    }
    env.sim.shutdown().await;
}

#[tokio::test]
async fn an_account_of_another_tenant_that_is_no_guest_gets_aadsts50020() {
    let (env, home, _) = with_guest(SimConfig::default()).await;
    let stranger = format!("user@{HOME}");
    let customer = env.info.tenant_id.clone();
    let text = format!(
        "AADSTS50020: User account '{stranger}' from identity provider 'https://sts.windows.net/{}/' does not exist in tenant 'Contoso' and cannot access the application '{}'({}) in that tenant. The account needs to be added as an external user in the tenant first. Sign out and sign in again with a different Azure Active Directory user account.",
        home.tenant_id, env.info.token_app_client_id, env.info.token_app_display_name
    );
    for way in ["Sim::complete_device_login", "/_sim/devicelogin"] {
        let dc = env.device_code_at(&customer, SCOPE).await.expect(200);
        let user_code = str_of(&dc["user_code"]);
        if way == "/_sim/devicelogin" {
            let body = env.sim_login(&user_code, &stranger, None).await.expect(403);
            assert_eq!(body["error"], "user_not_in_tenant");
            assert_eq!(body["error_description"], text.as_str());
        } else {
            let err = env.sim.complete_device_login(&user_code, &stranger).await;
            let err = err.unwrap_err();
            assert!(matches!(err, SimError::ExternalUserNotInTenant(_)), "{err}");
            assert_eq!(err.to_string(), text);
        }
        // The poll reports it, as Entra's token endpoint reports a refused sign-in.
        let poll = env.poll_at(&customer, &str_of(&dc["device_code"])).await;
        let body = poll.expect_sts_error(400, "invalid_grant", 50020);
        let desc = str_of(&body["error_description"]);
        assert!(
            desc.starts_with(&format!("{text}\r\nTrace ID: ")),
            "{way}: {desc}"
        );
        let err = env.sim.complete_device_login(&user_code, HOME_UPN).await;
        assert!(matches!(err, Err(SimError::AlreadyCompleted)), "{err:?}");
    }
    // An account no tenant has is still AADSTS50034, and the code stays pending.
    let dc = env.device_code_at(&customer, SCOPE).await.expect(200);
    let user_code = str_of(&dc["user_code"]);
    let err = env
        .sim
        .complete_device_login(&user_code, "ghost@provider.example");
    assert!(matches!(err.await, Err(SimError::UnknownUser(_))));
    let poll = env.poll_at(&customer, &str_of(&dc["device_code"])).await;
    poll.expect_sts_error(400, "authorization_pending", 70016);
    env.sim.shutdown().await;
}

/// The token app's authorization request (plain PKCE) with the sign-in page's answer: `upn`
/// accepts.
fn authorize_form(env: &Wire, upn: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", env.info.token_app_client_id.clone()),
        ("response_type", "code".into()),
        ("redirect_uri", CALLBACK.into()),
        ("scope", SCOPE.into()),
        ("code_challenge", VERIFIER.into()),
        ("upn", upn.into()),
        ("action", "accept".into()),
    ]
}

#[tokio::test]
async fn the_browser_sign_in_at_the_resource_tenant_issues_the_guest_tokens() {
    let (env, home, guest) = with_guest(SimConfig::default()).await;
    env.sim.set_token_app_redirect_uris(vec![CALLBACK.into()]);
    let customer = env.info.tenant_id.clone();
    let browser = reqwest::Client::builder()
        .tls_certs_only([Wire::ca(&env.sim)])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = env.url(&format!("/{customer}/oauth2/v2.0/authorize"));
    // The page offers the guest by the account it signs in with.
    let mut q = authorize_form(&env, HOME_UPN);
    q.truncate(5);
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(q.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let page = browser.get(format!("{url}?{query}"));
    let page = env.send("GET page".into(), page).await;
    let page = page.expect_text(200);
    assert!(
        page.contains(&format!("<option value=\"{HOME_UPN}\"")),
        "{page}"
    );
    assert!(!page.contains("#EXT#"), "{page}");

    let stranger = format!("user@{HOME}");
    let post = browser.post(&url).form(&authorize_form(&env, &stranger));
    let refused = env
        .send("POST stranger".into(), post)
        .await
        .expect_text(400);
    assert!(
        refused.contains("AADSTS50020: User account &#39;user@provider.example&#39;"),
        "{refused}"
    );

    let post = browser.post(&url).form(&authorize_form(&env, HOME_UPN));
    let answer = env.send("POST guest".into(), post).await;
    assert_eq!(answer.status, 302, "{}", answer.text);
    let location = answer.headers["location"].to_str().unwrap().to_string();
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", env.info.token_app_client_id.as_str()),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
        ("scope", SCOPE),
    ];
    let tok = env.token_at(&customer, &form).await.expect(200);
    assert_guest_claims(&tok, &guest, &customer, &home.tenant_id);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn a_guest_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        faults: Faults::default(),
        ..SimConfig::default()
    };
    let (first, home, guest) = with_guest(config.clone()).await;
    first.sim.shutdown().await;

    let second = Wire::start_with(config).await;
    let listed = second.sim.info();
    assert_eq!(user(&listed, HOME_UPN), &guest, "listed as before");
    let saved = std::fs::read_to_string(dir.path().join("directory.json")).unwrap();
    assert!(saved.contains(guest.guest_upn.as_deref().unwrap()));
    let customer = second.info.tenant_id.clone();
    let tok = device_sign_in(&second, &customer, HOME_UPN).await;
    assert_guest_claims(&tok, &guest, &customer, &home.tenant_id);
    second.sim.shutdown().await;
}
