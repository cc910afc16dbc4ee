//! What `credentials.proto` promises a client built only from it, checked over the real gRPC
//! server and the Entra emulator: one test per promise that a review found broken.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use onboard_proto::v1::credentials_client::CredentialsClient;
use onboard_server::Role;
use secrecy::ExposeSecret;
use testkit::portal::{DIRECT_ROUTING, HandMade};
use testkit::server::{Authed, OPERATOR, ServerConfigBuilder, bad_fields};
use testkit::server_helpers::{ROTATION_STAGES, Refusal, secrets};
use testkit::sim::{calm, users};
use testkit::sim_server::SimServer;
use tonic::Code;

/// A second operator's bearer token (identity `portal-2`).
const SECOND_OPERATOR: &str = "operator-token-2";

/// A refusal that must be INVALID_ARGUMENT naming exactly `field`.
async fn names<T>(call: impl Refusal<T>, field: &str, what: &str) -> Result<()> {
    let e = call.refusal().await?;
    ensure!(
        e.code() == Code::InvalidArgument && bad_fields(&e) == [field],
        "{what}: wanted INVALID_ARGUMENT on {field}: {e:?}"
    );
    Ok(())
}

/// An AttachRegistration request for a registration of the emulator's tenant.
fn attach(env: &SimServer, client_id: &str, secret: &str) -> pb::AttachRegistrationRequest {
    pb::AttachRegistrationRequest {
        registration: env.registration(client_id),
        profile: "direct-routing".into(),
        service_ids: vec!["dr-attached".into()],
        client_secret: secret.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_service_id_is_invalid_argument_before_any_lookup() -> Result<()> {
    let env = SimServer::start().await?;
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    // Of a registration that is not managed: the request is wrong before anything is looked
    // up, in both RPCs that take a service id (RotateSecret said NOT_FOUND).
    let unknown = || env.registration("00000000-0000-0000-0000-00000000abcd");
    let rotate = pb::RotateSecretRequest {
        registration: unknown(),
        service_id: "dr/1".into(),
        overlap: None,
        seal_to: None,
    };
    names(c.rotate_secret(rotate), "service_id", "RotateSecret").await?;
    // A bidi override or zero-width character is refused as CreateInvitation refuses it:
    // the id names secrets in Entra (it was taken and stored).
    for service_id in ["dr/1", "dr\u{202E}1", "dr\u{200B}1"] {
        let add = pb::AddServiceSecretRequest {
            registration: unknown(),
            service_id: service_id.into(),
            valid_for: None,
            seal_to: None,
        };
        names(c.add_service_secret(add), "service_id", service_id).await?;
    }
    // A duration whose nanos are out of range is not well formed (it was folded into seconds).
    let bad = Some(prost_types::Duration {
        seconds: 3599,
        nanos: 1_000_000_000,
    });
    let add = pb::AddServiceSecretRequest {
        registration: unknown(),
        service_id: "dr-1".into(),
        valid_for: bad,
        seal_to: None,
    };
    names(c.add_service_secret(add), "valid_for", "AddServiceSecret").await?;
    let rotate = pb::RotateSecretRequest {
        registration: unknown(),
        service_id: "dr-1".into(),
        overlap: bad,
        seal_to: None,
    };
    names(c.rotate_secret(rotate), "overlap", "RotateSecret").await?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_admin_session_ends_the_session_of_the_tenant_id_it_checked() -> Result<()> {
    let env = SimServer::start().await?;
    env.onboarded("direct-routing", "Sbc-End").await?;
    env.day_two_sign_in().await?;
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    // A domain name is no tenant id: refused, where it used to end nothing and say OK.
    let domain = pb::EndAdminSessionRequest {
        tenant_id: env.info.tenant_domain.clone(),
    };
    names(c.end_admin_session(domain), "tenant_id", "a domain").await?;
    // Checked trimmed, so acted on trimmed, and in either case (upper case was INTERNAL, the
    // session kept): the session ends and its temporary app goes.
    let ended = c
        .end_admin_session(pb::EndAdminSessionRequest {
            tenant_id: format!(" {} ", env.info.tenant_id.to_ascii_uppercase()),
        })
        .await?
        .into_inner();
    ensure!(
        ended.session_was_usable && ended.temporary_apps_removed == 1,
        "{ended:?}"
    );
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_expiry_is_int64_max_with_no_end() -> Result<()> {
    // A registration made by hand, attached where no admin is signed in: its own token may not
    // read applications, so the secret's key id and expiry stay unknown.
    let env = SimServer::start().await?;
    let entra = env.entra_client()?;
    let admin = testkit::sim::sign_in(&env.sim, &entra, users::GLOBAL_ADMIN).await?;
    let HandMade {
        client_id, secret, ..
    } = testkit::portal::hand_made(
        &entra.graph(admin.access_token),
        "Sbc-Hand",
        &DIRECT_ROUTING,
    )
    .await?;
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    c.attach_registration(attach(&env, &client_id, secret.expose_secret()))
        .await?;
    let list = secrets(&mut c, &env.registration(&client_id)).await?;
    ensure!(list.len() == 1, "{list:?}");
    // Not 0, which reads as "expires today".
    ensure!(
        list[0].end.is_none() && list[0].days_until_expiry == i64::MAX,
        "{list:?}"
    );
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_version_that_is_not_one_is_refused_by_name_everywhere() -> Result<()> {
    let env = SimServer::start().await?;
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    // `platform_version`'s fault, not `profile`'s, and whatever the profile: `qoe` has no
    // older-version additions, so "abc" used to pass it unread.
    let client = "00000000-0000-0000-0000-00000000abcd";
    for profile in ["direct-routing", "qoe"] {
        let bad = pb::AttachRegistrationRequest {
            profile: profile.into(),
            platform_version: "abc".into(),
            ..attach(&env, client, "not-a-secret")
        };
        names(c.attach_registration(bad), "platform_version", profile).await?;
    }
    // CreateInvitation, whose rule AttachRegistration now shares, had the same gap.
    let mut inv = env.server.invitations(Some(OPERATOR)).await?;
    let bad = pb::CreateInvitationRequest {
        customer: "Contoso".into(),
        service_id: "dr-1".into(),
        profile: "qoe".into(),
        platform_version: "abc".into(),
        ..Default::default()
    };
    names(inv.create_invitation(bad), "platform_version", "invitation").await?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_permission_is_invalid_argument_on_its_list() -> Result<()> {
    let env = SimServer::start().await?;
    let done = env.onboarded("direct-routing", "Sbc-Names").await?.done;
    env.day_two_sign_in().await?;
    let reg = env.registration(&done.client_id);
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    // Not a state to wait out (FAILED_PRECONDITION) but a name to correct, on the list that
    // holds it, as for a misnamed role.
    let add = pb::UpdatePermissionsRequest {
        registration: reg.clone(),
        add: vec!["User.Raed.All".into()],
        ..Default::default()
    };
    names(c.update_permissions(add), "add", "misspelt add").await?;
    let remove = pb::UpdatePermissionsRequest {
        registration: reg,
        remove: vec!["Nothing.Read.All".into()],
        ..Default::default()
    };
    names(c.update_permissions(remove), "remove", "misspelt remove").await?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_service_ids_are_refused_for_the_field_not_the_audit_entry() -> Result<()> {
    let env = SimServer::start().await?;
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    // Too many services, or one too long: refused for the field before anything is recorded,
    // not for the audit entry they would make (UNAVAILABLE, which clients retry for ever).
    let client = "00000000-0000-0000-0000-00000000abcd";
    let many = pb::AttachRegistrationRequest {
        service_ids: (0..10_000).map(|i| format!("dr-{i}")).collect(),
        ..attach(&env, client, "not-a-secret")
    };
    names(
        c.attach_registration(many),
        "service_ids",
        "10,000 services",
    )
    .await?;
    let long = pb::AttachRegistrationRequest {
        service_ids: vec!["d".repeat(200)],
        ..attach(&env, client, "not-a-secret")
    };
    names(c.attach_registration(long), "service_ids", "a long service").await?;
    // 128 bytes after trimming is within the rule: judged on, not refused for its padding.
    let padded = pb::AttachRegistrationRequest {
        service_ids: vec![format!(" {}\t", "d".repeat(128))],
        ..attach(&env, client, "not-a-secret")
    };
    let e = c.attach_registration(padded).refusal().await?;
    ensure!(!bad_fields(&e).contains(&"service_ids".to_owned()), "{e:?}");
    env.stop().await
}

/// Reads `stream` until the `hand_over` done event or the end: its events as `stage:done`, the
/// new secret its `add` done event carried, and the status it ended with, if any.
async fn until_hand_over(
    stream: &mut tonic::Streaming<pb::RotateSecretEvent>,
) -> Result<(Vec<String>, Option<pb::NewSecret>, Option<tonic::Status>)> {
    let mut stages = Vec::new();
    let mut new_secret = None;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(120), stream.message())
            .await
            .with_context(|| format!("the stream stalled after {stages:?}"))?;
        let ev = match next {
            Ok(Some(ev)) => ev,
            Ok(None) => return Ok((stages, new_secret, None)),
            Err(s) => return Ok((stages, new_secret, Some(s))),
        };
        stages.push(format!("{}:{}", ev.stage, ev.done));
        if ev.new_secret.is_some() {
            new_secret = ev.new_secret;
        }
        if ev.stage == "hand_over" && ev.done {
            return Ok((stages, new_secret, None));
        }
    }
}

/// Starts RotateSecret of `dr-1` with an overlap of `overlap_secs`.
async fn rotate(
    c: &mut CredentialsClient<Authed>,
    reg: &Option<pb::RegistrationRef>,
    overlap_secs: i64,
) -> Result<tonic::Streaming<pb::RotateSecretEvent>> {
    let r = pb::RotateSecretRequest {
        registration: reg.clone(),
        service_id: "dr-1".into(),
        overlap: Some(prost_types::Duration {
            seconds: overlap_secs,
            nanos: 0,
        }),
        seal_to: None,
    };
    Ok(c.rotate_secret(r).await?.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_resumed_after_a_failed_call_gives_this_caller_the_secret_and_its_overlap()
-> Result<()> {
    let env = SimServer::start().await?;
    let done = env.onboarded("direct-routing", "Sbc-Resume").await?.done;
    let reg = env.registration(&done.client_id);
    let mut c = env.server.credentials(Some(OPERATOR)).await?;

    // The first call adds the new secret, then its validation fails: the identity platform
    // throttles every token request from the moment the add's Graph calls begin (each Graph
    // call is slowed so the switch lands before the validation asks for its token).
    env.sim.set_faults(Faults {
        latency_ms: 1000,
        ..calm()
    });
    let graph_before = env.sim.request_counts().graph;
    let mut first = rotate(&mut c, &reg, 0).await?;
    testkit::wait::until_true("the add at Graph", Duration::from_secs(60), async || {
        Ok(env.sim.request_counts().graph != graph_before)
    })
    .await?;
    env.sim.set_faults(Faults {
        sts_throttle_rate: 1.0,
        throttle_retry_after_s: 0,
        ..calm()
    });
    let (stages, given, end) = until_hand_over(&mut first).await?;
    ensure!(
        stages == ["add:false", "add:true", "validate:false"] && end.is_some(),
        "{stages:?} {end:?}"
    );
    let given = given.context("the first call's add event carries the secret")?;
    // Its caller saw the call fail and discards the value. Entra is back.
    env.sim.set_faults(calm());

    // Called again with a week's overlap: the stored rotation resumes, and this caller gets
    // the new secret (the same one: it is what becomes current) and its own overlap.
    let week = 7 * 86_400;
    let mut second = rotate(&mut c, &reg, week).await?;
    let (stages, again, end) = until_hand_over(&mut second).await?;
    ensure!(end.is_none(), "{stages:?} {end:?}");
    ensure!(stages == ROTATION_STAGES[..6], "{stages:?}");
    let again = again.context("the resumed call's add event carries the secret")?;
    ensure!(again.secret == given.secret && again.audit_seq == given.audit_seq);
    // Both calls got the value, and each hand-over to a caller is in the log.
    let key = given.info.as_ref().context("info")?.key_id.clone();
    let got = hand_overs(&env, &key)?;
    ensure!(
        got == ["portal -", "portal clear", "portal clear"],
        "{got:?}"
    );
    ensure!(env.authenticates(&done.client_id, &again.secret).await?);
    let hand_over = env
        .server
        .entries()?
        .into_iter()
        .rfind(|e| e["action"] == "secret.hand_over" && e["delivery"].is_null())
        .context("no hand-over entry")?;
    let until = hand_over["changes"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["property"] == "oldRemovedAfter"))
        .and_then(|c| c["new"].as_str())
        .and_then(onboard_core::time::parse)
        .context("oldRemovedAfter")?;
    let left = until - time::OffsetDateTime::now_utc();
    ensure!(
        left > time::Duration::days(6),
        "old secret removed after {left}"
    );
    // In the overlap both secrets work; the new one is current.
    ensure!(env.authenticates(&done.client_id, &done.secret).await?);
    let list = secrets(&mut c, &reg).await?;
    let current: Vec<_> = list.iter().filter(|s| s.current).collect();
    ensure!(
        current.len() == 1 && Some(&current[0].key_id) == again.info.as_ref().map(|i| &i.key_id),
        "{list:?}"
    );
    env.stop().await
}

/// A caller whose stream ended during the overlap (the rotation goes on without it) calls
/// again: it joins the rotation, gets the new secret (the current one, as the first call got
/// it) and follows it to the old secret's removal. It used to be FAILED_PRECONDITION until the
/// old secret was gone, so a platform that missed the value lost its working secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_during_the_overlap_joins_the_rotation_and_gets_the_new_secret() -> Result<()> {
    // A second operator identity joins, so the log must say who got the value each time.
    let env = SimServer::start_with(|b: ServerConfigBuilder| {
        Ok(b.token(SECOND_OPERATOR, "portal-2", Role::Operator))
    })
    .await?;
    let done = env.onboarded("direct-routing", "Sbc-Join").await?.done;
    let reg = env.registration(&done.client_id);
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let mut first = rotate(&mut c, &reg, 4).await?;
    let (stages, given, end) = until_hand_over(&mut first).await?;
    ensure!(
        end.is_none() && stages.last().map(String::as_str) == Some("hand_over:true"),
        "{stages:?} {end:?}"
    );
    let given = given.context("the first call's add event carries the secret")?;
    // Its caller goes away in the overlap; the rotation waits it out on its own.
    drop(first);
    let mut other = env.server.credentials(Some(SECOND_OPERATOR)).await?;
    let mut second = rotate(&mut other, &reg, 0).await?;
    let mut stages = Vec::new();
    let mut again = None;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(60), second.message()).await?? {
        stages.push(format!("{}:{}", ev.stage, ev.done));
        again = again.or(ev.new_secret);
    }
    ensure!(
        stages == ["add:false", "add:true", "hand_over:true", "remove_old:true"],
        "{stages:?}"
    );
    let again = again.context("the joining call's add event carries the secret")?;
    let key_id = |s: &pb::NewSecret| s.info.as_ref().map(|i| i.key_id.clone());
    ensure!(again.secret == given.secret && key_id(&again) == key_id(&given));
    // Handed over: the secret the service uses now.
    ensure!(
        again.info.as_ref().is_some_and(|i| i.current),
        "{:?}",
        again.info
    );
    ensure!(env.authenticates(&done.client_id, &again.secret).await?);
    ensure!(
        !env.authenticates(&done.client_id, &done.secret).await?,
        "the old secret outlived the overlap"
    );
    // Each caller that got the value is named by a hand-over of its own, beside the one that
    // made the secret current.
    let key = key_id(&given).context("key id")?;
    let got = hand_overs(&env, &key)?;
    ensure!(
        got == ["portal -", "portal clear", "portal-2 clear"],
        "{got:?}"
    );
    env.stop().await
}

/// The `secret.hand_over` entries of secret `key_id`, sorted: `<actor> <delivery>`, the
/// delivery `-` on the rotation's own (the secret becomes current). Sorted, since a caller's
/// entry is written as its answer leaves, while the rotation goes on.
fn hand_overs(env: &SimServer, key_id: &str) -> Result<Vec<String>> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let mut got: Vec<_> = env
        .server
        .entries()?
        .iter()
        .filter(|e| e["action"] == "secret.hand_over" && e["target"]["id"] == key_id)
        .map(|e| format!("{} {}", text(&e["actor"]), text(&e["delivery"])))
        .collect();
    got.sort();
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_or_permission_named_twice_counts_once_and_one_in_both_lists_is_refused()
-> Result<()> {
    let env = SimServer::start().await?;
    let done = env.onboarded("direct-routing", "Sbc-Twice").await?.done;
    env.day_two_sign_in().await?;
    let reg = env.registration(&done.client_id);
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    // In both lists, however named: refused before anything changes (it was added, then the
    // remove loop missed it, or removed, depending on what was held).
    let both = pb::UpdateRolesRequest {
        registration: reg.clone(),
        add: vec!["Global Reader".into()],
        remove: vec!["f2ef992c-3afb-46b9-b7cf-a126ee74c451".into()],
        ..Default::default()
    };
    names(c.update_roles(both), "remove", "a role in both lists").await?;
    let both = pb::UpdatePermissionsRequest {
        registration: reg.clone(),
        add: vec!["Directory.Read.All".into()],
        remove: vec!["Directory.Read.All".into()],
        ..Default::default()
    };
    names(c.update_permissions(both), "remove", "a permission in both").await?;
    // Named twice in one list (by name and by template id): one assignment, one entry (the
    // second POST was answered "already exists" after the first was made).
    let twice = pb::UpdateRolesRequest {
        registration: reg.clone(),
        add: vec![
            "Global Reader".into(),
            "F2EF992C-3AFB-46B9-B7CF-A126EE74C451".into(),
        ],
        ..Default::default()
    };
    let g = c.update_roles(twice).await?.into_inner();
    ensure!(
        g.roles.contains(&"Global Reader".to_owned()) && g.audit_seqs.len() == 1,
        "{g:?}"
    );
    // The session ended with that change; one more for the permissions.
    env.day_two_sign_in().await?;
    let twice = pb::UpdatePermissionsRequest {
        registration: reg,
        add: vec!["Directory.Read.All".into(), "Directory.Read.All".into()],
        ..Default::default()
    };
    let g = c.update_permissions(twice).await?.into_inner();
    ensure!(
        g.permissions.contains(&"Directory.Read.All".to_owned()) && g.audit_seqs.len() == 1,
        "{g:?}"
    );
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_ids_are_checked_and_used_trimmed_by_every_call() -> Result<()> {
    let env = SimServer::start().await?;
    let done = env.onboarded("direct-routing", "Sbc-Trim").await?.done;
    let reg = env.registration(&done.client_id);
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let add = |service: &str| pb::AddServiceSecretRequest {
        registration: reg.clone(),
        service_id: service.into(),
        valid_for: None,
        seal_to: None,
    };
    // Blank is empty after trimming: refused, as CreateInvitation refuses it.
    names(c.add_service_secret(add("   ")), "service_id", "blank").await?;
    // Padded is the service itself (it was another service, "dr-1 ").
    let new = c.add_service_secret(add(" dr-1\t")).await?.into_inner();
    let info = new.info.context("info")?;
    ensure!(info.service_id == "dr-1" && info.current, "{info:?}");
    let list = secrets(&mut c, &reg).await?;
    ensure!(
        list.iter().all(|s| s.service_id == "dr-1")
            && list.iter().filter(|s| s.current).count() == 1,
        "{list:?}"
    );
    // Verify finds the service padded (it said NOT_FOUND), and refuses a malformed one.
    let mut v = env.server.verification(Some(OPERATOR)).await?;
    let verify = |service: &str| pb::VerifyRequest {
        target: Some(pb::verify_request::Target::ServiceId(service.into())),
    };
    let report = v.verify(verify(" dr-1 ")).await?.into_inner();
    ensure!(report.client_id == done.client_id, "{report:?}");
    names(v.verify(verify("dr/1")), "service_id", "Verify dr/1").await?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_service_secret_cut_off_by_its_deadline_or_its_caller_still_records_what_it_made()
-> Result<()> {
    let env = SimServer::start().await?;
    let done = env.onboarded("direct-routing", "Sbc-Cut").await?.done;
    let reg = env.registration(&done.client_id);
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    // Each Graph call takes 1.5 s: the add (a token, a read, addPassword) outlasts the call.
    env.sim.set_faults(Faults {
        latency_ms: 1500,
        ..calm()
    });
    let add = |service: &str| {
        tonic::Request::new(pb::AddServiceSecretRequest {
            registration: reg.clone(),
            service_id: service.into(),
            valid_for: None,
            seal_to: None,
        })
    };
    // The deadline passes at the server (`grpc-timeout`): DEADLINE_EXCEEDED.
    let mut req = add("dr-2");
    req.set_timeout(Duration::from_millis(800));
    let cut = c.add_service_secret(req).await;
    ensure!(cut.is_err(), "answered within its deadline: {cut:?}");
    // The caller goes away (its stream reset, no deadline sent).
    let mut gone = env.server.credentials(Some(OPERATOR)).await?;
    let quit = tokio::time::timeout(
        Duration::from_millis(800),
        gone.add_service_secret(add("dr-3")),
    )
    .await;
    ensure!(quit.is_err(), "answered before its caller left: {quit:?}");
    drop(gone);
    // Each secret Entra made is recorded (listed, revocable), not left for no one to know of.
    let what = "both secrets Entra made recorded";
    let made = testkit::wait::until(what, Duration::from_secs(60), async || {
        let list = secrets(&mut c, &reg).await?;
        let made: Vec<_> = list
            .iter()
            .filter(|s| s.service_id == "dr-2" || s.service_id == "dr-3")
            .map(|s| s.key_id.clone())
            .collect();
        Ok(testkit::wait::settled(made.len() == 2, made, list))
    })
    .await?;
    env.sim.set_faults(calm());
    let in_entra = testkit::snapshot::passwords(&env.sim.snapshot(), &done.client_id);
    ensure!(
        in_entra.len() == 3
            && made
                .iter()
                .all(|k| in_entra.iter().any(|p| p["key_id"] == k.as_str())),
        "Entra has {in_entra:?}, the store {made:?}"
    );
    // Each change has its outcome in the audit log, not an intent alone.
    let entries = env.server.entries()?;
    let phases = |phase: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == "password_credential.create" && e["phase"] == phase)
            .count()
    };
    ensure!(
        phases("intent") == phases("succeeded") && phases("succeeded") >= 2,
        "intents {} outcomes {}",
        phases("intent"),
        phases("succeeded")
    );
    env.stop().await
}
