//! Ids are checked before they are looked up (AIP-193): a malformed one is INVALID_ARGUMENT
//! naming its field, a well-formed one that names nothing is NOT_FOUND. Nothing an operator
//! puts in an id field reaches the server's own records kept beside the onboardings
//! (`idempotency/<id>`, `claimed/<id>`, `cancelled/<id>`), and a refused id is never audited.

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use testkit::server::{AUDITOR, OPERATOR, bad_fields};
use testkit::sim_server::SimServer;
use tonic::{Code, Status};

/// A well-formed id nothing has.
const ABSENT: &str = "0190b3d2-0000-7000-8000-0000000000a1";

/// `answer` was refused with `code`, naming exactly `fields` when it is INVALID_ARGUMENT.
fn refused_on<T: std::fmt::Debug>(
    what: &str,
    answer: Result<T, Status>,
    code: Code,
    fields: &[&str],
) -> Result<()> {
    let e = answer
        .err()
        .with_context(|| format!("{what}: answered, not refused with {code:?}"))?;
    ensure!(
        e.code() == code && bad_fields(&e) == fields,
        "{what}: wanted {code:?} on {fields:?}: {e:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ids_are_invalid_arguments_and_absent_ones_not_found() -> Result<()> {
    let (env, done) = SimServer::with_onboarding("direct-routing", "Sbc-Ids").await?;
    let s = &env.server;
    let id = done.onboarding_id.clone();
    let mut audit = s.audit(Some(AUDITOR)).await?;
    let size = async |a: &mut onboard_proto::v1::audit_client::AuditClient<_>| -> Result<u64> {
        Ok(a.get_checkpoint(pb::GetCheckpointRequest {})
            .await?
            .into_inner()
            .size)
    };
    let before = size(&mut audit).await?;

    let mut ob = s.onboarding(Some(OPERATOR)).await?;
    let malformed = [
        "nope".to_owned(),
        format!("idempotency/{id}"),
        format!("claimed/{id}"),
        format!("cancelled/{id}"),
        format!("{id}x"),
        format!("{{{id}}}"),
        "x".repeat(4096),
    ];
    for bad in &malformed {
        let field = &["onboarding_id"][..];
        let ask = |what: &str| format!("{what} {:.60}", bad);
        let get = pb::GetOnboardingRequest {
            onboarding_id: bad.clone(),
            ..Default::default()
        };
        let get_answer = ob.get_onboarding(get).await;
        refused_on(
            &ask("GetOnboarding"),
            get_answer,
            Code::InvalidArgument,
            field,
        )?;
        let cancel = pb::CancelOnboardingRequest {
            onboarding_id: bad.clone(),
            reason: "ids".into(),
            ..Default::default()
        };
        let cancel_answer = ob.cancel_onboarding(cancel).await;
        refused_on(&ask("Cancel"), cancel_answer, Code::InvalidArgument, field)?;
        let watch = pb::WatchRequest {
            onboarding_id: bad.clone(),
            ..Default::default()
        };
        let watch_answer = ob.watch(watch).await;
        refused_on(&ask("Watch"), watch_answer, Code::InvalidArgument, field)?;
        let plan = pb::PlanRequest {
            onboarding_id: bad.clone(),
            app_name: "Sbc-Ids".into(),
            ..Default::default()
        };
        let plan_answer = ob.plan(plan).await;
        refused_on(&ask("Plan"), plan_answer, Code::InvalidArgument, field)?;
        let claim = pb::ClaimSecretRequest {
            onboarding_id: bad.clone(),
            seal_to: None,
        };
        let claim_answer = ob.claim_secret(claim).await;
        refused_on(
            &ask("ClaimSecret"),
            claim_answer,
            Code::InvalidArgument,
            field,
        )?;
        let link = pb::IssueHandOffLinkRequest {
            onboarding_id: bad.clone(),
            ..Default::default()
        };
        let link_answer = ob.issue_hand_off_link(link).await;
        refused_on(&ask("HandOff"), link_answer, Code::InvalidArgument, field)?;
    }
    // A filter recorded with the read is bounded on its field, not refused for the size of
    // the audit entry it would make.
    let list = pb::ListOnboardingsRequest {
        tenant_id: "t".repeat(70_000),
        ..Default::default()
    };
    let list_answer = ob.list_onboardings(list).await;
    refused_on("List", list_answer, Code::InvalidArgument, &["tenant_id"])?;

    // Invitations, credentials and verification take ids Entra or this server made: UUIDs.
    let mut inv = s.invitations(Some(OPERATOR)).await?;
    let by_id = |id: &str| pb::GetInvitationRequest {
        key: Some(pb::get_invitation_request::Key::Id(id.into())),
    };
    refused_on(
        "GetInvitation",
        inv.get_invitation(by_id("nope")).await,
        Code::InvalidArgument,
        &["id"],
    )?;
    let revoke = |id: &str| pb::RevokeInvitationRequest {
        id: id.into(),
        reason: "ids".into(),
    };
    refused_on(
        "RevokeInvitation",
        inv.revoke_invitation(revoke("nope")).await,
        Code::InvalidArgument,
        &["id"],
    )?;

    let mut creds = s.credentials(Some(OPERATOR)).await?;
    let client_id = done.done.client_id.clone();
    let list = |client: &str| pb::ListSecretsRequest {
        registration: env.registration(client),
    };
    refused_on(
        "ListSecrets",
        creds.list_secrets(list("not-a-client-id")).await,
        Code::InvalidArgument,
        &["registration.client_id"],
    )?;
    let revoke_secret = |key: &str| pb::RevokeSecretRequest {
        registration: env.registration(&client_id),
        key_id: key.into(),
    };
    refused_on(
        "RevokeSecret",
        creds.revoke_secret(revoke_secret("nope")).await,
        Code::InvalidArgument,
        &["key_id"],
    )?;
    let mut verify = s.verification(Some(OPERATOR)).await?;
    let by_client = |c: &str| pb::VerifyRequest {
        target: Some(pb::verify_request::Target::ClientId(c.into())),
    };
    refused_on(
        "Verify",
        verify.verify(by_client("a/b")).await,
        Code::InvalidArgument,
        &["client_id"],
    )?;

    // Refused before any lookup: nothing was recorded but the auditor's own reads.
    let written = audit
        .list_entries(pb::ListEntriesRequest {
            from_seq: before,
            ..Default::default()
        })
        .await?
        .into_inner();
    let actions = written
        .entries
        .iter()
        .map(|e| Ok(serde_json::from_slice::<serde_json::Value>(&e.leaf)?["action"].clone()))
        .collect::<Result<Vec<_>>>()?;
    ensure!(
        actions.iter().all(|a| a == "audit.read"),
        "refused ids were audited: {actions:?}"
    );

    // Well-formed ids that name nothing.
    let get = pb::GetOnboardingRequest {
        onboarding_id: ABSENT.into(),
        ..Default::default()
    };
    refused_on("absent", ob.get_onboarding(get).await, Code::NotFound, &[])?;
    let claim = pb::ClaimSecretRequest {
        onboarding_id: ABSENT.into(),
        seal_to: None,
    };
    refused_on("absent", ob.claim_secret(claim).await, Code::NotFound, &[])?;
    // The onboarding itself is untouched: still completed, its secret already claimed.
    let get = pb::GetOnboardingRequest {
        onboarding_id: id.clone(),
        ..Default::default()
    };
    let info = ob.get_onboarding(get).await?.into_inner();
    ensure!(info.state() == pb::OnboardingState::Completed, "{info:?}");

    refused_on(
        "GetInvitation",
        inv.get_invitation(by_id(ABSENT)).await,
        Code::NotFound,
        &[],
    )?;
    refused_on(
        "RevokeInvitation",
        inv.revoke_invitation(revoke(ABSENT)).await,
        Code::NotFound,
        &[],
    )?;
    refused_on(
        "RevokeSecret",
        creds.revoke_secret(revoke_secret(ABSENT)).await,
        Code::NotFound,
        &[],
    )?;
    env.stop().await
}
