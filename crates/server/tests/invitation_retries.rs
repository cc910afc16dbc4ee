//! CreateInvitation with an idempotency key, over loopback gRPC: a retry after a lost answer
//! gets the first call's invitation (same id, token, link and email), also after a restart and
//! when the retries race; a different request under the same key, a key of the wrong shape and
//! a key whose invitation is no longer pending are refused precisely. Every call is audited.

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use onboard_proto::v1::get_invitation_request::Key;
use testkit::server::{OPERATOR, TestServer, bad_fields};
use tonic::Code;

/// A keyed request for the customer Contoso.
fn keyed(key: &str) -> pb::CreateInvitationRequest {
    pb::CreateInvitationRequest {
        customer: "Contoso".into(),
        service_id: "svc-retry".into(),
        profile: "direct-routing".into(),
        admin_upn: "admin@contoso.example".into(),
        valid_for: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

/// CreateInvitation as the operator.
async fn create(
    s: &TestServer,
    req: pb::CreateInvitationRequest,
) -> Result<Result<pb::CreateInvitationResponse, tonic::Status>> {
    let mut c = s.invitations(Some(OPERATOR)).await?;
    Ok(c.create_invitation(req)
        .await
        .map(tonic::Response::into_inner))
}

/// The parts of an answer a retry must repeat.
fn answer(r: &pb::CreateInvitationResponse) -> Result<(String, String, String, pb::RenderedEmail)> {
    let inv = r.invitation.clone().context("invitation")?;
    Ok((
        inv.id,
        r.token.clone(),
        r.activation_url.clone(),
        r.email.clone().context("email")?,
    ))
}

/// How many invitations the server holds.
async fn count(s: &TestServer) -> Result<usize> {
    let mut c = s.invitations(Some(OPERATOR)).await?;
    let r = c
        .list_invitations(pb::ListInvitationsRequest::default())
        .await?
        .into_inner();
    Ok(r.invitations.len())
}

/// The phases of the `invitation.create` entries about invitation `id`, and how many of them
/// say `replayed`.
fn creates(s: &TestServer, id: &str) -> Result<(Vec<String>, usize)> {
    let entries: Vec<_> = s
        .entries()?
        .into_iter()
        .filter(|e| e["action"] == "invitation.create" && e["target"]["id"] == id)
        .collect();
    let phases = entries
        .iter()
        .map(|e| e["phase"].as_str().unwrap_or_default().to_owned())
        .collect();
    let replayed = entries
        .iter()
        .filter(|e| e["invitation"]["replayed"] == true)
        .count();
    Ok((phases, replayed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_gets_the_first_invitation_back() -> Result<()> {
    let s = TestServer::start().await?;
    let key = "6f1c7e0e-3b1a-4b8e-9c1d-2a4b5c6d7e8f";
    let first = create(&s, keyed(key)).await??;
    let again = create(&s, keyed(key)).await??;
    ensure!(answer(&first)? == answer(&again)?, "{first:?}\n{again:?}");
    ensure!(count(&s).await? == 1);
    let id = answer(&first)?.0;
    let inv = s.invitation(Key::Token(first.token.clone())).await?;
    ensure!(inv.id == id && inv.idempotency_key == key, "{inv:?}");
    let (phases, replayed) = creates(&s, &id)?;
    ensure!(
        phases == ["intent", "succeeded", "intent", "succeeded"] && replayed == 2,
        "{phases:?} {replayed}"
    );

    // The key is kept with the invitation: a restarted server answers the same.
    let s = s.restart().await?;
    let after = create(&s, keyed(key)).await??;
    ensure!(answer(&after)? == answer(&first)?);
    // Without a key, or with another, the same request is a new invitation.
    let fresh = create(&s, keyed("")).await??;
    let other = create(&s, keyed("another-key")).await??;
    ensure!(fresh.token != first.token && other.token != first.token);
    ensure!(count(&s).await? == 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_make_one_invitation() -> Result<()> {
    let s = TestServer::start().await?;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut c = s.invitations(Some(OPERATOR)).await?;
        calls.spawn(async move {
            c.create_invitation(keyed("race-1"))
                .await
                .map(tonic::Response::into_inner)
        });
    }
    let mut ids = Vec::new();
    while let Some(a) = calls.join_next().await {
        ids.push(answer(&a??)?.0);
    }
    ensure!(ids.len() == 8);
    ids.sort();
    ids.dedup();
    ensure!(ids.len() == 1, "{ids:?}");
    ensure!(count(&s).await? == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_refused_for_another_request_a_bad_shape_or_a_spent_invitation() -> Result<()> {
    let s = TestServer::start().await?;
    let first = create(&s, keyed("k-1")).await??;
    // The same key asking for something else: the field, and the invitation it made.
    let mut different = keyed("k-1");
    different.customer = "Fabrikam".into();
    let e = create(&s, different).await?.err().context("accepted")?;
    ensure!(e.code() == Code::InvalidArgument, "{e:?}");
    ensure!(bad_fields(&e) == ["idempotency_key"], "{e:?}");
    let id = answer(&first)?.0;
    ensure!(e.message().contains(&id), "{e:?}");
    let mut longer = keyed("k-1");
    longer.valid_for = None;
    ensure!(create(&s, longer).await?.is_err());

    for bad in ["has blank", "tab\tkey", "ключ", &"k".repeat(129)] {
        let e = create(&s, keyed(bad)).await?.err().context("accepted")?;
        ensure!(
            e.code() == Code::InvalidArgument && bad_fields(&e) == ["idempotency_key"],
            "{bad:?}: {e:?}"
        );
    }
    ensure!(create(&s, keyed(&"k".repeat(128))).await?.is_ok());

    // Revoked, the invitation cannot be handed out again: the retry says which and why.
    s.invitations(Some(OPERATOR))
        .await?
        .revoke_invitation(pb::RevokeInvitationRequest {
            id: id.clone(),
            reason: "sent to the wrong customer".into(),
        })
        .await?;
    let e = create(&s, keyed("k-1")).await?.err().context("replayed")?;
    ensure!(e.code() == Code::FailedPrecondition, "{e:?}");
    ensure!(
        e.message().contains(&id) && e.message().contains("revoked"),
        "{e:?}"
    );
    ensure!(!e.message().contains(&first.token), "{e:?}");
    Ok(())
}
