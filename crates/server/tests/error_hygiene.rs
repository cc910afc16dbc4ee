//! Error hygiene over loopback gRPC: a request that does not decode (invalid UTF-8 in a string
//! field) is INVALID_ARGUMENT naming the field's path in `google.rpc.BadRequest`, not
//! INTERNAL; no status message echoes more than 128 characters of anything the caller sent;
//! Watch from past the end of a finished onboarding is OUT_OF_RANGE at once; a failed audit
//! write never shows the caller the data directory.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use prost::Message;
use testkit::server::{OPERATOR, TestServer, with_token};
use testkit::server_helpers::{Refusal, Refused};
use testkit::sim_server::SimServer;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tonic_types::StatusExt;

/// A request whose fields 1 and 2 are raw bytes, so a string field can carry invalid UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawTwo {
    /// Field 1.
    #[prost(bytes = "vec", tag = "1")]
    one: Vec<u8>,
    /// Field 2.
    #[prost(bytes = "vec", tag = "2")]
    two: Vec<u8>,
}

/// A request sent as these bytes, framing and all (what no generated message can encode).
#[derive(Clone, Debug, Default, PartialEq)]
struct Wire(Vec<u8>);

impl Message for Wire {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Any response (its fields are not read).
#[derive(Clone, PartialEq, prost::Message)]
struct Anything {}

/// The answer to a raw call to `path` with `req`: a unary one's, or a server stream's (its
/// opening, then its first message).
async fn raw_call<M: Message + Send + Sync + 'static>(
    s: &TestServer,
    path: &'static str,
    req: M,
    stream: bool,
) -> Result<Result<(), Status>> {
    let mut grpc = tonic::client::Grpc::new(with_token(s.channel().await?, Some(OPERATOR)));
    grpc.ready().await?;
    let (req, path) = (tonic::Request::new(req), PathAndQuery::from_static(path));
    let codec = ProstCodec::<M, Anything>::default();
    if !stream {
        return Ok(grpc.unary(req, path, codec).await.map(drop));
    }
    Ok(match grpc.server_streaming(req, path, codec).await {
        Err(s) => Err(s),
        Ok(mut stream) => stream.get_mut().message().await.map(drop),
    })
}

/// Checks a refusal of an undecodable request: INVALID_ARGUMENT with one
/// `google.rpc.BadRequest` violation, of `field` (a proto field path; empty: the whole
/// request), saying `rule`.
fn undecodable(rpc: &str, answer: Result<(), Status>, field: &str, rule: &str) -> Result<()> {
    let e = answer.err().with_context(|| format!("{rpc}: answered"))?;
    ensure!(e.code() == Code::InvalidArgument, "{rpc}: {e:?}");
    let bad = e
        .get_details_bad_request()
        .with_context(|| format!("{rpc}: no BadRequest: {e:?}"))?;
    let got: Vec<_> = bad
        .field_violations
        .iter()
        .map(|v| (v.field.as_str(), v.description.as_str()))
        .collect();
    ensure!(got == [(field, rule)], "{rpc}: {got:?}");
    ensure!(e.message().contains(rule), "{rpc}: {e:?}");
    Ok(())
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument_naming_the_field() -> Result<()> {
    let s = TestServer::start().await?;
    let bad = vec![b'a', 0xff, 0xfe, b'z'];
    let req = |one: Vec<u8>, two: Vec<u8>| RawTwo { one, two };
    let utf8 = "must be valid UTF-8 text";
    for (path, r, field) in [
        (
            "/onboard.v1.Onboarding/GetOnboarding",
            req(bad.clone(), Vec::new()),
            "onboarding_id",
        ),
        (
            "/onboard.v1.Invitations/CreateInvitation",
            req(bad.clone(), b"dr-1".to_vec()),
            "customer",
        ),
        // A oneof's member: the oneof is named, as the handlers name it.
        (
            "/onboard.v1.Verification/Verify",
            req(bad.clone(), Vec::new()),
            "target",
        ),
        // A nested message's string field: its path from the request.
        (
            "/onboard.v1.Credentials/AddServiceSecret",
            req(
                req(bad.clone(), Vec::new()).encode_to_vec(),
                b"dr-1".to_vec(),
            ),
            "registration.tenant_id",
        ),
    ] {
        undecodable(path, raw_call(&s, path, r, false).await?, field, utf8)?;
    }
    // Server streaming: decoded before the handler runs, same answer.
    let sign_in = req(b"token".to_vec(), bad.clone());
    let answer = raw_call(&s, "/onboard.v1.Onboarding/SignIn", sign_in, true).await?;
    undecodable("SignIn", answer, "admin_upn", utf8)?;
    // Bytes that break the request's own framing (field number 0): no field to name.
    let path = "/onboard.v1.Invitations/CreateInvitation";
    let answer = raw_call(&s, path, Wire(vec![0x00, 0x01]), false).await?;
    let whole = "the request is not a valid CreateInvitationRequest message";
    undecodable("CreateInvitation (framing)", answer, "", whole)?;
    // A well-formed request still works over the same path.
    let fine = req(b"0190b3d2-0000-7000-8000-0000000000a1".to_vec(), Vec::new());
    raw_call(&s, "/onboard.v1.Onboarding/GetOnboarding", fine, false)
        .await?
        .refused(Code::NotFound, &[])?;
    s.stop().await
}

/// Fails when `message` contains any 129-character run of `sent`.
fn no_long_echo(what: &str, message: &str, sent: &str) -> Result<()> {
    let chars: Vec<char> = sent.chars().collect();
    for w in chars.windows(129) {
        let run: String = w.iter().collect();
        ensure!(
            !message.contains(&run),
            "{what}: the status message echoes more than 128 characters of the request: {message}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn status_messages_echo_at_most_128_characters_of_the_request() -> Result<()> {
    let s = TestServer::start().await?;
    let words = (0..200)
        .map(|i| format!("w{i:03}xxxxxxxxxxxxxxxxxxxxxxx"))
        .collect::<Vec<_>>();
    for long in ["y".repeat(10_000), words.join(" "), words.join("")] {
        let mut ob = s.onboarding(Some(OPERATOR)).await?;
        let mut inv = s.invitations(Some(OPERATOR)).await?;
        let mut ver = s.verification(Some(OPERATOR)).await?;
        let get = pb::GetOnboardingRequest {
            onboarding_id: long.clone(),
            ..Default::default()
        };
        let watch = pb::WatchRequest {
            onboarding_id: long.clone(),
            ..Default::default()
        };
        let cancel = pb::CancelOnboardingRequest {
            onboarding_id: long.clone(),
            reason: long.clone(),
            ..Default::default()
        };
        let get_with_token = pb::GetOnboardingRequest {
            onboarding_id: long.clone(),
            invitation_token: long.clone(),
        };
        let get_invitation = pb::GetInvitationRequest {
            key: Some(pb::get_invitation_request::Key::Id(long.clone())),
        };
        let revoke = pb::RevokeInvitationRequest {
            id: long.clone(),
            reason: long.clone(),
        };
        let create = pb::CreateInvitationRequest {
            customer: long.clone(),
            service_id: long.clone(),
            profile: long.clone(),
            admin_upn: long.clone(),
            platform_version: long.clone(),
            ..Default::default()
        };
        let verify = pb::VerifyRequest {
            target: Some(pb::verify_request::Target::ClientId(long.clone())),
        };
        let statuses = [
            ("GetOnboarding", ob.get_onboarding(get).refusal().await?),
            ("Watch", ob.watch(watch).refusal().await?),
            (
                "CancelOnboarding",
                ob.cancel_onboarding(cancel).refusal().await?,
            ),
            (
                "GetOnboarding (token)",
                ob.get_onboarding(get_with_token).refusal().await?,
            ),
            (
                "GetInvitation",
                inv.get_invitation(get_invitation).refusal().await?,
            ),
            (
                "RevokeInvitation",
                inv.revoke_invitation(revoke).refusal().await?,
            ),
            (
                "CreateInvitation",
                inv.create_invitation(create).refusal().await?,
            ),
            ("Verify", ver.verify(verify).refusal().await?),
        ];
        for (rpc, status) in statuses {
            no_long_echo(rpc, status.message(), &long)?;
            for f in status_fields(&status) {
                no_long_echo(rpc, &f, &long)?;
            }
        }
    }
    s.stop().await
}

/// The descriptions of a status's BadRequest violations.
fn status_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| v.description)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_past_the_end_of_a_finished_onboarding_is_out_of_range_at_once() -> Result<()> {
    let (env, o) = SimServer::with_onboarding("direct-routing", "Sbc-Range").await?;
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let info = testkit::wizard::get(env.server.channel().await?, &o.onboarding_id).await?;
    let last = info.events;
    ensure!(last > 0, "{info:?}");
    let watch = |from_event| pb::WatchRequest {
        onboarding_id: o.onboarding_id.clone(),
        from_event,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), op.watch(watch(last + 1)))
        .await
        .context("Watch past the end waited")?
        .refused(Code::OutOfRange, &[])?;
    ensure!(started.elapsed() < Duration::from_secs(2));
    // From the last event: that one event, then the end.
    let events = testkit::wizard::drain(op.watch(watch(last)).await?.into_inner()).await?;
    ensure!(events.len() == 1, "{events:?}");
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_more_than_one_past_the_end_of_a_failed_onboarding_is_out_of_range() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    // The tenant refuses client secrets: the run fails (a failed onboarding can be retried, so
    // one event past its end is still to come).
    env.sim.set_faults(entra_sim::Faults {
        forbid_passwords: true,
        ..Default::default()
    });
    let events = env.provision(&token, &id, "Sbc-Failing").await?;
    ensure!(events.is_err() || events.as_ref().is_ok_and(|e| !e.is_empty()));
    let info = testkit::wizard::get(env.server.channel().await?, &id).await?;
    ensure!(info.state == pb::OnboardingState::Failed as i32, "{info:?}");
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let watch = |from_event| pb::WatchRequest {
        onboarding_id: id.clone(),
        from_event,
        ..Default::default()
    };
    tokio::time::timeout(Duration::from_secs(5), op.watch(watch(info.events + 2)))
        .await
        .context("Watch past the end waited")?
        .refused(Code::OutOfRange, &["past the end"])?;
    // One past the end is where a retry's first event will be: accepted.
    op.watch(watch(info.events + 1)).await?;
    // From the terminal event alone, `Failed` names the step that failed, as it does in a
    // Watch from the first event (the step's own failure event was folded into it).
    let mut failed = Vec::new();
    for from in [1, info.events] {
        let mut s = op.watch(watch(from)).await?.into_inner();
        let step = loop {
            let next = tokio::time::timeout(Duration::from_secs(5), s.message()).await??;
            if let Some(pb::provision_event::Event::Failed(f)) = next.context("ended")?.event {
                break f.step;
            }
        };
        failed.push(step);
    }
    ensure!(
        !failed[0].is_empty() && failed[0] == failed[1],
        "{failed:?}"
    );
    // Provision again with the same idempotency key resumes the failed run (it used to replay
    // the failure and end).
    env.sim.set_faults(entra_sim::Faults::default());
    let events = env.provision(&token, &id, "Sbc-Failing").await?;
    let events = events.map_err(|s| anyhow::anyhow!("resume: {s:?}"))?;
    testkit::wizard::completed(&events)?;
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_upn_with_invisible_characters_is_refused_with_its_field() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, _) = env.invite(None).await?;
    let upn = format!("admin\u{202E}@{}", env.info.tenant_domain);
    let e = testkit::wizard::start_sign_in(env.server.channel().await?, &token, &upn)
        .await
        .refused(Code::InvalidArgument, &["U+202E"])?;
    ensure!(testkit::server::bad_fields(&e) == ["admin_upn"], "{e:?}");
    // The invitation was not used up by the refusal.
    testkit::wizard::signed_in(env.server.channel().await?, &env.sim, &token, "globaladmin")
        .await?;
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_for_another_profile_than_the_invitations_is_refused_with_its_field() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    let mut c = pb::onboarding_client::OnboardingClient::new(env.server.channel().await?);
    let plan = |profile: &str| pb::PlanRequest {
        onboarding_id: id.clone(),
        app_name: "Sbc-Plan".into(),
        profile: profile.into(),
        invitation_token: token.clone(),
    };
    let e = c
        .plan(plan("qoe"))
        .await
        .refused(Code::InvalidArgument, &["direct-routing"])?;
    ensure!(testkit::server::bad_fields(&e) == ["profile"], "{e:?}");
    // Empty, or the invitation's own, plans what Provision will do.
    c.plan(plan("")).await?;
    c.plan(plan("direct-routing")).await?;
    // An operator naming an onboarding no sign-in made: NOT_FOUND.
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let unknown = pb::PlanRequest {
        onboarding_id: "0190b3d2-0000-7000-8000-000000000000".into(),
        app_name: "Sbc-Plan".into(),
        ..Default::default()
    };
    op.plan(unknown).await.refused(Code::NotFound, &[])?;
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_free_text_is_refused_for_its_field_before_anything_is_recorded() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    let before = env.server.app.audit().size();
    let long = "x".repeat(100_000);
    let mut c = pb::onboarding_client::OnboardingClient::new(env.server.channel().await?);
    let e = c
        .plan(pb::PlanRequest {
            onboarding_id: id.clone(),
            app_name: long.clone(),
            invitation_token: token.clone(),
            ..Default::default()
        })
        .await
        .refused(Code::InvalidArgument, &["at most"])?;
    ensure!(testkit::server::bad_fields(&e) == ["app_name"], "{e:?}");
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let e = op
        .cancel_onboarding(pb::CancelOnboardingRequest {
            onboarding_id: id.clone(),
            reason: long.clone(),
            ..Default::default()
        })
        .await
        .refused(Code::InvalidArgument, &[])?;
    ensure!(testkit::server::bad_fields(&e) == ["reason"], "{e:?}");
    let mut audit = env.server.audit(Some(testkit::server::AUDITOR)).await?;
    let e = audit
        .list_entries(pb::ListEntriesRequest {
            page_token: long,
            ..Default::default()
        })
        .await
        .refused(Code::InvalidArgument, &[])?;
    ensure!(testkit::server::bad_fields(&e) == ["page_token"], "{e:?}");
    ensure!(
        env.server.app.audit().size() == before,
        "a refused call was recorded"
    );
    env.server.stop().await
}

/// An audit write that fails (here the durable sync's listing of sled's `blobs/`, which a file
/// now stands in for: an IO error naming the path) makes the log unavailable until it is
/// reopened. The caller gets UNAVAILABLE with a fixed message, for the failing call and every
/// one after it; the error, which names files under the data directory, is only logged.
#[tokio::test]
async fn a_failed_audit_write_does_not_show_the_data_directory() -> Result<()> {
    let s = TestServer::start().await?;
    let data = s.app.config().storage.data_dir.clone();
    let blobs = data.join(onboard_server::AUDIT_DIR).join("blobs");
    if blobs.is_dir() {
        std::fs::remove_dir_all(&blobs)?;
    }
    std::fs::write(&blobs, b"")?;
    let data = data.display().to_string();
    let mut audit = s.audit(Some(testkit::server::AUDITOR)).await?;
    let mut inv = s.invitations(Some(OPERATOR)).await?;
    for call in ["the failing write", "the log after it"] {
        let e = audit
            .get_checkpoint(pb::GetCheckpointRequest {})
            .await
            .refused(Code::Unavailable, &["audit log", "see the server log"])?;
        ensure!(!e.message().contains(&data), "{call}: {e:?}");
        ensure!(!e.message().contains("blobs"), "{call}: {e:?}");
    }
    let e = inv
        .create_invitation(pb::CreateInvitationRequest {
            customer: "Contoso".into(),
            service_id: "dr-1".into(),
            profile: "direct-routing".into(),
            admin_upn: "admin@contoso.example".into(),
            ..Default::default()
        })
        .await
        .refused(Code::Unavailable, &["see the server log"])?;
    ensure!(!e.message().contains(&data), "{e:?}");
    s.stop().await
}
