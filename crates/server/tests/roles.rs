//! Role checks for every RPC of every service, plus health and reflection, over a real socket
//! with bearer tokens: no credentials → UNAUTHENTICATED, a wrong role → PERMISSION_DENIED.

use anyhow::Result;
use onboard_proto::v1 as pb;
use testkit::server::{ADMIN, AUDITOR, OPERATOR, TestServer};
use testkit::server_helpers::code_of;
use testkit::wizard::contoso;
use tokio_stream::StreamExt;
use tonic::Code;

/// The status code of every Audit RPC for a caller.
async fn audit_codes(s: &TestServer, token: Option<&str>) -> Result<Vec<(&'static str, Code)>> {
    let mut c = s.audit(token).await?;
    let consistency = pb::GetConsistencyProofRequest {
        first_size: 1,
        second_size: 0,
    };
    Ok(vec![
        (
            "GetCheckpoint",
            code_of(c.get_checkpoint(pb::GetCheckpointRequest::default()).await),
        ),
        (
            "ListEntries",
            code_of(c.list_entries(pb::ListEntriesRequest::default()).await),
        ),
        (
            "GetInclusionProof",
            code_of(
                c.get_inclusion_proof(pb::GetInclusionProofRequest::default())
                    .await,
            ),
        ),
        (
            "GetConsistencyProof",
            code_of(c.get_consistency_proof(consistency).await),
        ),
        (
            "GetVerifierKeys",
            code_of(
                c.get_verifier_keys(pb::GetVerifierKeysRequest::default())
                    .await,
            ),
        ),
        (
            "Follow",
            code_of(c.follow(pb::FollowRequest::default()).await),
        ),
    ])
}

/// The status code of every Invitations RPC for a caller.
async fn invitation_codes(
    s: &TestServer,
    token: Option<&str>,
) -> Result<Vec<(&'static str, Code)>> {
    let mut c = s.invitations(token).await?;
    let create = contoso("svc-1", "direct-routing");
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
        ("CreateInvitation", code_of(created)),
        ("GetInvitation", code_of(c.get_invitation(by_id).await)),
        (
            "ListInvitations",
            code_of(
                c.list_invitations(pb::ListInvitationsRequest::default())
                    .await,
            ),
        ),
        (
            "RevokeInvitation",
            code_of(
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
    let onboarding_id = "00000000-0000-7000-8000-000000000000".to_string();
    let app_name = "Sbc-One".to_string();
    let plan = pb::PlanRequest {
        onboarding_id: onboarding_id.clone(),
        app_name: app_name.clone(),
        ..Default::default()
    };
    let provision = pb::ProvisionRequest {
        onboarding_id: onboarding_id.clone(),
        app_name,
        ..Default::default()
    };
    let watch = pb::WatchRequest {
        onboarding_id: onboarding_id.clone(),
        ..Default::default()
    };
    let get = pb::GetOnboardingRequest {
        onboarding_id: onboarding_id.clone(),
        ..Default::default()
    };
    let cancel = pb::CancelOnboardingRequest {
        onboarding_id,
        ..Default::default()
    };
    Ok(vec![
        ("Plan", code_of(o.plan(plan).await)),
        ("Provision", code_of(o.provision(provision).await)),
        ("Watch", code_of(o.watch(watch).await)),
        ("GetOnboarding", code_of(o.get_onboarding(get).await)),
        (
            "ListOnboardings",
            code_of(
                o.list_onboardings(pb::ListOnboardingsRequest::default())
                    .await,
            ),
        ),
        (
            "CancelOnboarding",
            code_of(o.cancel_onboarding(cancel).await),
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
            code_of(
                c.add_service_secret(pb::AddServiceSecretRequest::default())
                    .await,
            ),
        ),
        (
            "RotateSecret",
            code_of(c.rotate_secret(pb::RotateSecretRequest::default()).await),
        ),
        (
            "RevokeSecret",
            code_of(c.revoke_secret(pb::RevokeSecretRequest::default()).await),
        ),
        (
            "ListSecrets",
            code_of(c.list_secrets(pb::ListSecretsRequest::default()).await),
        ),
        (
            "ListGrants",
            code_of(c.list_grants(pb::ListGrantsRequest::default()).await),
        ),
        (
            "UpdateRoles",
            code_of(c.update_roles(pb::UpdateRolesRequest::default()).await),
        ),
        (
            "UpdatePermissions",
            code_of(
                c.update_permissions(pb::UpdatePermissionsRequest::default())
                    .await,
            ),
        ),
        (
            "AttachRegistration",
            code_of(
                c.attach_registration(pb::AttachRegistrationRequest::default())
                    .await,
            ),
        ),
        (
            "ListExpiring",
            code_of(c.list_expiring(pb::ListExpiringRequest::default()).await),
        ),
        (
            "EndAdminSession",
            code_of(
                c.end_admin_session(pb::EndAdminSessionRequest::default())
                    .await,
            ),
        ),
    ])
}

/// A service whose RPCs take a caller role.
#[derive(Clone, Copy, Debug)]
enum Service {
    /// onboard.v1.Audit.
    Audit,
    /// onboard.v1.Invitations.
    Invitations,
    /// onboard.v1.Onboarding.
    Onboarding,
    /// onboard.v1.Credentials.
    Credentials,
}

/// The status code of every RPC of `service` for a caller.
async fn codes(
    s: &TestServer,
    service: Service,
    token: Option<&str>,
) -> Result<Vec<(&'static str, Code)>> {
    match service {
        Service::Audit => audit_codes(s, token).await,
        Service::Invitations => invitation_codes(s, token).await,
        Service::Onboarding => onboarding_codes(s, token).await,
        Service::Credentials => credentials_codes(s, token).await,
    }
}

/// The services, the callers, and the code each of their RPCs answers.
type Case<'a> = (&'a [Service], &'a [Option<&'a str>], Code);

#[tokio::test]
async fn every_rpc_checks_the_callers_role() -> Result<()> {
    use Service::*;
    let s = TestServer::start().await?;
    let (nobody, unknown) = (None, Some("not-a-configured-token"));
    let (auditor, admin, operator) = (Some(AUDITOR), Some(ADMIN), Some(OPERATOR));
    let cases: [Case; 7] = [
        // No credentials, or a token nobody configured: unauthenticated everywhere.
        (
            &[Audit, Invitations, Onboarding, Credentials],
            &[nobody, unknown],
            Code::Unauthenticated,
        ),
        // Wrong roles.
        (&[Credentials], &[auditor, admin], Code::PermissionDenied),
        (&[Audit], &[operator], Code::PermissionDenied),
        (&[Invitations], &[auditor, admin], Code::PermissionDenied),
        (&[Onboarding], &[auditor, admin], Code::PermissionDenied),
        // Right roles.
        (&[Audit], &[auditor, admin], Code::Ok),
        (&[Invitations], &[operator], Code::Ok),
    ];
    for (services, callers, want) in cases {
        for (service, token) in services
            .iter()
            .flat_map(|s| callers.iter().map(move |t| (s, t)))
        {
            for (rpc, c) in codes(&s, *service, *token).await? {
                assert_eq!(c, want, "{rpc} as {token:?}");
            }
        }
    }
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

    // v1alpha, which older grpcurl and other tools ask for, answers the same.
    use tonic_reflection::pb::v1alpha as alpha;
    let mut r = alpha::server_reflection_client::ServerReflectionClient::new(s.channel().await?);
    let req = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut resp = r
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let Some(Ok(first)) = resp.next().await else {
        anyhow::bail!("no v1alpha reflection answer");
    };
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        first.message_response
    else {
        anyhow::bail!("unexpected v1alpha reflection answer");
    };
    // Each version lists itself as the reflection service; the rest is the same.
    let ours = |names: &[String]| -> Vec<String> {
        let not_reflection = |n: &&String| !n.starts_with("grpc.reflection.");
        names.iter().filter(not_reflection).cloned().collect()
    };
    let alpha_names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert_eq!(
        ours(&alpha_names),
        ours(&names),
        "v1alpha lists what v1 lists"
    );
    assert!(
        alpha_names
            .iter()
            .any(|n| n == "grpc.reflection.v1alpha.ServerReflection")
    );
    s.stop().await
}
