//! The Credentials service end to end over real loopback sockets against the HTTPS Entra
//! emulator: an onboarding's registration becomes managed, an operator adds, rotates, lists and
//! revokes secrets and changes roles; other roles are refused; secret values appear only in the
//! responses that created them (never in the audit log or in a listing).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use onboard_proto::v1::credentials_client::CredentialsClient;
use testkit::config::OPERATOR_IDENTITY;
use testkit::server::{ADMIN, AUDITOR, Authed, OPERATOR, bad_fields};
use testkit::server_helpers::{ROTATION_STAGES, Refusal, secrets};
use testkit::sim::TOKEN_APP;
use testkit::sim_server::SimServer;
use testkit::snapshot::{apps_named, sps_where};
use testkit::wizard::completed;
use tonic::Code;

/// An onboarding of app `name`, then a day-two sign-in. Provisioning removed the temporary
/// token app, and with it the consent behind that sign-in's refresh token; the day-two
/// sign-in ("Reinitiate Authentication Flow") stores the admin session day-two changes use.
async fn onboarded_then_signed_in(env: &SimServer, name: &str) -> Result<pb::Completed> {
    let done = env.onboarded("direct-routing", name).await?.done;
    env.day_two_sign_in().await?;
    Ok(done)
}

/// A registration Onboard provisioned, attached before anything has imported it (no
/// Credentials call, and the platform has not claimed its secret yet): ALREADY_EXISTS, before
/// the secret offered is even tried, and its provisioned record stays.
#[tokio::test]
async fn attaching_a_registration_onboard_provisioned_is_already_exists() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    let done = completed(&env.provision(&token, &id, "Sbc-Attach").await??)?;
    let reg = env.registration(&done.client_id);
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let attach = pb::AttachRegistrationRequest {
        registration: reg.clone(),
        profile: "direct-routing".into(),
        client_secret: "not the registration's secret".into(),
        service_ids: vec!["dr-1".into()],
        ..Default::default()
    };
    c.attach_registration(attach)
        .refused(Code::AlreadyExists, &["already managed"])
        .await?;
    let list = secrets(&mut c, &reg).await?;
    ensure!(list.len() == 1 && list[0].key_id == done.key_id, "{list:?}");
    env.stop().await
}

/// An admin change now is refused for want of a signed-in admin, and says so.
async fn needs_a_sign_in(
    c: &mut CredentialsClient<Authed>,
    reg: &Option<pb::RegistrationRef>,
) -> Result<()> {
    let add = pb::UpdateRolesRequest {
        registration: reg.clone(),
        add: vec!["Teams Administrator".into()],
        ..Default::default()
    };
    c.update_roles(add)
        .refused(Code::FailedPrecondition, &["signed in"])
        .await?;
    Ok(())
}

/// Polls the registration's secrets until `settled` holds for them (or fails after `limit`,
/// saying `what`); those secrets.
async fn secrets_until(
    c: &mut CredentialsClient<Authed>,
    reg: &Option<pb::RegistrationRef>,
    limit: Duration,
    what: &str,
    settled: impl Fn(&[pb::SecretInfo]) -> bool,
) -> Result<Vec<pb::SecretInfo>> {
    testkit::wait::until(what, limit, async || {
        let now = secrets(c, reg).await?;
        Ok(testkit::wait::settled(settled(&now), now.clone(), now))
    })
    .await
}

/// Starts a rotation of `service`'s secret with an overlap of `overlap_secs`.
async fn rotate(
    c: &mut CredentialsClient<Authed>,
    reg: &Option<pb::RegistrationRef>,
    service: &str,
    overlap_secs: i64,
) -> Result<tonic::Streaming<pb::RotateSecretEvent>> {
    let r = pb::RotateSecretRequest {
        registration: reg.clone(),
        service_id: service.into(),
        overlap: Some(prost_types::Duration {
            seconds: overlap_secs,
            nanos: 0,
        }),
        seal_to: None,
    };
    Ok(c.rotate_secret(r).await?.into_inner())
}

/// A rotation's events to the end of the stream: its (stage, done) pairs and the new secret.
async fn rotation(
    mut stream: tonic::Streaming<pb::RotateSecretEvent>,
) -> Result<(Vec<(String, bool)>, Option<String>)> {
    let mut stages = Vec::new();
    let mut new_secret = None;
    while let Some(e) = tokio::time::timeout(Duration::from_secs(60), stream.message()).await?? {
        stages.push((e.stage.clone(), e.done));
        if let Some(n) = e.new_secret {
            new_secret = Some(n.secret);
        }
    }
    Ok((stages, new_secret))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_manages_an_onboarded_registration_over_grpc() -> Result<()> {
    let env = SimServer::start().await?;
    let done = onboarded_then_signed_in(&env, "Sbc-Day2").await?;
    let tenant = env.info.tenant_id.clone();
    let reg = env.registration(&done.client_id);
    let svc = "dr-1".to_owned();

    // Who may call: operators only.
    for (who, want) in [
        (None, Code::Unauthenticated),
        (Some(AUDITOR), Code::PermissionDenied),
        (Some(ADMIN), Code::PermissionDenied),
    ] {
        let mut c = env.server.credentials(who).await?;
        let list = pb::ListSecretsRequest {
            registration: reg.clone(),
        };
        c.list_secrets(list).refused(want, &[]).await?;
    }
    let mut c = env.server.credentials(Some(OPERATOR)).await?;

    // The onboarding's secret is listed (metadata only).
    let list = secrets(&mut c, &reg).await?;
    ensure!(list.len() == 1 && list[0].key_id == done.key_id, "{list:?}");
    ensure!(list[0].current && list[0].days_until_expiry > 0 && list[0].end.is_some());
    ensure!(format!("{list:?}").find(&done.secret).is_none());

    // Add: the value comes once, in the response, and works.
    let added = c
        .add_service_secret(pb::AddServiceSecretRequest {
            registration: reg.clone(),
            service_id: svc.clone(),
            valid_for: Some(prost_types::Duration {
                seconds: 20 * 86_400,
                nanos: 0,
            }),
            seal_to: None,
        })
        .await?
        .into_inner();
    ensure!(!added.secret.is_empty() && added.audit_seq > 0);
    ensure!(
        !format!("{added:?}").contains(&added.secret),
        "Debug hides the value"
    );
    ensure!(env.authenticates(&done.client_id, &added.secret).await?);
    let added_key = added.info.as_ref().context("info")?.key_id.clone();

    // Durations past the calendar's end are refused with their field, not a server panic.
    let huge = Some(prost_types::Duration {
        seconds: 1_000_000_000_000,
        nanos: 0,
    });
    let far = pb::AddServiceSecretRequest {
        registration: reg.clone(),
        service_id: svc.clone(),
        valid_for: huge,
        seal_to: None,
    };
    c.add_service_secret(far)
        .refused(Code::InvalidArgument, &["valid_for", "100 years"])
        .await?;
    let long = pb::RotateSecretRequest {
        registration: reg.clone(),
        service_id: svc.clone(),
        overlap: huge,
        seal_to: None,
    };
    c.rotate_secret(long)
        .refused(Code::InvalidArgument, &["overlap", "365 days"])
        .await?;

    // Expiry report: the 20-day secret is inside 30 days.
    let exp = c
        .list_expiring(pb::ListExpiringRequest { horizon_days: 0 })
        .await?
        .into_inner();
    ensure!(exp.horizon_days == 30, "{exp:?}");
    ensure!(
        exp.secrets.len() == 1
            && exp.secrets[0].secret.as_ref().map(|s| s.key_id.as_str()) == Some(&added_key),
        "{exp:?}"
    );

    // The original secret is not current any more: revoke it.
    let revoked = c
        .revoke_secret(pb::RevokeSecretRequest {
            registration: reg.clone(),
            key_id: done.key_id.clone(),
        })
        .await?
        .into_inner();
    ensure!(revoked.audit_seq > 0);
    ensure!(!env.authenticates(&done.client_id, &done.secret).await?);
    // The current one is refused.
    let current = pb::RevokeSecretRequest {
        registration: reg.clone(),
        key_id: added_key.clone(),
    };
    c.revoke_secret(current)
        .refused(Code::FailedPrecondition, &[])
        .await?;

    // Rotate: stages streamed, the new value once, the old removed.
    let (stages, rotated) = rotation(rotate(&mut c, &reg, &svc, 0).await?).await?;
    let stages: Vec<String> = stages.iter().map(|(s, d)| format!("{s}:{d}")).collect();
    ensure!(stages == ROTATION_STAGES, "{stages:?}");
    let rotated = rotated.context("the add event carries the new secret")?;
    ensure!(env.authenticates(&done.client_id, &rotated).await?);
    ensure!(!env.authenticates(&done.client_id, &added.secret).await?);
    let list = secrets(&mut c, &reg).await?;
    ensure!(list.len() == 1 && list[0].key_id != added_key, "{list:?}");

    // Grants as Entra has them; removing the profile's role needs the override.
    let g = c
        .list_grants(pb::ListGrantsRequest {
            registration: reg.clone(),
        })
        .await?
        .into_inner();
    ensure!(g.roles == ["Teams Administrator"], "{g:?}");
    ensure!(g.permissions.iter().any(|p| p == "User.Read.All"), "{g:?}");
    let remove = pb::UpdateRolesRequest {
        registration: reg.clone(),
        remove: vec!["Teams Administrator".into()],
        ..Default::default()
    };
    c.update_roles(remove.clone())
        .refused(Code::FailedPrecondition, &[])
        .await?;
    let g = c
        .update_roles(pb::UpdateRolesRequest {
            override_required_roles: true,
            ..remove
        })
        .await?
        .into_inner();
    ensure!(g.roles.is_empty() && g.audit_seqs.len() == 1, "{g:?}");
    // The day-two sign-in was for that change: once it succeeded, the session ended by itself
    // (the temporary app it re-created removed, audited as the operator's), and the next admin
    // change needs a new sign-in.
    ensure!(
        sps_where(&env.sim.snapshot(), "display_name", TOKEN_APP).is_empty(),
        "the temporary app outlived the change"
    );
    let removal = env
        .server
        .entries()?
        .into_iter()
        .rfind(|e| e["action"] == "temporary_app.delete" && e["phase"] == "succeeded")
        .context("no audited removal")?;
    ensure!(removal["actor"] == OPERATOR_IDENTITY, "{removal}");
    needs_a_sign_in(&mut c, &reg).await?;

    // A tenant policy forbidding secrets: FAILED_PRECONDITION, nothing changed.
    env.sim.set_faults(Faults {
        forbid_passwords: true,
        device_code_interval_s: Some(1),
        ..Faults::default()
    });
    let add = pb::AddServiceSecretRequest {
        registration: reg.clone(),
        service_id: svc.clone(),
        valid_for: None,
        seal_to: None,
    };
    c.add_service_secret(add)
        .refused(Code::FailedPrecondition, &["policy"])
        .await?;
    ensure!(env.authenticates(&done.client_id, &rotated).await?);

    // Bad requests name their field; unknown registrations are NOT_FOUND.
    let attach = pb::AttachRegistrationRequest {
        registration: reg.clone(),
        profile: "direct-routing".into(),
        ..Default::default()
    };
    let e = c
        .attach_registration(attach)
        .refused(Code::InvalidArgument, &[])
        .await?;
    ensure!(bad_fields(&e) == ["client_secret"], "{e:?}");
    // Attaching what is managed already: ALREADY_EXISTS.
    let again = pb::AttachRegistrationRequest {
        registration: reg.clone(),
        profile: "direct-routing".into(),
        client_secret: rotated.clone(),
        service_ids: vec![svc.clone()],
        ..Default::default()
    };
    c.attach_registration(again.clone())
        .refused(Code::AlreadyExists, &["already managed"])
        .await?;
    // The same registration named by the tenant's domain is the same one (it made a second
    // record, kept under the domain).
    let mut by_domain = again;
    if let Some(r) = by_domain.registration.as_mut() {
        r.tenant_id = env.info.tenant_domain.to_ascii_uppercase();
    }
    c.attach_registration(by_domain)
        .refused(Code::AlreadyExists, &["already managed"])
        .await?;
    let unknown = pb::ListSecretsRequest {
        registration: env.registration("00000000-0000-0000-0000-00000000abcd"),
    };
    c.list_secrets(unknown).refused(Code::NotFound, &[]).await?;

    // Another day-two sign-in re-creates the temporary app; ending the session by hand
    // removes it (audited) and later admin changes need a new sign-in.
    env.day_two_sign_in().await?;
    let snap = env.sim.snapshot();
    ensure!(!sps_where(&snap, "display_name", TOKEN_APP).is_empty());
    let e = c
        .end_admin_session(pb::EndAdminSessionRequest::default())
        .refusal()
        .await?;
    ensure!(bad_fields(&e) == ["tenant_id"], "{e:?}");
    let ended = c
        .end_admin_session(pb::EndAdminSessionRequest {
            tenant_id: tenant.clone(),
        })
        .await?
        .into_inner();
    ensure!(
        ended.session_was_usable
            && ended.temporary_apps_removed == 1
            && ended.audit_seqs.len() == 1,
        "{ended:?}"
    );
    let snap = env.sim.snapshot();
    ensure!(sps_where(&snap, "display_name", TOKEN_APP).is_empty());
    needs_a_sign_in(&mut c, &reg).await?;

    // No secret value ever reached the audit log.
    let log = serde_json::to_string(&env.server.entries()?)?;
    for v in [&done.secret, &added.secret, &rotated] {
        ensure!(
            !log.contains(v.as_str()),
            "a secret value is in the audit log"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_in_its_overlap_finishes_after_a_server_restart() -> Result<()> {
    let env = SimServer::start().await?;
    let done = onboarded_then_signed_in(&env, "Sbc-Restart").await?;
    let reg = env.registration(&done.client_id);
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    // 6 s of overlap: room for the hand-over's durable writes and the check below (the
    // overlap's clock starts before them).
    let mut stream = rotate(&mut c, &reg, "dr-1", 6).await?;
    let mut new_secret = None;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await??
            .context("stream ended before hand-over")?;
        if let Some(n) = ev.new_secret {
            new_secret = Some(n.secret);
        }
        if ev.stage == "hand_over" && ev.done {
            break;
        }
    }
    let new_secret = new_secret.context("new secret")?;
    // In the overlap both work; then the server restarts (the open stream ends, UNAVAILABLE).
    ensure!(env.authenticates(&done.client_id, &done.secret).await?);
    let env = env.restart().await?;
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message()).await?;
    ensure!(
        matches!(&ended, Err(s) if s.code() == Code::Unavailable) || matches!(ended, Ok(None)),
        "{ended:?}"
    );
    // The restarted server resumes the rotation and removes the old secret after the overlap.
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let list = secrets_until(&mut c, &reg, Duration::from_secs(30), "not resumed", |l| {
        l.len() == 1
    })
    .await?;
    ensure!(list[0].key_id != done.key_id && list[0].current, "{list:?}");
    ensure!(!env.authenticates(&done.client_id, &done.secret).await?);
    ensure!(env.authenticates(&done.client_id, &new_secret).await?);
    ensure!(env.sim.calls("POST removePassword") == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_rotating_profile_rotates_without_a_new_sign_in() -> Result<()> {
    use pb::provision_event::Event as PE;

    let (env, onboarding) =
        SimServer::with_onboarding("direct-routing-self-rotating", "Sbc-Self").await?;
    let events = onboarding.events;
    ensure!(
        events
            .iter()
            .any(|e| matches!(&e.event, Some(PE::Done(d)) if d.step == "app_owner")),
        "no app_owner step: {events:#?}"
    );
    let done = completed(&events)?;
    // Entra now has the app's service principal among the app's owners.
    let snap = env.sim.snapshot();
    let sp = sps_where(&snap, "app_id", &done.client_id)
        .first()
        .and_then(|s| s["id"].as_str())
        .context("service principal")?
        .to_owned();
    let owners = apps_named(&snap, "Sbc-Self")
        .first()
        .map(|a| a["owners"].clone())
        .context("app")?;
    ensure!(
        owners
            .as_array()
            .is_some_and(|o| o.iter().any(|x| x == sp.as_str())),
        "owners {owners}"
    );

    // No second sign-in: the onboarding's own session died with the temporary app, so this
    // rotation can only authenticate as the app itself.
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let reg = env.registration(&done.client_id);
    let (stages, new_secret) = rotation(rotate(&mut c, &reg, "dr-1", 1).await?).await?;
    ensure!(
        stages.last() == Some(&("remove_old".to_owned(), true)),
        "{stages:?}"
    );
    let new_secret = new_secret.context("no new secret on the stream")?;
    ensure!(env.authenticates(&done.client_id, &new_secret).await?);
    ensure!(
        !env.authenticates(&done.client_id, &done.secret).await?,
        "the old secret still works after the overlap"
    );
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_secrets_are_rotated_automatically() -> Result<()> {
    // The onboarding's secret lives 30 days (`secret_lifetime_days` then); the operator then
    // turns automatic rotation on with an 800-day horizon and 1,000-day secrets, so one
    // rotation settles it. Self-rotating, so no admin is needed.
    let env = SimServer::start_with(|b| {
        Ok(b.raw(
            "credentials",
            "secret_lifetime_days",
            toml::Value::Integer(30),
        ))
    })
    .await?;
    let done = env
        .onboarded("direct-routing-self-rotating", "Sbc-Auto")
        .await?
        .done;
    let env = env
        .restart_with(|c| {
            let r = &mut c.credentials;
            r.auto_rotate = true;
            r.check_interval_secs = 1;
            r.expiry_horizon_days = 800;
            r.auto_rotate_overlap_secs = 1;
            r.secret_lifetime_days = 1000;
        })
        .await?;
    let reg = env.registration(&done.client_id);
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let limit = Duration::from_secs(60);
    let settled = secrets_until(&mut c, &reg, limit, "not rotated automatically", |now| {
        now.len() == 1 && now[0].current && now[0].key_id != done.key_id
    })
    .await?[0]
        .clone();
    ensure!(settled.days_until_expiry > 800, "{settled:?}");
    // Entra holds only the new secret; nothing is expiring any more.
    let snap = env.sim.snapshot();
    let app = apps_named(&snap, "Sbc-Auto");
    ensure!(
        app.first()
            .and_then(|a| a["passwords"].as_array())
            .map(Vec::len)
            == Some(1)
    );
    let expiring = c
        .list_expiring(pb::ListExpiringRequest { horizon_days: 0 })
        .await?
        .into_inner();
    ensure!(expiring.secrets.is_empty(), "{expiring:?}");
    // The rotation is on the record as the automatic rotator's.
    let entries = env.server.entries()?;
    ensure!(
        entries
            .iter()
            .any(|e| e["action"] == "password_credential.create"
                && e["phase"] == "succeeded"
                && e["actor"] == "system:auto-rotate"),
        "no automatic rotation in the audit log"
    );
    env.server.stop().await
}

/// The sign-in service down while a registration is attached: UNAVAILABLE (an upstream outage,
/// to retry), not FAILED_PRECONDITION "does not authenticate"; a secret Microsoft refuses is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_during_a_sign_in_outage_is_unavailable_and_a_refused_secret_a_precondition()
-> Result<()> {
    // One server made the registration; a second one, which never saw it, has it attached.
    let env = SimServer::start().await?;
    let done = env.onboarded("direct-routing", "Sbc-Outage").await?.done;
    let other = env.another_server().await?;
    let mut c = other.credentials(Some(OPERATOR)).await?;
    let attach = |secret: &str| pb::AttachRegistrationRequest {
        registration: env.registration(&done.client_id),
        profile: "direct-routing".into(),
        service_ids: vec!["dr-attached".into()],
        client_secret: secret.into(),
        ..Default::default()
    };
    env.sim.set_faults(Faults {
        sts_throttle_rate: 1.0,
        throttle_retry_after_s: 0,
        ..testkit::sim::calm()
    });
    c.attach_registration(attach(&done.secret))
        .refused(Code::Unavailable, &["throttled"])
        .await?;
    env.sim.set_faults(testkit::sim::calm());
    c.attach_registration(attach("abc8Q~not-the-secret"))
        .refused(Code::FailedPrecondition, &["does not authenticate"])
        .await?;
    c.attach_registration(attach(&done.secret)).await?;
    other.stop().await?;
    env.stop().await
}
