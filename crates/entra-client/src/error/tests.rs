//! The error types' parsing and classification.

use super::*;

#[test]
fn parses_the_reference_sts_example() {
    let body = br#"{ "error": "invalid_scope", "error_description": "AADSTS70011: The provided value for the input parameter 'scope' is not valid.\r\nTrace ID: 255d1aef-8c98-452f-ac51-23d051240864\r\nCorrelation ID: fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7\r\nTimestamp: 2016-01-09 02:02:12Z", "error_codes": [70011], "timestamp": "2016-01-09 02:02:12Z", "trace_id": "255d1aef-8c98-452f-ac51-23d051240864", "correlation_id": "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7", "error_uri": "https://login.microsoftonline.com/error?code=70011" }"#;
    let e = parse_sts_error(400, body).unwrap();
    assert_eq!(e.error, "invalid_scope");
    assert_eq!(e.code, Some(70011));
    assert_eq!(e.error_codes, vec![70011]);
    assert_eq!(
        e.trace_id.as_deref(),
        Some("255d1aef-8c98-452f-ac51-23d051240864")
    );
    assert_eq!(
        e.correlation_id.as_deref(),
        Some("fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7")
    );
    assert_eq!(e.timestamp.as_deref(), Some("2016-01-09 02:02:12Z"));
    let err = EntraError::Sts(Box::new(e));
    assert_eq!(err.aadsts(), Some(70011));
    let shown = err.to_string();
    assert!(
        shown.contains("invalid_scope") && shown.contains("AADSTS70011"),
        "{shown}"
    );
    assert!(
        !shown.contains("Trace ID"),
        "only the first description line is shown: {shown}"
    );
}

#[test]
fn sts_code_falls_back_to_the_description_prefix() {
    let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#;
    let e = parse_sts_error(401, body).unwrap();
    assert_eq!(e.code, Some(7_000_215));
    assert_eq!(e.http_status, 401);
}

#[test]
fn non_json_sts_body_is_not_an_sts_error() {
    assert!(parse_sts_error(502, b"<html>bad gateway</html>").is_none());
}

#[test]
fn parses_graph_error_with_inner_error_and_details() {
    let body = br#"{"error":{"code":"Request_BadRequest","message":"The appId 'abc' of the service principal does not reference a valid application object.","details":[{"code":"NoBackingApplicationObject","target":"appId"}],"innerError":{"date":"2026-11-26T08:00:00","request-id":"rid-1","client-request-id":"crid-1"}}}"#;
    let g = parse_graph_error(400, body, ErrorHeaders::default());
    assert_eq!(g.status, 400);
    assert_eq!(g.code, "Request_BadRequest");
    assert_eq!(
        g.detail_codes,
        vec!["NoBackingApplicationObject".to_string()]
    );
    assert_eq!(g.request_id.as_deref(), Some("rid-1"));
    assert_eq!(g.client_request_id.as_deref(), Some("crid-1"));
    assert_eq!(g.date.as_deref(), Some("2026-11-26T08:00:00"));
}

#[test]
fn graph_header_request_id_wins_and_object_message_is_read() {
    let body = br#"{"error":{"code":"Authorization_RequestDenied","message":{"value":"Insufficient privileges to complete the operation."}}}"#;
    let headers = ErrorHeaders {
        request_id: Some("hdr-rid".into()),
        client_request_id: Some("hdr-crid".into()),
        retry_after: None,
        claims_challenge: None,
    };
    let g = parse_graph_error(403, body, headers);
    assert_eq!(
        g.message,
        "Insufficient privileges to complete the operation."
    );
    assert_eq!(g.request_id.as_deref(), Some("hdr-rid"));
    let err = EntraError::Graph(Box::new(g));
    assert!(err.is_authorization_denied());
    assert_eq!(err.request_id(), Some("hdr-rid"));
}

#[test]
fn null_fields_do_not_lose_the_rest_of_an_error() {
    // Without `null_as_default` either body fails to parse as a whole: the Graph error
    // becomes a bare `HTTP400` and the STS error is not recognised at all.
    let body = br#"{"error":{"code":null,"message":"Another object with the same value for property uniqueName already exists.","details":null,"innerError":{"request-id":null}}}"#;
    let g = parse_graph_error(400, body, ErrorHeaders::default());
    assert_eq!(g.code, "");
    assert!(g.message.starts_with("Another object"), "{g:?}");
    assert!(g.detail_codes.is_empty());
    let body =
        br#"{"error":{"code":"Request_BadRequest","message":"x","details":[{"code":null}]}}"#;
    assert_eq!(
        parse_graph_error(400, body, ErrorHeaders::default()).code,
        "Request_BadRequest"
    );
    let body =
        br#"{"error":"invalid_grant","error_description":null,"error_codes":null,"trace_id":null}"#;
    let e = parse_sts_error(400, body).unwrap();
    assert_eq!((e.error.as_str(), e.code), ("invalid_grant", None));
}

#[test]
fn non_odata_graph_body_keeps_the_status() {
    let g = parse_graph_error(502, b"<html/>", ErrorHeaders::default());
    assert_eq!(g.status, 502);
    assert_eq!(g.code, "HTTP502");
}

#[test]
fn helpers_look_through_retry_wrappers() {
    let g = parse_graph_error(
        404,
        br#"{"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist"}}"#,
        ErrorHeaders::default(),
    );
    let err = EntraError::RetryBudgetExhausted {
        operation: "get_application",
        attempts: 3,
        elapsed: Duration::from_secs(3),
        last: Box::new(EntraError::Graph(Box::new(g))),
    };
    assert!(err.is_not_found());
    assert_eq!(
        err.graph().map(|g| g.code.as_str()),
        Some("Request_ResourceNotFound")
    );
    assert!(!err.is_authorization_denied());
}

#[test]
fn sts_error_codes_are_read_leniently() {
    // One entry that is not an AADSTS number must not cost the whole STS error.
    let body = br#"{"error":"interaction_required","error_description":"AADSTS50076: MFA.","error_codes":["x",50076,1.5,null,-3,{"a":1},70011]}"#;
    let e = parse_sts_error(400, body).expect("still an STS error");
    assert_eq!(e.error, "interaction_required");
    assert_eq!(e.error_codes, [50076, 70011]);
    assert_eq!(e.code, Some(50076));
    // Not an array at all: no codes, the description's number is used.
    let body = br#"{"error":"invalid_grant","error_description":"AADSTS70008: expired.","error_codes":"70008"}"#;
    let e = parse_sts_error(400, body).expect("still an STS error");
    assert!(e.error_codes.is_empty());
    assert_eq!(e.code, Some(70008));
}

#[test]
fn already_exists_answers_are_told_from_other_refusals() {
    let err = |status: u16, code: &str, message: &str| {
        let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
        EntraError::Graph(Box::new(parse_graph_error(
            status,
            body.as_bytes(),
            ErrorHeaders::default(),
        )))
    };
    let exists = [
        err(
            400,
            "Request_BadRequest",
            "Permission being assigned already exists on the object.",
        ),
        err(
            400,
            "Request_BadRequest",
            "A conflicting object with one or more of the specified property values is present in the directory.",
        ),
        err(400, "Request_MultipleObjectsWithSameKeyValue", "x"),
        err(409, "Request_MultipleObjectsWithSameKeyValue", "x"),
        err(409, "Conflict", "x"),
        err(
            400,
            "Request_BadRequest",
            "One or more added object references already exist for the following modified properties: 'owners'.",
        ),
    ];
    for e in &exists {
        assert!(e.is_already_exists(), "{e}");
    }
    let others = [
        err(
            400,
            "Request_BadRequest",
            "One or more properties contains invalid values.",
        ),
        err(400, "Request_BadRequest", "Not a valid reference update."),
        err(403, "Authorization_RequestDenied", "already exists"),
        err(404, "Request_ResourceNotFound", "x"),
    ];
    for e in &others {
        assert!(!e.is_already_exists(), "{e}");
    }
}

#[test]
fn app_management_policy_codes_are_recognised() {
    assert!(is_policy_code("CredentialTypeNotAllowedAsPerAppPolicy"));
    assert!(is_policy_code("CredentialInvalidLifetimeAsPerAppPolicy"));
    assert!(!is_policy_code("Request_BadRequest"));
    assert!(!is_policy_code("Authorization_RequestDenied"));
}

#[test]
fn a_conditional_access_block_is_a_refusal_not_a_new_sign_in() {
    // (error, AADSTS, a new sign-in helps, a refusal)
    let cases = [
        ("invalid_grant", 70008, true, false),
        ("invalid_grant", 50173, true, false),
        ("interaction_required", 50076, true, false),
        ("invalid_grant", 53003, false, true),
        ("invalid_request", 90100, false, false),
    ];
    for (error, code, again, denied) in cases {
        let body = format!(r#"{{"error":"{error}","error_codes":[{code}]}}"#);
        let e = EntraError::Sts(Box::new(
            parse_sts_error(400, body.as_bytes()).expect("an STS error"),
        ));
        assert_eq!(e.needs_new_sign_in(), again, "{error} {code}");
        assert_eq!(e.is_authorization_denied(), denied, "{error} {code}");
    }
}

#[test]
fn an_outage_is_told_from_an_answer_about_the_request() {
    // (HTTP status, OAuth error, an outage)
    let sts = [
        (401, "invalid_client", false),
        (400, "unauthorized_client", false),
        (400, "temporarily_unavailable", true),
        (429, "", true),
        (503, "", true),
    ];
    for (status, error, outage) in sts {
        let body = format!(r#"{{"error":"{error}","error_codes":[7000215]}}"#);
        let e = match parse_sts_error(status, body.as_bytes()) {
            Some(s) => EntraError::Sts(Box::new(s)),
            None => panic!("not an STS error: {status} {error}"),
        };
        assert_eq!(e.is_outage(), outage, "STS {status} {error}");
    }
    for (status, outage) in [
        (403, false),
        (404, false),
        (429, true),
        (500, true),
        (503, true),
    ] {
        let g = parse_graph_error(status, b"{}", ErrorHeaders::default());
        let last = Box::new(EntraError::Graph(Box::new(g)));
        let e = EntraError::RetryBudgetExhausted {
            operation: "list_app_role_assignments",
            attempts: 10,
            elapsed: Duration::from_secs(1),
            last,
        };
        assert_eq!(
            e.is_outage(),
            outage,
            "Graph {status} (through the retry wrapper)"
        );
    }
    let transport = EntraError::Transport {
        operation: "client_credentials",
        kind: TransportErrorKind::Connect,
        message: "refused".into(),
    };
    assert!(transport.is_outage());
    assert!(!EntraError::InvalidInput("tenant".into()).is_outage());
}
