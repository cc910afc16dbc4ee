use proptest::prelude::*;

use super::*;

/// Microsoft's CAE example (app-resilience-continuous-access-evaluation), as Graph sends it.
const CAE: &str = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0=""#;

#[test]
fn reads_microsofts_example() {
    let c = parse_www_authenticate(CAE);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].scheme, "Bearer");
    assert_eq!(c[0].param("realm"), Some(""));
    assert_eq!(c[0].param("ERROR"), Some("insufficient_claims"));
    let found = find_claims_challenge([CAE]).expect("a claims challenge");
    assert_eq!(
        found.claims_request().as_deref(),
        Some(r#"{"access_token":{"nbf":{"essential":true, "value":"1604106651"}}}"#)
    );
    assert_eq!(found.description, None);
}

#[test]
fn reads_a_pop_challenge_before_the_bearer_one() {
    // As Azure's SDK tests record ARM sending it: two challenges in one value, the first
    // with a `nonce` that ends in `=`, and an error_description with commas and colons.
    let v = r#"PoP realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", nonce="ey==", Bearer realm="", error_description="Continuous access evaluation resulted in challenge with result: InteractionRequired and code: TokenIssuedBeforeRevocationTimestamp, again", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTcyNjI1ODEyMiJ9fX0=" "#;
    let c = parse_www_authenticate(v);
    assert_eq!(
        c.iter().map(|c| c.scheme.as_str()).collect::<Vec<_>>(),
        ["PoP", "Bearer"]
    );
    assert_eq!(c[0].param("nonce"), Some("ey=="));
    assert_eq!(c[0].param("error"), None);
    let found = find_claims_challenge([v]).expect("a claims challenge");
    assert!(
        found
            .description
            .as_deref()
            .is_some_and(|d| d.ends_with("TokenIssuedBeforeRevocationTimestamp, again")),
        "{found:?}"
    );
    assert!(
        found
            .claims_request()
            .is_some_and(|j| j.contains("1726258122"))
    );
}

#[test]
fn reads_an_unquoted_uri_and_graphs_error_description_spelling() {
    // msgraph-sdk-dotnet#1416: Graph sent authorization_uri without quotes.
    let v = r#"Bearer realm="", authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize, client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="e30=", errorDescription="Continuous access evaluation resulted in claims challenge""#;
    let c = &parse_www_authenticate(v)[0];
    assert_eq!(
        c.param("authorization_uri"),
        Some("https://login.microsoftonline.com/common/oauth2/authorize")
    );
    let found = find_claims_challenge([v]).expect("a claims challenge");
    assert_eq!(found.claims.as_deref(), Some("e30="));
    assert_eq!(found.claims_request().as_deref(), Some("{}"));
    assert!(found.description.is_some());
}

#[test]
fn only_a_bearer_insufficient_claims_challenge_counts() {
    // What every other 401 carries (and the emulator sends): no error at all.
    let plain = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#;
    assert_eq!(find_claims_challenge([plain]), None);
    assert_eq!(
        find_claims_challenge([
            r#"Bearer error="invalid_token", error_description="error=\"insufficient_claims\"""#
        ]),
        None,
        "the words inside a quoted value are text"
    );
    assert_eq!(
        find_claims_challenge([r#"PoP error="insufficient_claims", claims="e30=""#]),
        None
    );
    // A second header value holds it: found.
    let found = find_claims_challenge([plain, r#"bearer ERROR=" insufficient_claims ""#]);
    assert_eq!(
        found,
        Some(ClaimsChallenge {
            claims: None,
            description: None
        })
    );
}

#[test]
fn token68_escapes_and_junk() {
    let c = parse_www_authenticate(r#"Basic dXNlcjpwYXNz==, Bearer a = "x\"y\\z", b=tok"#);
    assert_eq!(c[0].token68.as_deref(), Some("dXNlcjpwYXNz=="));
    assert_eq!(c[1].param("a"), Some(r#"x"y\z"#));
    assert_eq!(c[1].param("b"), Some("tok"));
    // Parameters before any scheme, stray quotes and `=`, an unterminated string: no panic,
    // and what can be read is read.
    let c = parse_www_authenticate(r#"x="1", ==, "junk", Bearer claims="abc"#);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].param("x"), None);
    assert_eq!(c[0].param("claims"), Some("abc"));
    assert!(parse_www_authenticate("").is_empty());
    assert!(parse_www_authenticate(" ,, ").is_empty());
    // Escapes inside the value still read as the error.
    assert!(find_claims_challenge([r#"Bearer error="insuff\icient_claims""#]).is_some());
}

#[test]
fn claims_request_accepts_url_safe_and_refuses_garbage() {
    let c = |s: &str| ClaimsChallenge {
        claims: Some(s.into()),
        description: None,
    };
    assert_eq!(c("e30").claims_request().as_deref(), Some("{}"));
    assert_eq!(c("not base64!").claims_request(), None);
    assert_eq!(c("/w==").claims_request(), None, "not UTF-8");
}

#[test]
fn the_token_request_claims_merge_the_challenge_with_the_capabilities() {
    let c = |s: &str| ClaimsChallenge {
        claims: Some(s.into()),
        description: None,
    };
    let merged = |s: &str| {
        c(s).token_request_claims()
            .map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap())
    };
    let cp1 = serde_json::json!({"values": ["cp1"]});
    // Microsoft's CAE example (nbf) and an authentication context (acrs) keep their claims.
    let got = merged(r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#)
        .expect("merged");
    assert_eq!(got["access_token"]["nbf"]["value"], "1604106651");
    assert_eq!(got["access_token"]["xms_cc"], cp1);
    let got = merged(r#"{"id_token":{"acrs":{"essential":true,"value":"c1"}}}"#).expect("merged");
    assert_eq!(got["id_token"]["acrs"]["value"], "c1");
    assert_eq!(
        got["access_token"]["xms_cc"], cp1,
        "an access_token object is added"
    );
    assert_eq!(
        merged("e30"),
        Some(serde_json::json!({"access_token": {"xms_cc": cp1}}))
    );
    // Nothing sensible to ask for: not JSON, not an object, an access_token that is not one.
    // (base64 of `[1]` and of `"text"`)
    for bad in ["not json {", "WzFd", r#"{"access_token":"x"}"#, "InRleHQi"] {
        assert_eq!(merged(bad), None, "{bad}");
    }
    assert_eq!(
        ClaimsChallenge {
            claims: None,
            description: None
        }
        .token_request_claims(),
        None
    );
    let long = format!(
        r#"{{"access_token":{{"x":"{}"}}}}"#,
        "a".repeat(MAX_CLAIMS_REQUEST)
    );
    assert_eq!(merged(&long), None, "over the size limit");
}

#[test]
fn reads_a_claims_request_sent_as_bare_json() {
    // Microsoft's Conditional Access developer guidance shows the claims request unquoted:
    // the whole brace-balanced value is the request, commas and quotes inside included.
    let json = r#"{"access_token":{"nbf":{"essential":true, "value":"1604106651"},"acrs":{"essential":true,"value":"c1"}}}"#;
    let v = format!(
        r#"Bearer realm="", error="insufficient_claims", claims={json}, error_description="needs a new sign-in""#
    );
    let found = find_claims_challenge([v.as_str()]).expect("a claims challenge");
    assert_eq!(found.claims.as_deref(), Some(json));
    assert_eq!(found.claims_request().as_deref(), Some(json));
    assert_eq!(found.description.as_deref(), Some("needs a new sign-in"));
    // A brace inside a JSON string does not end it; an unbalanced one runs to the end.
    let odd = r#"{"access_token":{"x":{"value":"}, {"}}}"#;
    let c = &parse_www_authenticate(&format!("Bearer claims={odd}, b=1"))[0];
    assert_eq!(c.param("claims"), Some(odd));
    assert_eq!(c.param("b"), Some("1"));
    let c = &parse_www_authenticate(r#"Bearer claims={"a":{"b":1}, c=2"#)[0];
    assert_eq!(c.param("claims"), Some(r#"{"a":{"b":1}, c=2"#));
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// A value of any characters a header may carry as text (quotes, backslashes, commas, `=`).
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('"'),
            Just('\\'),
            Just(','),
            Just('='),
            Just(' '),
            proptest::char::range('!', '~'),
            proptest::char::range('\u{a0}', '\u{ff}'),
        ],
        0..24,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn quote(v: &str) -> String {
    let mut out = String::from('"');
    for ch in v.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Whitespace the grammar allows around `=` (BWS) and commas (OWS).
fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(" "), Just("\t"), Just("  ")]
}

/// One challenge, and how it is written: params quoted, or bare when the value is a token.
fn challenge() -> impl Strategy<Value = (Challenge, String)> {
    let param = (token(), text(), any::<bool>(), ws(), ws());
    (
        token(),
        prop::collection::vec(param, 0..5),
        prop::option::of("[A-Za-z0-9._~+/-]{1,16}={0,2}"),
        ws(),
    )
        .prop_map(|(scheme, params, t68, sep)| {
            let mut c = Challenge {
                scheme: scheme.clone(),
                ..Challenge::default()
            };
            let mut written = scheme;
            if params.is_empty() {
                if let Some(t) = t68 {
                    written.push(' ');
                    written.push_str(&t);
                    c.token68 = Some(t);
                }
                return (c, written);
            }
            let mut parts = Vec::new();
            for (name, value, bare, before, after) in params {
                let bare_ok = bare && !value.is_empty() && value.bytes().all(is_tchar);
                let v = if bare_ok {
                    value.clone()
                } else {
                    quote(&value)
                };
                parts.push(format!("{name}{before}={after}{v}"));
                c.params.push((name.to_ascii_lowercase(), value));
            }
            written.push(' ');
            written.push_str(&parts.join(&format!("{sep},{sep}")));
            (c, written)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever challenges are written, in whatever allowed spacing, they read back the same.
    #[test]
    fn written_challenges_read_back(cs in prop::collection::vec(challenge(), 1..4), sep in ws()) {
        let header = cs.iter().map(|(_, w)| w.as_str()).collect::<Vec<_>>().join(&format!("{sep},{sep}"));
        let want: Vec<Challenge> = cs.into_iter().map(|(c, _)| c).collect();
        prop_assert_eq!(parse_www_authenticate(&header), want, "{}", header);
    }

    /// A claims challenge is found whatever surrounds it, and its claims come back as sent.
    #[test]
    fn a_claims_challenge_is_found_among_others(
        before in prop::collection::vec(challenge(), 0..3),
        after in prop::collection::vec(challenge(), 0..3),
        extra in prop::collection::vec((token(), text()), 0..3),
        claims in "[A-Za-z0-9+/]{0,40}={0,2}",
        description in prop::option::of(text()),
    ) {
        let mut params: Vec<String> = extra
            .iter()
            .filter(|(n, _)| {
                let n = n.to_ascii_lowercase();
                !matches!(n.as_str(), "error" | "claims" | "error_description" | "errordescription")
            })
            .map(|(n, v)| format!("{n}={}", quote(v)))
            .collect();
        params.push(format!("error={}", quote("insufficient_claims")));
        params.push(format!("claims={}", quote(&claims)));
        if let Some(d) = &description {
            params.push(format!("error_description={}", quote(d)));
        }
        // Reversed for half the inputs: fields are unordered (Microsoft).
        if claims.len() % 2 == 1 {
            params.reverse();
        }
        let bearer = format!("Bearer {}", params.join(", "));
        let others = |v: &[(Challenge, String)]| {
            v.iter()
                .filter(|(c, _)| !c.scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, w)| w.clone())
                .collect::<Vec<_>>()
        };
        let mut all = others(&before);
        all.push(bearer);
        all.extend(others(&after));
        let header = all.join(", ");
        let found = find_claims_challenge([header.as_str()]);
        prop_assert_eq!(
            found,
            Some(ClaimsChallenge { claims: Some(claims), description }),
            "{}", header
        );
    }

    /// Any text at all: no panic, and no claims challenge out of a header that does not
    /// contain the words.
    #[test]
    fn any_text_parses(s in "\\PC{0,80}") {
        let found = find_claims_challenge([s.as_str()]);
        // Quoted-pair escapes may split the words in the raw text.
        if !s.replace('\\', "").to_ascii_lowercase().contains("insufficient_claims") {
            prop_assert_eq!(found, None);
        }
    }
}

mod on_graph_errors {
    use crate::EntraError;
    use crate::error::{ErrorHeaders, parse_graph_error};
    use crate::retry::classify;

    use super::*;

    fn challenged(status: u16, message: &str) -> EntraError {
        let body =
            format!(r#"{{"error":{{"code":"InvalidAuthenticationToken","message":"{message}"}}}}"#);
        let headers = ErrorHeaders {
            claims_challenge: find_claims_challenge([CAE]),
            ..ErrorHeaders::default()
        };
        EntraError::Graph(Box::new(parse_graph_error(
            status,
            body.as_bytes(),
            headers,
        )))
    }

    #[test]
    fn is_neither_denied_nor_retried() {
        for status in [401, 403] {
            let e = challenged(status, "x");
            assert!(e.is_claims_challenge(), "{status}");
            assert!(
                !e.is_authorization_denied(),
                "{status}: not a lack of rights"
            );
            assert_eq!(classify(&e, true, true), None, "{status}");
        }
        // Even a 403 whose text reads as replication lag right after a create.
        let lag = challenged(
            403,
            "backing application of the service principal must be in the local tenant",
        );
        assert_eq!(classify(&lag, true, true), None);
        let shown = challenged(401, "x").to_string();
        assert!(
            shown.contains("claims challenge (insufficient_claims) with a claims request"),
            "{shown}"
        );
    }

    #[test]
    fn is_kept_only_on_401_and_403() {
        let e = challenged(400, "x");
        assert!(!e.is_claims_challenge());
    }
}
