//! Role checks for every RPC of every service, plus health and reflection, over a real socket
//! with bearer tokens: no credentials → UNAUTHENTICATED, a wrong role → PERMISSION_DENIED.

use anyhow::Result;
use onboard_proto::v1 as pb;
use testkit::server::{ADMIN, AUDITOR, OPERATOR, TestServer};
use tokio_stream::StreamExt;
use tonic::{Code, Status};

fn code<T>(r: Result<T, Status>) -> Code {
    r.err().map_or(Code::Ok, |e| e.code())
}

/// The status code of every Audit RPC for a caller.
async fn audit_codes(s: &TestServer, token: Option<&str>) -> Result<Vec<(&'static str, Code)>> {
    let mut c = s.audit(token).await?;
    Ok(vec![
        (
            "GetCheckpoint",
            code(c.get_checkpoint(pb::GetCheckpointRequest {}).await),
        ),
        (
            "ListEntries",
            code(c.list_entries(pb::ListEntriesRequest::default()).await),
        ),
        (
            "GetInclusionProof",
            code(
                c.get_inclusion_proof(pb::GetInclusionProofRequest {
                    seq: 0,
                    tree_size: 0,
                })
                .await,
            ),
        ),
        (
            "GetConsistencyProof",
            code(
                c.get_consistency_proof(pb::GetConsistencyProofRequest {
                    first_size: 1,
                    second_size: 0,
                })
                .await,
            ),
        ),
        (
            "GetVerifierKeys",
            code(c.get_verifier_keys(pb::GetVerifierKeysRequest {}).await),
        ),
        ("Follow", code(c.follow(pb::FollowRequest::default()).await)),
    ])
}

/// The status code of every Invitations RPC for a caller.
async fn invitation_codes(
    s: &TestServer,
    token: Option<&str>,
) -> Result<Vec<(&'static str, Code)>> {
    let mut c = s.invitations(token).await?;
    let create = pb::CreateInvitationRequest {
        customer: "Contoso".into(),
        service_id: "svc-1".into(),
        profile: "direct-routing".into(),
        ..Default::default()
    };
    let created = c.create_invitation(create).await;
    let id = created
        .as_ref()
        .ok()
        .and_then(|r| r.get_ref().invitation.as_ref().map(|i| i.id.clone()))
        .unwrap_or_else(|| "00000000-0000-7000-8000-000000000000".into());
    let by_id = pb::GetInvitationRequest {
        key: Some(pb::get_invitation_request::Key::Id(id.clone())),
    };
    Ok(vec![
        ("CreateInvitation", code(created)),
        ("GetInvitation", code(c.get_invitation(by_id).await)),
        (
            "ListInvitations",
            code(
                c.list_invitations(pb::ListInvitationsRequest::default())
                    .await,
            ),
        ),
        (
            "RevokeInvitation",
            code(
                c.revoke_invitation(pb::RevokeInvitationRequest {
                    id,
                    reason: "test".into(),
                })
                .await,
            ),
        ),
    ])
}

/// The status code of every Onboarding RPC that takes a caller role (SignIn takes only an
/// invitation token) for an onboarding that does not exist.
async fn onboarding_codes(
    s: &TestServer,
    token: Option<&str>,
) -> Result<Vec<(&'static str, Code)>> {
    let mut o = s.onboarding(token).await?;
    let id = || "00000000-0000-7000-8000-000000000000".to_string();
    Ok(vec![
        (
            "Plan",
            code(
                o.plan(pb::PlanRequest {
                    onboarding_id: id(),
                    app_name: "Sbc-One".into(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "Provision",
            code(
                o.provision(pb::ProvisionRequest {
                    onboarding_id: id(),
                    app_name: "Sbc-One".into(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "Watch",
            code(
                o.watch(pb::WatchRequest {
                    onboarding_id: id(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "GetOnboarding",
            code(
                o.get_onboarding(pb::GetOnboardingRequest {
                    onboarding_id: id(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "ListOnboardings",
            code(
                o.list_onboardings(pb::ListOnboardingsRequest::default())
                    .await,
            ),
        ),
        (
            "CancelOnboarding",
            code(
                o.cancel_onboarding(pb::CancelOnboardingRequest {
                    onboarding_id: id(),
                    ..Default::default()
                })
                .await,
            ),
        ),
    ])
}

/// The status code of every Credentials RPC (empty requests) for a caller. Verify and
/// ListDrift's role checks are in tests/verification.rs.
async fn credentials_codes(
    s: &TestServer,
    token: Option<&str>,
) -> Result<Vec<(&'static str, Code)>> {
    let mut c = s.credentials(token).await?;
    Ok(vec![
        (
            "AddServiceSecret",
            code(
                c.add_service_secret(pb::AddServiceSecretRequest::default())
                    .await,
            ),
        ),
        (
            "RotateSecret",
            code(c.rotate_secret(pb::RotateSecretRequest::default()).await),
        ),
        (
            "RevokeSecret",
            code(c.revoke_secret(pb::RevokeSecretRequest::default()).await),
        ),
        (
            "ListSecrets",
            code(c.list_secrets(pb::ListSecretsRequest::default()).await),
        ),
        (
            "ListGrants",
            code(c.list_grants(pb::ListGrantsRequest::default()).await),
        ),
        (
            "UpdateRoles",
            code(c.update_roles(pb::UpdateRolesRequest::default()).await),
        ),
        (
            "UpdatePermissions",
            code(
                c.update_permissions(pb::UpdatePermissionsRequest::default())
                    .await,
            ),
        ),
        (
            "AttachRegistration",
            code(
                c.attach_registration(pb::AttachRegistrationRequest::default())
                    .await,
            ),
        ),
        (
            "ListExpiring",
            code(c.list_expiring(pb::ListExpiringRequest::default()).await),
        ),
        (
            "EndAdminSession",
            code(
                c.end_admin_session(pb::EndAdminSessionRequest::default())
                    .await,
            ),
        ),
    ])
}

fn assert_all(got: &[(&str, Code)], want: Code, who: &str) {
    for (rpc, c) in got {
        assert_eq!(*c, want, "{rpc} as {who}");
    }
}

#[tokio::test]
async fn every_rpc_checks_the_callers_role() -> Result<()> {
    let s = TestServer::start().await?;
    // No credentials, or a token nobody configured: unauthenticated everywhere.
    for token in [None, Some("not-a-configured-token")] {
        let who = format!("{token:?}");
        assert_all(&audit_codes(&s, token).await?, Code::Unauthenticated, &who);
        assert_all(
            &invitation_codes(&s, token).await?,
            Code::Unauthenticated,
            &who,
        );
        assert_all(
            &onboarding_codes(&s, token).await?,
            Code::Unauthenticated,
            &who,
        );
        assert_all(
            &credentials_codes(&s, token).await?,
            Code::Unauthenticated,
            &who,
        );
    }
    for who in [AUDITOR, ADMIN] {
        assert_all(
            &credentials_codes(&s, Some(who)).await?,
            Code::PermissionDenied,
            who,
        );
    }
    // Wrong roles.
    assert_all(
        &audit_codes(&s, Some(OPERATOR)).await?,
        Code::PermissionDenied,
        "operator",
    );
    assert_all(
        &invitation_codes(&s, Some(AUDITOR)).await?,
        Code::PermissionDenied,
        "auditor",
    );
    assert_all(
        &invitation_codes(&s, Some(ADMIN)).await?,
        Code::PermissionDenied,
        "admin",
    );
    for who in [AUDITOR, ADMIN] {
        assert_all(
            &onboarding_codes(&s, Some(who)).await?,
            Code::PermissionDenied,
            who,
        );
    }
    // Right roles.
    assert_all(&audit_codes(&s, Some(AUDITOR)).await?, Code::Ok, "auditor");
    assert_all(&audit_codes(&s, Some(ADMIN)).await?, Code::Ok, "admin");
    assert_all(
        &invitation_codes(&s, Some(OPERATOR)).await?,
        Code::Ok,
        "operator",
    );
    // An operator gets past the role check of Credentials: the empty requests name no
    // registration; the expiry report needs none.
    for (rpc, c) in credentials_codes(&s, Some(OPERATOR)).await? {
        let want = if rpc == "ListExpiring" {
            Code::Ok
        } else {
            Code::InvalidArgument
        };
        assert_eq!(c, want, "{rpc} as operator");
    }
    // An operator gets past the role check: the onboarding does not exist (or was never signed
    // in to), and listing works.
    for (rpc, c) in onboarding_codes(&s, Some(OPERATOR)).await? {
        let want: &[Code] = match rpc {
            "ListOnboardings" => &[Code::Ok],
            "Plan" | "Provision" => &[Code::FailedPrecondition],
            _ => &[Code::NotFound],
        };
        assert!(want.contains(&c), "{rpc} as operator: {c:?}");
    }
    s.stop().await
}

#[tokio::test]
async fn health_reports_serving_and_reflection_lists_every_service() -> Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let s = TestServer::start().await?;
    let mut h = HealthClient::new(s.channel().await?);
    let status = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    for (svc, want) in [
        ("", ServingStatus::Serving),
        ("onboard.v1.Audit", ServingStatus::Serving),
        ("onboard.v1.Invitations", ServingStatus::Serving),
        ("onboard.v1.Onboarding", ServingStatus::Serving),
        ("onboard.v1.Credentials", ServingStatus::Serving),
        ("onboard.v1.Verification", ServingStatus::Serving),
    ] {
        let got = h.check(status(svc)).await?.into_inner().status;
        assert_eq!(got, want as i32, "{svc}");
    }

    let mut r = ServerReflectionClient::new(s.channel().await?);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = r
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let Some(Ok(first)) = resp.next().await else {
        anyhow::bail!("no reflection answer");
    };
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        anyhow::bail!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in onboard_proto::SERVICE_NAMES
        .iter()
        .chain(&["grpc.health.v1.Health"])
    {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }

    // A symbol lookup returns descriptors (grpcurl describe works without our .proto files).
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "onboard.v1.Audit".into(),
        )),
    };
    let mut resp = r
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let Some(Ok(ans)) = resp.next().await else {
        anyhow::bail!("no reflection answer");
    };
    assert!(
        matches!(ans.message_response, Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty())
    );
    s.stop().await
}
