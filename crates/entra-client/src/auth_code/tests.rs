use std::collections::HashMap;

use proptest::prelude::*;
use secrecy::ExposeSecret;

use super::*;
use crate::testing::{Scripted, fake_client, token_ok};

fn started() -> BrowserSignIn {
    let (client, _) = fake_client(Vec::new());
    client
        .sts()
        .start_browser_sign_in(
            "organizations",
            "client-1",
            "https://wizard.example.net/wizard/signed-in",
            &["User.Read", "offline_access"],
            Some("admin@contoso.example"),
        )
        .unwrap()
}

fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_challenge_is_rfc_7636s_s256() {
    // RFC 7636 Appendix B.
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[test]
fn the_authorize_url_asks_for_a_code_with_an_s256_challenge() {
    let s = started();
    let url = s.authorization_url();
    assert_eq!(
        url.as_str().split('?').next(),
        Some("https://login.test/organizations/oauth2/v2.0/authorize")
    );
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "client-1");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["response_mode"], "query");
    assert_eq!(
        q["redirect_uri"],
        "https://wizard.example.net/wizard/signed-in"
    );
    assert_eq!(q["scope"], "User.Read offline_access");
    assert_eq!(q["login_hint"], "admin@contoso.example");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], s.state());
    assert_eq!(
        q["code_challenge"],
        pkce_challenge(s.verifier.expose_secret())
    );
    // The verifier: RFC 7636's unreserved characters, 43 to 128 of them; never in the URL.
    let v = s.verifier.expose_secret();
    assert!((43..=128).contains(&v.len()), "{v}");
    assert!(
        v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    );
    assert!(!url.as_str().contains(v));
    // Two sign-ins never share a state or a verifier.
    let t = started();
    assert_ne!(s.state(), t.state());
    assert_ne!(s.verifier.expose_secret(), t.verifier.expose_secret());
}

#[test]
fn the_redirect_is_read_as_microsoft_sends_it() {
    let s = started();
    let state = s.state().to_owned();
    let code = s
        .answer(&query(&[("code", "0.AAA-code"), ("state", &state)]))
        .unwrap();
    assert_eq!(code.expose_secret(), "0.AAA-code");
    // Each refusal: (error, description, declined?, AADSTS, HTTP status).
    let cases = [
        (
            "access_denied",
            "AADSTS65004: User declined to consent to access the app.",
            true,
            Some(65004),
            400,
        ),
        (
            "access_denied",
            "AADSTS53003: Access has been blocked by Conditional Access policies.",
            false,
            Some(53003),
            400,
        ),
        (
            "server_error",
            "AADSTS90033: A transient error",
            false,
            Some(90033),
            503,
        ),
        ("invalid_request", "no number", false, None, 400),
    ];
    for (error, description, declined, code, status) in cases {
        let e = s
            .answer(&query(&[
                ("error", error),
                ("error_description", description),
                ("state", &state),
            ]))
            .unwrap_err();
        assert_eq!(
            matches!(e, EntraError::DeviceCodeDeclined(_)),
            declined,
            "{e}"
        );
        let sts = e.sts().unwrap();
        assert_eq!((sts.error.as_str(), sts.code), (error, code));
        assert_eq!(sts.http_status, status);
    }
    // Another sign-in's state, or none, is refused whatever else the query says.
    for q in [
        query(&[("code", "c"), ("state", "other")]),
        query(&[("code", "c")]),
        query(&[("state", &state)]),
        query(&[("code", ""), ("state", &state)]),
    ] {
        assert!(
            matches!(s.answer(&q), Err(EntraError::InvalidInput(_))),
            "{q:?}"
        );
    }
}

proptest! {
    /// Any query: a code comes out only with this sign-in's state and no `error`.
    #[test]
    fn only_its_own_state_yields_a_code(
        pairs in proptest::collection::hash_map(
            prop_oneof![Just("code".to_owned()), Just("state".to_owned()),
                Just("error".to_owned()), Just("error_description".to_owned()), "[a-z_]{1,8}"],
            ".{0,40}",
            0..6,
        ),
        with_state in any::<bool>(),
    ) {
        let s = started();
        let mut q = pairs;
        if with_state {
            q.insert("state".into(), s.state().to_owned());
        }
        let out = s.answer(&q);
        let own = q.get("state").map(String::as_str) == Some(s.state());
        if let Ok(code) = out {
            prop_assert!(own && !q.contains_key("error"));
            prop_assert_eq!(code.expose_secret(), q["code"].as_str());
        }
    }
}

#[tokio::test]
async fn redeeming_sends_the_verifier_and_the_same_redirect_once() {
    let (client, fake) = fake_client(vec![token_ok("at")]);
    let s = client
        .sts()
        .start_browser_sign_in(
            "organizations",
            "client-1",
            "https://w.example/wizard/signed-in",
            &["User.Read"],
            None,
        )
        .unwrap();
    assert!(!s.authorization_url().as_str().contains("login_hint"));
    let tokens = s
        .redeem(&SecretString::from("the-code"), &OpContext::new())
        .await
        .unwrap();
    assert_eq!(tokens.access_token.expose_secret(), "at");
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].url.ends_with("/organizations/oauth2/v2.0/token"));
    let body: HashMap<String, String> = serde_urlencoded::from_str(&seen[0].body).unwrap();
    assert_eq!(body["grant_type"], "authorization_code");
    assert_eq!(body["client_id"], "client-1");
    assert_eq!(body["code"], "the-code");
    assert_eq!(body["redirect_uri"], "https://w.example/wizard/signed-in");
    assert_eq!(body["code_verifier"], s.verifier.expose_secret());
    assert_eq!(body["scope"], "User.Read");
    assert_eq!(body["claims"], CLIENT_CAPABILITIES);
    assert!(!body.contains_key("client_secret"));

    // A lost answer is not repeated: the code may have been redeemed.
    let (client, fake) = fake_client(vec![Scripted::Fail(crate::TransportErrorKind::Timeout)]);
    let s = client
        .sts()
        .start_browser_sign_in(
            "organizations",
            "c",
            "https://w.example/cb",
            &["User.Read"],
            None,
        )
        .unwrap();
    assert!(
        s.redeem(&SecretString::from("x"), &OpContext::new())
            .await
            .is_err()
    );
    assert_eq!(fake.seen().len(), 1);
}
