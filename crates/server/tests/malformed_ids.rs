//! Ids are checked before they are looked up (AIP-193): a malformed one is INVALID_ARGUMENT
//! naming its field, a well-formed one that names nothing is NOT_FOUND. Nothing an operator
//! puts in an id field reaches the server's own records kept beside the onboardings
//! (`idempotency/<id>`, `claimed/<id>`, `cancelled/<id>`), and a refused id is never audited.
//! Nor is it logged: a value in the wrong field (an invitation token as an onboarding id, a
//! client secret as a tenant or client id) appears in no log line, message or audit entry.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use onboard_proto::v1 as pb;
use testkit::logs::Capture;
use testkit::server::{AUDITOR, OPERATOR, bad_fields};
use testkit::sim_server::SimServer;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A well-formed id nothing has.
const ABSENT: &str = "0190b3d2-0000-7000-8000-0000000000a1";

/// A client secret as Entra makes them (40 characters, the fourth to sixth `8Q~`), pasted into
/// the wrong box.
const SECRET_LIKE: &str = "abc8Q~Zk9.Lm_Z-2pQrT7vWxYz0aBcDeFgHiJkLm";

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

/// Waits until `logs` holds the `rpc` line of `n` calls of `method` (written when each call's
/// answer ends, which may be just after the client has it), so what is checked is complete.
async fn rpc_lines(logs: &Capture, method: &str, n: usize) -> Result<String> {
    // The call's own line (`… rpc service=… method="…" code=…`), not its span's prefix.
    let line = format!(" method=\"{method}\" code=");
    for _ in 0..200 {
        let text = logs.text();
        if text.lines().filter(|l| l.contains(&line)).count() >= n {
            return Ok(text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("fewer than {n} rpc lines of {method}:\n{}", logs.text())
}

/// Whether `text` holds [`SECRET_LIKE`] in any case (gRPC's tenant was echoed in lower case).
fn has_secret(text: &str) -> bool {
    let secret = SECRET_LIKE.to_ascii_lowercase();
    text.to_ascii_lowercase().contains(&secret)
}

/// How many requests the emulated Microsoft has answered (identity platform, Graph).
fn microsoft_asked(env: &SimServer) -> (u64, u64) {
    let n = env.sim.request_counts();
    (n.sts, n.graph)
}

/// The JSON body of a raw HTTP answer.
fn body(answer: &str) -> Result<serde_json::Value> {
    let (_, body) = answer.split_once("\r\n\r\n").context("no body")?;
    Ok(serde_json::from_str(body.trim())?)
}

// Current-thread: every task logs through the capture, the thread's default subscriber.
#[tokio::test]
async fn an_attachs_tenant_and_client_id_are_checked_before_anything_is_recorded() -> Result<()> {
    let (logs, _guard) = testkit::logs::capture("info");
    let env = SimServer::start().await?;
    let mut creds = env.server.credentials(Some(OPERATOR)).await?;
    // Neither a GUID nor a domain (this was UNAVAILABLE, logged as an Entra outage with the
    // value), or a tenant-independent authority, which names no tenant.
    let tenants = ["contoso corp", "bad_tenant.com", "consumers", SECRET_LIKE];
    for tenant in tenants {
        let attach = pb::AttachRegistrationRequest {
            registration: Some(pb::RegistrationRef {
                tenant_id: tenant.into(),
                client_id: "00000000-0000-0000-0000-00000000abcd".into(),
            }),
            profile: "direct-routing".into(),
            service_ids: vec!["dr-attached".into()],
            client_secret: "not-a-secret".into(),
            ..Default::default()
        };
        let asked = microsoft_asked(&env);
        let e = creds
            .attach_registration(attach)
            .await
            .err()
            .with_context(|| format!("{tenant:?}: attached"))?;
        // Refused for what it is: Microsoft was not asked (about `consumers` it answers).
        ensure!(
            microsoft_asked(&env) == asked,
            "{tenant:?}: Microsoft asked"
        );
        ensure!(
            e.code() == Code::InvalidArgument && bad_fields(&e) == ["registration.tenant_id"],
            "{tenant:?}: {e:?}"
        );
        let rule = e.get_details_bad_request().context("no BadRequest")?;
        let said = format!("{} {:?}", e.message(), rule.field_violations);
        ensure!(said.contains("GUID"), "{tenant:?}: no rule: {said}");
        ensure!(!has_secret(&said), "{tenant:?}: echoed: {said}");
    }

    // The wizard's "Use App Registration", a secret in the client id box (it was written to
    // the attach's intent) or the tenant box: refused on the box's field.
    let (token, _) = env.invite(None).await?;
    for (tenant, client, field) in [
        (
            env.info.tenant_id.as_str(),
            SECRET_LIKE,
            "registration.client_id",
        ),
        (
            SECRET_LIKE,
            "00000000-0000-0000-0000-00000000abcd",
            "registration.tenant_id",
        ),
    ] {
        let sent = serde_json::json!({
            "tenant_id": tenant, "client_id": client, "client_secret": "not-a-secret",
        });
        let asked = microsoft_asked(&env);
        let answer = env
            .server
            .wizard_post("/wizard/api/attach", &token, &sent.to_string())
            .await?;
        ensure!(microsoft_asked(&env) == asked, "{field}: Microsoft asked");
        ensure!(answer.starts_with("HTTP/1.1 400"), "{field}: {answer}");
        let error = &body(&answer)?["error"];
        ensure!(
            error["code"] == "invalid_argument"
                && error["fields"].as_array().map(Vec::len) == Some(1)
                && error["fields"][0]["field"] == field,
            "{field}: {error}"
        );
        ensure!(!has_secret(&answer), "{field}: echoed: {answer}");
    }

    let entries = env.server.entries()?;
    ensure!(
        !entries.iter().any(|e| e["action"] == "registration.attach"),
        "a refused attach was audited"
    );
    for e in &entries {
        ensure!(!has_secret(&e.to_string()), "audited: {e}");
    }
    let text = rpc_lines(&logs, "AttachRegistration", tenants.len()).await?;
    ensure!(!has_secret(&text), "logged:\n{text}");
    env.stop().await
}

// Current-thread: every task logs through the capture, the thread's default subscriber.
#[tokio::test]
async fn an_invitation_token_sent_as_the_onboarding_id_is_not_logged() -> Result<()> {
    let (logs, _guard) = testkit::logs::capture("info");
    let env = SimServer::start().await?;
    let (token, _) = env.invite(None).await?;
    ensure!(token.len() == 64, "a token of {} characters", token.len());
    // An operator that put the token in the id, and a customer client that swapped the two.
    let calls = [(Some(OPERATOR), String::new()), (None, ABSENT.to_owned())];
    for (bearer, invitation_token) in &calls {
        let mut ob = env.server.onboarding(*bearer).await?;
        let get = pb::GetOnboardingRequest {
            onboarding_id: token.clone(),
            invitation_token: invitation_token.clone(),
        };
        let e = ob.get_onboarding(get).await.err().context("answered")?;
        ensure!(
            e.code() == Code::InvalidArgument && bad_fields(&e) == ["onboarding_id"],
            "{e:?}"
        );
        ensure!(!e.message().contains(&token), "{e:?}");
    }
    let text = rpc_lines(&logs, "GetOnboarding", calls.len()).await?;
    ensure!(!text.contains(&token), "logged:\n{text}");
    env.stop().await
}
