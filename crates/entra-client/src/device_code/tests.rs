use super::*;
use crate::testing::{fake_client, json, sts_err, token_ok};

const CODE: &str = r#"{"device_code":"dc-secret","user_code":"ABCD-EFGH","verification_uri":"https://microsoft.com/devicelogin","expires_in":900,"interval":5,"message":"To sign in, use a web browser"}"#;

async fn start(
    script: Vec<crate::testing::Scripted>,
) -> (
    DeviceCodeFlow,
    std::sync::Arc<crate::testing::FakeTransport>,
) {
    let mut all = vec![json(200, CODE)];
    all.extend(script);
    let (client, fake) = fake_client(all);
    let flow = client
        .sts()
        .start_device_code(
            "organizations",
            "client-1",
            &["User.Read", "offline_access"],
            &OpContext::new(),
        )
        .await
        .unwrap();
    (flow, fake)
}

/// The whole seconds between the requests `fake` saw, in order.
fn gaps(fake: &crate::testing::FakeTransport) -> Vec<u64> {
    fake.seen()
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs())
        .collect()
}

/// Asserts the sign-in ended with the scripted `token_ok("user-access")`.
fn signed_in(tokens: &crate::TokenSet) {
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&tokens.access_token),
        "user-access"
    );
}

#[tokio::test(start_paused = true)]
async fn request_shape_and_display_fields() {
    let (flow, fake) = start(vec![]).await;
    let a = flow.authorization();
    assert_eq!(a.user_code, "ABCD-EFGH");
    assert_eq!(a.verification_uri, "https://microsoft.com/devicelogin");
    assert_eq!(a.expires_in, Duration::from_secs(900));
    assert_eq!(flow.interval(), Duration::from_secs(5));
    assert!(!format!("{flow:?}").contains("dc-secret"));
    let s = &fake.seen()[0];
    assert_eq!(
        s.url,
        "https://login.test/organizations/oauth2/v2.0/devicecode"
    );
    assert_eq!(s.body, "client_id=client-1&scope=User.Read+offline_access");
}

#[tokio::test(start_paused = true)]
async fn slow_down_adds_five_seconds_to_this_and_later_polls() {
    let pending = || sts_err(400, "authorization_pending", 70016);
    let (mut flow, fake) = start(vec![
        pending(),
        sts_err(400, "slow_down", 70016),
        pending(),
        sts_err(400, "slow_down", 70016),
        pending(),
        token_ok("user-access"),
    ])
    .await;
    let mut ticks = Vec::new();
    signed_in(
        &flow
            .poll_until_done(|t| ticks.push(t.clone()))
            .await
            .unwrap(),
    );
    let intervals: Vec<u64> = ticks.iter().map(|t| t.next_poll_in.as_secs()).collect();
    assert_eq!(intervals, vec![5, 10, 10, 15, 15]);
    let slowed: Vec<bool> = ticks.iter().map(|t| t.slowed_down).collect();
    assert_eq!(slowed, vec![false, true, false, true, false]);
    // Gaps between token polls as sent: 5, 5, 10, 10, 15, 15 s (the first is from the code request).
    assert_eq!(gaps(&fake), vec![5, 5, 10, 10, 15, 15]);
    let seen = fake.seen();
    assert!(
        seen[1]
            .body
            .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code")
    );
    assert!(seen[1].body.contains("device_code=dc-secret"));
    // Every poll declares the `cp1` client capability (`sts::CLIENT_CAPABILITIES`).
    assert!(
        seen[1..].iter().all(|r| r.body.ends_with(
            "&claims=%7B%22access_token%22%3A%7B%22xms_cc%22%3A%7B%22values%22%3A%5B%22cp1%22%5D%7D%7D%7D"
        )),
        "{:?}",
        seen[1].body
    );
}

#[tokio::test(start_paused = true)]
async fn a_poll_retried_after_a_server_error_still_keeps_the_interval() {
    // 503 `temporarily_unavailable` without Retry-After: retried inside the poll, but the
    // interval after the failed request, not the first backoff step (1 s).
    let (mut flow, fake) = start(vec![
        sts_err(503, "temporarily_unavailable", 50001),
        token_ok("user-access"),
    ])
    .await;
    signed_in(&flow.poll_until_done(|_| {}).await.unwrap());
    assert_eq!(gaps(&fake), vec![5, 5]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_shorter_than_the_interval_still_keeps_the_interval() {
    // A 429 naming 1 s: the poll waits the interval Microsoft set ("at least `interval`
    // seconds"), not the shorter wait.
    let (mut flow, fake) = start(vec![crate::testing::throttled(1), token_ok("user-access")]).await;
    signed_in(&flow.poll_until_done(|_| {}).await.unwrap());
    assert_eq!(gaps(&fake), vec![5, 5]);
}

#[tokio::test(start_paused = true)]
async fn poll_once_reports_each_state() {
    let (mut flow, _) = start(vec![
        sts_err(400, "authorization_pending", 70016),
        sts_err(400, "slow_down", 70016),
    ])
    .await;
    assert!(
        matches!(flow.poll_once().await.unwrap(), PollOutcome::Pending { next_poll_in } if next_poll_in == Duration::from_secs(5))
    );
    assert!(
        matches!(flow.poll_once().await.unwrap(), PollOutcome::SlowDown { next_poll_in } if next_poll_in == Duration::from_secs(10))
    );
}

#[tokio::test(start_paused = true)]
async fn terminal_outcomes_are_typed() {
    let (mut f, _) = start(vec![sts_err(400, "authorization_declined", 0)]).await;
    let e = f.poll_once().await.unwrap_err();
    assert!(matches!(e, EntraError::DeviceCodeDeclined(_)) && e.is_authorization_denied());

    let (mut f, _) = start(vec![sts_err(400, "access_denied", 0)]).await;
    assert!(matches!(
        f.poll_once().await.unwrap_err(),
        EntraError::DeviceCodeDeclined(_)
    ));

    let (mut f, _) = start(vec![sts_err(400, "expired_token", 70019)]).await;
    let e = f.poll_once().await.unwrap_err();
    assert!(matches!(e, EntraError::DeviceCodeExpired(Some(_))));
    assert_eq!(e.aadsts(), Some(70019));

    let (mut f, _) = start(vec![sts_err(400, "bad_verification_code", 70018)]).await;
    assert!(matches!(
        f.poll_once().await.unwrap_err(),
        EntraError::BadVerificationCode(_)
    ));

    let (mut f, _) = start(vec![sts_err(400, "invalid_grant", 50126)]).await;
    let e = f.poll_once().await.unwrap_err();
    assert!(matches!(e, EntraError::Sts(_)));
    assert_eq!(e.aadsts(), Some(50126));
}

#[tokio::test(start_paused = true)]
async fn local_expiry_stops_polling() {
    let short = r#"{"device_code":"d","user_code":"U","verification_uri":"https://x.test","expires_in":12,"interval":5}"#;
    let pending = || sts_err(400, "authorization_pending", 70016);
    let (client, fake) = fake_client(vec![json(200, short), pending(), pending(), pending()]);
    let mut flow = client
        .sts()
        .start_device_code("organizations", "c", &["User.Read"], &OpContext::new())
        .await
        .unwrap();
    let err = flow.poll_until_done(|_| {}).await.unwrap_err();
    assert!(
        matches!(err, EntraError::DeviceCodeExpired(None)),
        "{err:?}"
    );
    // Polls at 5 s, 10 s and 12 s (capped by expiry), then the local clock says expired.
    assert_eq!(fake.seen().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_lost_poll_is_not_resent_and_a_redeemed_code_then_asks_for_a_new_sign_in() {
    use crate::testing::Scripted;
    let redeemed = || sts_err(400, "invalid_grant", 54005);
    for lost in [
        Scripted::Fail(TransportErrorKind::Timeout),
        Scripted::Fail(TransportErrorKind::Other),
        sts_err(504, "http_504", 0),
    ] {
        let (mut flow, fake) = start(vec![lost, redeemed()]).await;
        let mut ticks = Vec::new();
        let err = flow
            .poll_until_done(|t| ticks.push(t.clone()))
            .await
            .unwrap_err();
        assert!(matches!(err, EntraError::SignInAnswerLost(_)), "{err:?}");
        assert!(err.to_string().contains("must be started again"), "{err}");
        assert_eq!(err.aadsts(), Some(54005));
        // The lost poll was not sent again at once: the next poll came a full interval later.
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].at - seen[1].at, Duration::from_secs(5));
        assert_eq!(ticks.len(), 1, "the lost poll is reported as pending");
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_poll_before_the_user_finished_is_just_a_missed_poll() {
    use crate::testing::Scripted;
    let (mut flow, fake) = start(vec![
        Scripted::Fail(TransportErrorKind::Timeout),
        sts_err(400, "authorization_pending", 70016),
        token_ok("user-access"),
    ])
    .await;
    signed_in(&flow.poll_until_done(|_| {}).await.unwrap());
    assert_eq!(fake.seen().len(), 4);
    // An answered poll clears the lost one: a later refusal is the STS's own answer.
    let (mut flow, _) = start(vec![
        Scripted::Fail(TransportErrorKind::Timeout),
        sts_err(400, "authorization_pending", 70016),
        sts_err(400, "invalid_grant", 54005),
    ])
    .await;
    let err = flow.poll_until_done(|_| {}).await.unwrap_err();
    assert!(matches!(err, EntraError::Sts(_)), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn polls_lost_in_a_row_end_at_the_retry_budget() {
    use crate::testing::Scripted;
    let lost: Vec<Scripted> = (0..6)
        .map(|_| Scripted::Fail(TransportErrorKind::Timeout))
        .collect();
    let (mut flow, fake) = start(lost).await;
    let err = flow.poll_until_done(|_| {}).await.unwrap_err();
    assert!(
        matches!(
            err,
            EntraError::Transport {
                kind: TransportErrorKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.seen().len(), 7, "the code request and six polls");
}

/// A poll answered 504 with `Retry-After: 20` is not sent again (it may have redeemed the code),
/// and the next poll waits the 20 s the STS asked for, not the 5 s interval; the one after
/// that is back on the interval.
#[tokio::test(start_paused = true)]
async fn a_lost_poll_naming_a_wait_delays_the_next_poll_by_it() {
    use crate::testing::Scripted;
    let lost = Scripted::Resp(
        504,
        vec![("retry-after", "20".to_owned())],
        r#"{"error":"server_error"}"#.to_owned(),
    );
    let pending = sts_err(400, "authorization_pending", 70016);
    let (mut flow, fake) = start(vec![lost, pending, token_ok("user-access")]).await;
    let mut ticks = Vec::new();
    signed_in(
        &flow
            .poll_until_done(|t| ticks.push(t.next_poll_in))
            .await
            .unwrap(),
    );
    assert_eq!(gaps(&fake), vec![5, 20, 5]);
    let s = Duration::from_secs;
    assert_eq!(ticks, [s(20), s(5)]);
}
