//! `[limits]` over loopback gRPC: every refusal is RESOURCE_EXHAUSTED naming the limit
//! (`google.rpc.QuotaFailure`) and, where waiting helps, when to retry (`google.rpc.RetryInfo`).

use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use onboard_proto::v1 as pb;
use testkit::config::ServerConfigBuilder;
use testkit::server::{AUDITOR, OPERATOR, TestServer, append};
use testkit::server_helpers::{Refused, exhausted, plan};
use testkit::sim::calm;
use testkit::sim_server::SimServer;
use testkit::wizard::start_sign_in;
use tonic::{Code, Status};

/// `b` with each `[limits] key = value` of `set`.
fn limits(b: ServerConfigBuilder, set: &[(&str, u64)]) -> Result<ServerConfigBuilder> {
    Ok(set.iter().fold(b, |b, (key, value)| b.limit(key, *value)))
}

/// A test server with each `[limits] key = value` of `set`.
async fn server_with(set: &[(&str, u64)]) -> Result<TestServer> {
    TestServer::start_with(|b| limits(b, set)).await
}

/// A test server allowing `burst` failed invitation token lookups per address, then
/// `per_minute`.
async fn token_failures(burst: u64, per_minute: u64) -> Result<TestServer> {
    server_with(&[
        ("token_failures_burst", burst),
        ("token_failures_per_minute", per_minute),
    ])
    .await
}

/// Starts SignIn and reads the device code; the open stream.
async fn open_sign_in(
    env: &SimServer,
    token: &str,
    upn: &str,
) -> Result<Result<tonic::Streaming<pb::SignInEvent>, Status>> {
    let mut s = match start_sign_in(env.server.channel().await?, token, upn).await {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    match s.message().await {
        Ok(Some(_code)) => Ok(Ok(s)),
        Ok(None) => bail!("sign-in ended at once"),
        Err(e) => Ok(Err(e)),
    }
}

/// Starts SignIn, checked to be let through; the open stream.
async fn sign_in_opens(
    env: &SimServer,
    token: &str,
    upn: &str,
) -> Result<tonic::Streaming<pb::SignInEvent>> {
    open_sign_in(env, token, upn)
        .await?
        .map_err(|s| anyhow::anyhow!("{s:?}"))
}

/// Starts SignIn, checked to be refused as RESOURCE_EXHAUSTED naming `limit` (with RetryInfo).
async fn sign_in_exhausted(env: &SimServer, token: &str, upn: &str, limit: &str) -> Result<()> {
    let refused = open_sign_in(env, token, upn)
        .await?
        .err()
        .with_context(|| format!("SignIn let through despite {limit}"))?;
    exhausted(&refused, limit, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_code_per_invitation_and_sign_in_caps() -> Result<()> {
    let env = SimServer::start_with(|b| {
        limits(b, &[("max_sign_ins_per_tenant", 2), ("max_sign_ins", 3)])
    })
    .await?;
    let ga = env.upn("globaladmin");
    let (token, _) = env.invite(None).await?;
    let first = sign_in_opens(&env, &token, &ga).await?;
    // A second SignIn for the same invitation while the first is open: refused.
    sign_in_exhausted(&env, &token, &ga, "one device-code flow per invitation").await?;
    // Per admin domain: the second invitation's flow fits, the third does not.
    let (t2, _) = env.invite(None).await?;
    let (t3, _) = env.invite(None).await?;
    let f2 = sign_in_opens(&env, &t2, &ga).await?;
    sign_in_exhausted(&env, &t3, &ga, "limits.max_sign_ins_per_tenant = 2").await?;
    // In total: another domain fits once, then the server is full.
    let other = sign_in_opens(&env, &t3, "admin@other.example").await?;
    let (t4, _) = env.invite(None).await?;
    sign_in_exhausted(&env, &t4, "admin@third.example", "limits.max_sign_ins = 3").await?;
    // Closing a stream frees its slot: the invitation can sign in again.
    drop(first);
    let what = "a sign-in in the slot a closed stream freed";
    let again = testkit::wait::until(what, Duration::from_secs(30), async || {
        Ok(match open_sign_in(&env, &token, &ga).await? {
            Ok(s) => ControlFlow::Break(s),
            Err(refused) => ControlFlow::Continue(refused),
        })
    })
    .await?;
    drop((f2, other, again));
    env.server.stop().await
}

#[tokio::test]
async fn forged_invitation_tokens_slow_down_per_address() -> Result<()> {
    let s = token_failures(5, 6).await?;
    let mut c = s.onboarding(None).await?;
    let get = |token: &str| pb::GetOnboardingRequest {
        onboarding_id: "0190b3d2-0000-7000-8000-0000000000b1".into(),
        invitation_token: token.into(),
    };
    let started = std::time::Instant::now();
    let mut codes = Vec::new();
    for i in 0..1000 {
        let st = c
            .get_onboarding(get(&format!("forged-{i}")))
            .await
            .err()
            .context("a forged token was accepted")?;
        codes.push(st.code());
        if i == 999 {
            exhausted(&st, "limits.token_failures_per_minute = 6", true)?;
        }
    }
    let unauthenticated = codes
        .iter()
        .filter(|c| **c == Code::Unauthenticated)
        .count();
    ensure!(
        unauthenticated <= 6,
        "{unauthenticated} forged tokens were checked"
    );
    ensure!(
        codes[10..].iter().all(|c| *c == Code::ResourceExhausted),
        "{codes:?}"
    );
    println!(
        "1000 forged tokens in {:?}: {unauthenticated} checked, the rest refused",
        started.elapsed()
    );
    s.stop().await
}

#[tokio::test]
async fn expensive_calls_and_audited_reads_have_buckets() -> Result<()> {
    let s = server_with(&[
        ("expensive_burst", 3),
        ("expensive_per_minute", 1),
        ("audited_reads_burst", 4),
        ("audited_reads_per_minute", 1),
    ])
    .await?;
    let mut v = s.verification(Some(OPERATOR)).await?;
    let mut last = None;
    for _ in 0..4 {
        last = v
            .verify(pb::VerifyRequest {
                target: Some(pb::verify_request::Target::ClientId("nope".into())),
            })
            .await
            .err();
    }
    exhausted(
        &last.context("verify")?,
        "limits.expensive_per_minute = 1",
        true,
    )?;
    // Audited reads: rate-limited per caller (not coalesced); the log grows by the burst only.
    let mut a = s.audit(Some(AUDITOR)).await?;
    let before = s.app.audit().size();
    let mut refused = None;
    for _ in 0..10 {
        if let Err(e) = a.get_checkpoint(pb::GetCheckpointRequest {}).await {
            refused = Some(e);
        }
    }
    exhausted(
        &refused.context("no read refused")?,
        "limits.audited_reads_per_minute = 1",
        true,
    )?;
    // Allow the writer to settle, then count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grown = s.app.audit().size() - before;
    ensure!(grown == 4, "the log grew by {grown} entries for 10 reads");
    s.stop().await
}

#[tokio::test]
async fn calls_in_flight_and_message_size() -> Result<()> {
    let s = server_with(&[("max_concurrent_calls", 2), ("max_message_bytes", 4096)]).await?;
    let mut a = s.audit(Some(AUDITOR)).await?;
    let f1 = a.follow(pb::FollowRequest::default()).await?.into_inner();
    let f2 = a.follow(pb::FollowRequest::default()).await?.into_inner();
    let e = a
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .err()
        .context("a third call in flight")?;
    exhausted(&e, "limits.max_concurrent_calls = 2", true)?;
    drop((f1, f2));
    let what = "a call in the slots closed streams freed";
    testkit::wait::until(what, Duration::from_secs(30), async || {
        Ok(match a.get_checkpoint(pb::GetCheckpointRequest {}).await {
            Ok(_) => ControlFlow::Break(()),
            Err(refused) => ControlFlow::Continue(refused),
        })
    })
    .await?;
    // A request over max_message_bytes: RESOURCE_EXHAUSTED naming the limit's size.
    let e = s
        .invitations(Some(OPERATOR))
        .await?
        .create_invitation(pb::CreateInvitationRequest {
            customer: "x".repeat(10_000),
            ..Default::default()
        })
        .await
        .err()
        .context("an oversized message")?;
    ensure!(e.code() == Code::ResourceExhausted, "{e:?}");
    ensure!(e.message().contains("4096"), "{}", e.message());
    s.stop().await
}

#[tokio::test]
async fn a_slow_follower_is_disconnected_not_buffered() -> Result<()> {
    let s = server_with(&[("stream_buffer", 4), ("slow_reader_secs", 1)]).await?;
    // Enough entries (8 MB) to fill HTTP/2's windows, the sockets and the stream's buffer.
    let padding = "p".repeat(4000);
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let (app, padding) = (s.app.clone(), padding.clone());
            tokio::spawn(async move {
                for i in 0..250u64 {
                    let e =
                        serde_json::json!({"action": "test", "i": t * 1000 + i, "pad": padding});
                    append(&app, e).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let mut a = s.audit(Some(AUDITOR)).await?;
    let mut f = a.follow(pb::FollowRequest::default()).await?.into_inner();
    // Not reading: the server gives up on this reader after slow_reader_secs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = 0;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), f.message()).await? {
            Ok(Some(_)) => got += 1,
            Ok(None) => bail!("the stream ended without an error after {got} entries"),
            Err(e) => break e,
        }
    };
    exhausted(&end, "limits.slow_reader_secs = 1", true)?;
    ensure!(got < 2000, "every entry was buffered ({got})");
    s.stop().await
}

/// A genuine invitation token used on onboardings it does not unlock is refused
/// (PERMISSION_DENIED) and counts as a failure like a forged one: probing other onboardings'
/// ids with it slows down the same way.
#[tokio::test]
async fn a_genuine_token_on_other_onboardings_slows_down_too() -> Result<()> {
    let s = token_failures(3, 1).await?;
    let (service, channel) = (testkit::sim_server::SERVICE, s.channel().await?);
    let (token, _) = testkit::wizard::invite(channel, service, "direct-routing", None).await?;
    let mut c = s.onboarding(None).await?;
    let mut refused = Vec::new();
    for i in 0..6 {
        let get = pb::GetOnboardingRequest {
            onboarding_id: format!("0190b3d2-0000-7000-8000-{i:012}"),
            invitation_token: token.clone(),
        };
        let answer = c.get_onboarding(get).await;
        refused.push(answer.err().context("another onboarding unlocked")?);
    }
    let codes: Vec<_> = refused.iter().map(Status::code).collect();
    ensure!(
        codes[..3].iter().all(|c| *c == Code::PermissionDenied),
        "{codes:?}"
    );
    exhausted(&refused[5], "limits.token_failures_per_minute = 1", true)?;
    s.stop().await
}

/// The wizard reaches the same services in process: a browser's forged tokens count against
/// its address like a gRPC client's, and then even a genuine token from it waits (429 with
/// Retry-After and the limit named) while a gRPC client elsewhere is unaffected.
#[tokio::test]
async fn the_wizard_counts_forged_tokens_per_address_too() -> Result<()> {
    let s = token_failures(3, 1).await?;
    let mut answers = Vec::new();
    for i in 0..10 {
        answers.push(
            s.wizard_post("/wizard/api/invitation", &format!("forged-{i}"), "{}")
                .await?,
        );
    }
    let invalid = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200") && a.contains(r#""state":"invalid""#))
        .count();
    ensure!(invalid <= 3, "{invalid} forged tokens were looked up");
    let last = answers.last().context("answers")?;
    ensure!(last.starts_with("HTTP/1.1 429"), "{last}");
    ensure!(
        last.to_ascii_lowercase().contains("retry-after: "),
        "{last}"
    );
    ensure!(
        last.contains("resource_exhausted")
            && last.contains("limits.token_failures_per_minute = 1"),
        "{last}"
    );
    // SignIn through the wizard from the same address is held back before any lookup.
    let sign_in = s
        .wizard_post(
            "/wizard/api/signin",
            "forged-x",
            r#"{"upn":"admin@contoso.example"}"#,
        )
        .await?;
    ensure!(sign_in.starts_with("HTTP/1.1 429"), "{sign_in}");
    s.stop().await
}

/// The server's own time limit (`limits.request_timeout_secs`): a call whose answer does not
/// come within it is DEADLINE_EXCEEDED naming the limit (tonic's timeout answered CANCELLED,
/// which a client reads as "I gave up"). Streams are not cut by it: the SignIn stream and a
/// Follow stream stay open past it and keep delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_request_time_limit_is_deadline_exceeded() -> Result<()> {
    let env = SimServer::start_with(|b| Ok(b.limit("request_timeout_secs", 1))).await?;
    // The device-code flow polls every second: the SignIn stream outlives the limit.
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    let from_seq = env.server.app.audit().size();
    let mut follow = env
        .server
        .audit(Some(AUDITOR))
        .await?
        .follow(pb::FollowRequest {
            from_seq,
            filter: None,
        })
        .await?
        .into_inner();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seq = append(
        &env.server.app,
        serde_json::json!({"action": "secret.add", "actor": "portal"}),
    )
    .await?;
    follow_until(&mut follow, seq).await?;
    // Every Graph answer now takes 3 s: Plan cannot be answered within 1 s.
    env.sim.set_faults(entra_sim::Faults {
        latency_ms: 3000,
        ..calm()
    });
    plan(&env.server, &token, &id, "Timeout-App")
        .await?
        .refused(Code::DeadlineExceeded, &["limits.request_timeout_secs = 1"])?;
    env.sim.set_faults(calm());
    env.stop().await
}

/// The caller's own deadline (`grpc-timeout`), shorter than the server's limit: the call ends
/// at it with DEADLINE_EXCEEDED naming the header, not tonic's server-side CANCELLED ("Timeout
/// expired"), which tells a caller that it gave up itself. Three calls in a row: the answer is
/// this layer's every time, not whichever clock fires first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_callers_deadline_is_deadline_exceeded() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    // Every Graph answer now takes 3 s: Plan cannot be answered within 400 ms.
    env.sim.set_faults(entra_sim::Faults {
        latency_ms: 3000,
        ..calm()
    });
    for _ in 0..3 {
        let r = pb::PlanRequest {
            onboarding_id: id.clone(),
            app_name: "Deadline-App".into(),
            invitation_token: token.clone(),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let answer = plan_by_deadline(&env.server, r, Duration::from_millis(400)).await?;
        let took = started.elapsed();
        answer.refused(
            Code::DeadlineExceeded,
            &["caller's deadline (grpc-timeout: 400000u)"],
        )?;
        ensure!(took < Duration::from_millis(2500), "ended after {took:?}");
    }
    env.sim.set_faults(calm());
    env.stop().await
}

/// Plan over plain HTTP/2 with the caller's deadline `within`, sent as `grpc-timeout` only:
/// unlike tonic's `Channel`, this client (like grpc-go's wire or a raw HTTP/2 one) keeps no
/// clock of its own, so what it reads is the server's answer.
async fn plan_by_deadline(
    server: &TestServer,
    r: pb::PlanRequest,
    within: Duration,
) -> Result<Result<pb::PlanResponse, Status>> {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let origin = server.url().parse()?;
    let mut c = pb::onboarding_client::OnboardingClient::with_origin(http, origin);
    let mut req = tonic::Request::new(r);
    req.set_timeout(within);
    Ok(c.plan(req).await.map(tonic::Response::into_inner))
}

/// Reads `follow` until it delivers entry `seq`; fails if it ends or goes quiet for 10 s first.
async fn follow_until(follow: &mut tonic::Streaming<pb::Entry>, seq: u64) -> Result<()> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), follow.message()).await;
        let entry = next
            .context("Follow went quiet")??
            .context("Follow ended")?;
        if entry.seq == seq {
            return Ok(());
        }
    }
}

/// An entry (padded with `pad` bytes) appended every `every_ms` until the returned task is
/// aborted; an auditor's client, a FollowRequest from the log's end, and a Follow with it that
/// has no deadline.
async fn feed_and_follow(
    s: &TestServer,
    pad: usize,
    every_ms: u64,
) -> Result<(
    tokio::task::JoinHandle<Result<()>>,
    pb::audit_client::AuditClient<testkit::server::Authed>,
    pb::FollowRequest,
    tonic::Streaming<pb::Entry>,
)> {
    let app = s.app.clone();
    let feeder = tokio::spawn(async move {
        for i in 0u64.. {
            let entry = serde_json::json!({"action": "test", "i": i, "pad": "x".repeat(pad)});
            append(&app, entry).await?;
            tokio::time::sleep(Duration::from_millis(every_ms)).await;
        }
        anyhow::Ok(())
    });
    let mut a = s.audit(Some(AUDITOR)).await?;
    let follow = pb::FollowRequest {
        from_seq: s.app.audit().size(),
        filter: None,
    };
    let open = a.follow(follow.clone()).await?.into_inner();
    Ok((feeder, a, follow, open))
}

/// Waits up to `limit` for a GetCheckpoint (with a deadline) to get a call slot: `what`.
async fn a_slot_frees(
    a: &mut pb::audit_client::AuditClient<testkit::server::Authed>,
    what: &str,
    limit: Duration,
) -> Result<()> {
    testkit::wait::until(what, limit, async || {
        let mut r = tonic::Request::new(pb::GetCheckpointRequest {});
        r.set_timeout(Duration::from_secs(5));
        Ok(match a.get_checkpoint(r).await {
            Ok(_) => ControlFlow::Break(()),
            Err(refused) => ControlFlow::Continue(refused),
        })
    })
    .await
}

/// The caller's deadline is the whole call's, a stream's too: Follow, read by a tonic client
/// (which keeps no clock for a stream's body) while entries keep coming, ends at its
/// `grpc-timeout` with DEADLINE_EXCEEDED naming the header, and its call slot is free again at
/// once. The server's own time limit still does not cut a stream (the deadline outlives it);
/// a stream without a deadline stays open and a unary call with one is answered as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_at_the_callers_deadline_and_frees_its_slot() -> Result<()> {
    let s = server_with(&[("request_timeout_secs", 1), ("max_concurrent_calls", 2)]).await?;
    let (feeder, mut a, follow, mut open) = feed_and_follow(&s, 0, 100).await?;
    let mut timed = tonic::Request::new(follow);
    timed.set_timeout(Duration::from_millis(2500));
    let started = std::time::Instant::now();
    let mut timed = a.follow(timed).await?.into_inner();
    let (mut got, mut last) = (0, Duration::ZERO);
    let end = loop {
        ensure!(
            started.elapsed() < Duration::from_secs(8),
            "the stream was still open after {:?} ({got} entries)",
            started.elapsed()
        );
        match tokio::time::timeout(Duration::from_secs(5), timed.message()).await? {
            Ok(Some(_)) => (got, last) = (got + 1, started.elapsed()),
            Ok(None) => bail!("the stream ended without a status after {got} entries"),
            Err(e) => break e,
        }
    };
    let took = started.elapsed();
    ensure!(
        end.code() == Code::DeadlineExceeded
            && end
                .message()
                .contains("caller's deadline (grpc-timeout: 2500000u)"),
        "{end:?}"
    );
    ensure!(
        took >= Duration::from_millis(2400) && took < Duration::from_millis(4500),
        "ended after {took:?}"
    );
    ensure!(
        last > Duration::from_millis(1500),
        "the last entry came at {last:?}: cut by the server's time limit?"
    );
    // `timed` is still held: its slot was freed by the server, not by the caller leaving.
    let what = "a call (with a deadline) in the slot the ended stream freed";
    a_slot_frees(&mut a, what, Duration::from_secs(5)).await?;
    // The stream without a deadline still delivers what is appended now.
    let seq = append(&s.app, serde_json::json!({"action": "test", "after": true})).await?;
    follow_until(&mut open, seq).await?;
    feeder.abort();
    drop((open, timed));
    s.stop().await
}

/// A reader that never reads: its HTTP/2 window fills, and the server stops polling the
/// stream's body. Its deadline still ends the call on time and frees its slot, as for a
/// reader that reads (the deadline used to be checked only when the body was polled, so such
/// a reader held its slot until the slow-reader limit, 30 s here, cut it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_gives_its_slot_back_at_its_deadline() -> Result<()> {
    let s = server_with(&[("max_concurrent_calls", 2), ("slow_reader_secs", 30)]).await?;
    // Entries of 4 KiB, five a second: a 1 KiB window is full after the first.
    let (feeder, mut a, follow, mut open) = feed_and_follow(&s, 4096, 200).await?;
    // Its own connection, so that its full window stalls nothing else.
    let narrow = tonic::transport::Endpoint::from_shared(s.url())?
        .initial_stream_window_size(Some(1024))
        .connect()
        .await?;
    let mut stalled =
        pb::audit_client::AuditClient::new(testkit::server::with_token(narrow, Some(AUDITOR)));
    let mut timed = tonic::Request::new(follow);
    timed.set_timeout(Duration::from_millis(2000));
    let started = std::time::Instant::now();
    let held = stalled.follow(timed).await?.into_inner();
    let what = "a call in the slot the stalled stream held until its deadline";
    a_slot_frees(&mut a, what, Duration::from_secs(10)).await?;
    let took = started.elapsed();
    ensure!(
        took >= Duration::from_millis(1900),
        "a slot was free at {took:?}, before the deadline: the test shows nothing"
    );
    // The open stream (no deadline) still delivers.
    let next = tokio::time::timeout(Duration::from_secs(10), open.message()).await;
    next.context("Follow went quiet")??
        .context("Follow ended")?;
    feeder.abort();
    drop((open, held));
    s.stop().await
}
