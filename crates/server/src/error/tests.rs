//! The status mapping, where no request over gRPC reaches a case.

use super::*;

/// An audit entry refused as invalid (too large) is the request's fault, never UNAVAILABLE
/// (clients retry that for ever); a log that is down stays UNAVAILABLE. No request reaches
/// the first over gRPC any more (each field is bounded before it is recorded), so the
/// mapping is checked here.
#[test]
fn a_refused_credentials_audit_entry_is_invalid_argument() {
    let status = |a: AuditError| Status::from(ServerError::from(CredentialsError::Audit(a)));
    let refused = status(AuditError::InvalidEntry("entry is 70000 bytes".into()));
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(status(AuditError::Closed).code(), Code::Unavailable);
}

/// A refresh the STS refuses (`invalid_grant`, `interaction_required`) names the new
/// sign-in it takes in a precondition detail, as a claims challenge does; any other STS
/// refusal is FAILED_PRECONDITION without it.
#[test]
fn a_refused_refresh_asks_for_a_new_sign_in() {
    use tonic_types::StatusExt;
    let sts = |error: &str, code: u32| {
        let body = format!(
            r#"{{"error":"{error}","error_description":"AADSTS{code}: text","error_codes":[{code}]}}"#
        );
        let parsed = entra_client::StsError::from_body(400, body.as_bytes());
        let e = EntraError::Sts(Box::new(parsed.expect("an STS error body")));
        Status::from(ServerError::from(ProvisionError::entra("sign_in", e)))
    };
    let types = |s: &Status| -> Vec<String> {
        let p = s.get_details_precondition_failure();
        p.map(|p| p.violations.into_iter().map(|v| v.r#type).collect())
            .unwrap_or_default()
    };
    for (error, code) in [("invalid_grant", 50173), ("interaction_required", 50076)] {
        let s = sts(error, code);
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        assert_eq!(types(&s), ["SIGN_IN_AGAIN"], "{s:?}");
        assert!(s.message().contains(&format!("AADSTS{code}")), "{s:?}");
    }
    let other = sts("unauthorized_client", 700016);
    assert_eq!(other.code(), Code::FailedPrecondition, "{other:?}");
    assert!(types(&other).is_empty(), "{other:?}");
}

/// Graph refusing the admin's session a change is a missing role (FAILED_PRECONDITION,
/// `MISSING_RIGHTS`), in day-two calls as in provisioning; a declined sign-in is
/// PERMISSION_DENIED.
#[test]
fn graph_refusing_the_admin_is_a_missing_role_not_the_callers_permission() {
    use tonic_types::StatusExt;
    let denied = EntraError::Graph(Box::new(entra_client::GraphError::new(
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )));
    let s = Status::from(ServerError::from(CredentialsError::entra(
        "assign role",
        denied,
    )));
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    let types: Vec<String> = s
        .get_details_precondition_failure()
        .map(|p| p.violations.into_iter().map(|v| v.r#type).collect())
        .unwrap_or_default();
    assert_eq!(types, ["MISSING_RIGHTS"], "{s:?}");
    let body = r#"{"error":"authorization_declined","error_description":"AADSTS70000: declined","error_codes":[70000]}"#;
    let sts = entra_client::StsError::from_body(400, body.as_bytes()).expect("an STS body");
    let declined = EntraError::DeviceCodeDeclined(Box::new(sts));
    let s = Status::from(ServerError::from(ProvisionError::entra(
        "sign_in", declined,
    )));
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let reason = s.get_details_error_info().map(|i| i.reason);
    assert_eq!(reason.as_deref(), Some("SIGN_IN_DECLINED"), "{s:?}");
    let expired = EntraError::DeviceCodeExpired(None);
    let s = Status::from(ServerError::from(ProvisionError::entra("sign_in", expired)));
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    let reason = s.get_details_error_info().map(|i| i.reason);
    assert_eq!(reason.as_deref(), Some("DEVICE_CODE_EXPIRED"), "{s:?}");
}

/// The sign-in service down or throttling (5xx, 429, `temporarily_unavailable`, after the
/// client's retries) is an upstream outage: UNAVAILABLE, as a Graph 5xx is; a 4xx refusal of
/// another kind stays FAILED_PRECONDITION.
#[test]
fn an_sts_outage_is_unavailable_not_a_precondition() {
    let status = |http: u16, error: &str| {
        let body = format!(
            r#"{{"error":"{error}","error_description":"AADSTS90033: text","error_codes":[90033]}}"#
        );
        let parsed = entra_client::StsError::from_body(http, body.as_bytes());
        let e = EntraError::Sts(Box::new(parsed.expect("an STS error body")));
        Status::from(ServerError::from(ProvisionError::entra("sign_in", e))).code()
    };
    assert_eq!(status(503, "temporarily_unavailable"), Code::Unavailable);
    assert_eq!(status(500, "server_error"), Code::Unavailable);
    assert_eq!(status(429, "too_many_requests"), Code::Unavailable);
    assert_eq!(status(400, "temporarily_unavailable"), Code::Unavailable);
    assert_eq!(status(400, "invalid_client"), Code::FailedPrecondition);
}

/// A rotation stopped before its hand-over for want of a caller is UNAVAILABLE (a retry
/// resumes it) and says so, not "shutting down".
#[test]
fn a_rotation_waiting_for_its_caller_is_unavailable_and_says_why() {
    let s = Status::from(ServerError::from(CredentialsError::AwaitsCaller(
        "no caller confirmed".into(),
    )));
    assert_eq!(s.code(), tonic::Code::Unavailable);
    assert!(s.message().contains("resumes the rotation"), "{s:?}");
    assert!(!s.message().contains("shutting down"), "{s:?}");
}

/// A value that cannot be put into a request to Microsoft (a sign-in without a refresh token,
/// an id read back from Graph) is not the caller's field to correct, nor an outage to retry.
#[test]
fn a_value_microsoft_cannot_be_asked_with_is_a_precondition() {
    let e = EntraError::InvalidInput("the sign-in has no refresh token".into());
    let s = Status::from(ServerError::from(ProvisionError::entra("rotate", e)));
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
}
