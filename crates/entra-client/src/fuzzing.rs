//! Fuzz bodies for the parsers of what Microsoft (or whatever answers in its place) sends us:
//! OData and STS error bodies, token and device-code responses, JWT claims, `Retry-After`,
//! `WWW-Authenticate`, Graph resources. Each takes arbitrary bytes and must not panic; where an
//! answer is given it checks what must hold of it. The `cargo fuzz` targets in `fuzz/` call
//! these, and this crate's unit tests run them over proptest inputs on stable (`cfg(test)`); the
//! module is otherwise only built with the `fuzzing` feature.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use secrecy::SecretString;

use crate::device_code::{DeviceAuthorization, DeviceCodeFlow};
use crate::error::{ErrorHeaders, parse_graph_error, parse_sts_error};
use crate::transport::{HttpResponse, parse_retry_after};
use crate::{EntraClient, EntraConfig, EntraError, RenewingToken, StsClient};

/// An HTTP status from the first two bytes (100–599), and the rest as the body.
fn status_and_body(data: &[u8]) -> (u16, &[u8]) {
    match data {
        [a, b, rest @ ..] => (100 + u16::from_be_bytes([*a, *b]) % 500, rest),
        _ => (400, data),
    }
}

fn response(status: u16, body: &[u8]) -> HttpResponse {
    HttpResponse {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        headers: HeaderMap::new(),
        body: body.to_vec(),
    }
}

/// An STS client that never connects (nothing here sends a request).
fn sts() -> &'static StsClient {
    static STS: OnceLock<StsClient> = OnceLock::new();
    STS.get_or_init(|| {
        let config = EntraConfig::with_bases("https://127.0.0.1:9", "https://127.0.0.1:9");
        match EntraClient::new(&config) {
            Ok(c) => c.sts(),
            Err(e) => panic!("building an offline client: {e}"),
        }
    })
}

/// Graph's OData error body: never fails; a body that is not one is classified by status.
pub fn graph_error(data: &[u8]) {
    let (status, body) = status_and_body(data);
    let e = parse_graph_error(status, body, ErrorHeaders::default());
    assert_eq!(e.status, status);
    if !serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .is_some_and(|e| e.is_object())
    {
        assert_eq!(e.code, format!("HTTP{status}"));
    }
    let shown = EntraError::Graph(Box::new(e)).to_string();
    assert!(!shown.is_empty());
}

/// The STS's error body: `None` for anything else; a parsed one displays.
pub fn sts_error(data: &[u8]) {
    let (status, body) = status_and_body(data);
    if let Some(e) = parse_sts_error(status, body) {
        assert_eq!(e.http_status, status);
        assert!(
            body.trim_ascii_start().starts_with(b"{"),
            "only a JSON object is an STS error"
        );
        let shown = EntraError::Sts(Box::new(e)).to_string();
        assert!(!shown.is_empty());
    }
}

/// A token response, then what a sign-in does with it (renewal time from `expires_in`).
pub fn token_response(data: &[u8]) {
    let (_, body) = status_and_body(data);
    if let Ok(tokens) = crate::sts::parse_tokens("fuzz", &response(200, body)) {
        let _ = tokens.id_token_claims();
        let _ = tokens.access_token_claims();
        let _ = RenewingToken::from_user_sign_in(sts().clone(), "t", "c", &["s"], tokens);
    }
}

/// A device-authorization response, then a flow started from it (its deadline and interval
/// come from the server's numbers).
pub fn device_code(data: &[u8]) {
    let (_, body) = status_and_body(data);
    if let Ok(auth) = DeviceAuthorization::from_body(&response(200, body)) {
        let flow = DeviceCodeFlow::new(sts().clone(), "t".into(), "c".into(), auth);
        assert!(flow.interval() >= Duration::from_secs(1));
        // Room for RFC 8628's slow_down steps without overflow.
        assert!(
            flow.interval()
                .checked_add(Duration::from_secs(3600))
                .is_some()
        );
        let _ = flow.remaining();
    }
}

/// JWT claims, read unverified: an error never depends on (so never shows) the signature.
pub fn token_claims(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let shown = |t: &str| {
        crate::claims::access_token_claims(&SecretString::from(t.to_owned()))
            .err()
            .map(|e| e.to_string())
    };
    let error = shown(&text);
    // The same token with another signature segment gives the same answer.
    let mut parts: Vec<&str> = text.splitn(3, '.').collect();
    if parts.len() == 3 {
        parts[2] = "other-signature";
        assert_eq!(
            shown(&parts.join(".")),
            error,
            "the error depends on the signature"
        );
    }
}

/// `Retry-After` in any form: absent or at most a day.
pub fn retry_after(data: &[u8]) {
    let Ok(v) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, v);
    if let Some(d) = parse_retry_after(&h) {
        assert!(d <= Duration::from_secs(86_400), "{d:?}");
    }
}

/// `WWW-Authenticate` values: never a panic; a claims challenge only from a `Bearer` challenge
/// that says `insufficient_claims`, and its decoded claims request is text.
pub fn www_authenticate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let challenges = crate::challenge::parse_www_authenticate(&text);
    for c in &challenges {
        assert!(!c.scheme.is_empty());
        assert!(c.params.iter().all(|(n, _)| !n.is_empty()));
    }
    if let Some(found) = crate::challenge::find_claims_challenge([text.as_ref()]) {
        // Quoted-pair escapes may split the words in the raw text.
        let plain = text.replace('\\', "").to_ascii_lowercase();
        assert!(plain.contains("insufficient_claims"));
        let _ = found.claims_request();
    }
}

/// Graph resources and collection pages as the client decodes them.
pub fn graph_json(data: &[u8]) {
    use crate::graph::types::{
        AppRoleAssignment, Application, DirectoryObject, Organization, ServicePrincipal,
        UnifiedRoleDefinition, User,
    };
    let _ = serde_json::from_slice::<Application>(data);
    let _ = serde_json::from_slice::<ServicePrincipal>(data);
    let _ = serde_json::from_slice::<User>(data);
    let _ = serde_json::from_slice::<DirectoryObject>(data);
    let _ = serde_json::from_slice::<Organization>(data);
    let _ = serde_json::from_slice::<AppRoleAssignment>(data);
    let _ = serde_json::from_slice::<UnifiedRoleDefinition>(data);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// JSON-ish bytes: fragments of the shapes these parsers expect, glued at random, so the
    /// run reaches past the first `{`; plus raw bytes.
    fn input() -> impl Strategy<Value = Vec<u8>> {
        let fragment = prop_oneof![
            Just(b"{\"error\":".to_vec()),
            Just(b"{\"error\":{\"code\":\"Request_ResourceNotFound\",\"message\":".to_vec()),
            Just(b"{\"value\":\"x\"}".to_vec()),
            Just(b"\"innerError\":{\"request-id\":\"r\",\"date\":\"d\"}".to_vec()),
            Just(b"\"error_codes\":[70011,".to_vec()),
            Just(b"\"error_description\":\"AADSTS9999999999999: x\"".to_vec()),
            Just(b"{\"token_type\":\"Bearer\",\"access_token\":\"a.b.c\",\"expires_in\":".to_vec()),
            Just(b"{\"device_code\":\"d\",\"user_code\":\"u\",\"verification_uri\":\"v\",\"expires_in\":".to_vec()),
            Just(b"\"interval\":".to_vec()),
            Just(b"18446744073709551615".to_vec()),
            Just(b"\"18446744073709551615\"".to_vec()),
            Just(b"9999999999999999999999".to_vec()),
            Just(b"-1".to_vec()),
            Just(b"1e309".to_vec()),
            Just(b"-0".to_vec()),
            Just(b"eyJ0aWQiOiJ0In0".to_vec()),
            Just(b".".to_vec()),
            Just(b"{\"value\":[{\"id\":\"1\"}],\"@odata.nextLink\":\"https://x\"}".to_vec()),
            Just(b"}".to_vec()),
            Just(b",".to_vec()),
            Just(b"Bearer realm=\"\", error=\"insufficient_claims\", claims=\"e30=\"".to_vec()),
            Just(b"\\\"".to_vec()),
            Just(b" PoP nonce=".to_vec()),
            prop::collection::vec(any::<u8>(), 0..12),
        ];
        prop::collection::vec(fragment, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn graph_error(data in input()) { super::graph_error(&data) }
        #[test]
        fn sts_error(data in input()) { super::sts_error(&data) }
        #[test]
        fn token_response(data in input()) { super::token_response(&data) }
        #[test]
        fn device_code(data in input()) { super::device_code(&data) }
        #[test]
        fn token_claims(data in input()) { super::token_claims(&data) }
        #[test]
        fn retry_after(data in input()) { super::retry_after(&data) }
        #[test]
        fn graph_json(data in input()) { super::graph_json(&data) }
        #[test]
        fn www_authenticate(data in input()) { super::www_authenticate(&data) }
    }

    #[test]
    fn a_json_array_is_not_an_error_body() {
        // Found by `cargo fuzz run graph_error`: serde's derived structs accept arrays.
        super::graph_error(b"\xff@[[]]");
        super::sts_error(b"\0\0[\"invalid_grant\",\"x\"]");
    }

    #[test]
    fn huge_durations_from_the_sts_do_not_overflow() {
        super::device_code(
            b"\0\0{\"device_code\":\"d\",\"user_code\":\"u\",\"verification_uri\":\"v\",\"expires_in\":18446744073709551615,\"interval\":18446744073709551615}",
        );
        super::token_response(
            b"\0\0{\"token_type\":\"Bearer\",\"access_token\":\"a\",\"expires_in\":\"18446744073709551615\"}",
        );
    }
}
