//! The wizard's "Use App Registration" through the credential manager: validated, then the
//! invitation's gate, then stored with an attachment id the platform claims by; a registration
//! already managed gains the invitation's service with the secret the customer entered.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use credentials::{Attached, Credentials, CredentialsError, Gated, RegistrationRef, Source};
use secrecy::{ExposeSecret, SecretString};
use testkit::creds::{LEAST_PRIVILEGE, attach_req, provisioned, store_session};
use testkit::engine::EngineEnv;
use testkit::portal::DIRECT_ROUTING;
use testkit::sim::calm;

/// `req`-style attach of `client` for `service` with `secret`, through a gate that passes and
/// remembers the attachment id it was given.
async fn attach_passing(
    creds: &Credentials,
    tenant: &str,
    client: &str,
    secret: &SecretString,
    service: &str,
    profile: &str,
) -> Result<(Attached, String)> {
    let mut req = attach_req(tenant, client, secret);
    req.service_ids = vec![service.to_owned()];
    req.profile = profile.to_owned();
    let seen = Arc::new(Mutex::new(String::new()));
    let gate_saw = seen.clone();
    let gate = move |id: String| async move {
        *gate_saw.lock().map_err(|_| "poisoned")? = id;
        Ok::<(), &'static str>(())
    };
    match creds.attach_for_invitation(req, gate).await? {
        Gated::Attached(a) => {
            let id = seen
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .clone();
            Ok((*a, id))
        }
        Gated::Refused(e) => bail!("refused: {e}"),
    }
}

/// The phases and errors of the `registration.attach` entries of registration `id`.
fn attach_entries(env: &EngineEnv, id: &str) -> Result<Vec<(String, String)>> {
    Ok(env
        .audit_entries(id)?
        .iter()
        .filter(|e| e["action"] == "registration.attach")
        .map(|e| {
            (
                e["phase"].as_str().unwrap_or_default().to_owned(),
                e["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_gate_stores_nothing_and_a_passed_one_records_the_attachment() -> Result<()> {
    let (env, creds) = testkit::creds::start(calm()).await?;
    let tenant = env.info.tenant_id.clone();
    store_session(&env, &creds, "globaladmin").await?;
    let app = env.hand_made("Wizard1", &DIRECT_ROUTING).await?;
    let r = RegistrationRef::new(&tenant, &app.client_id);

    // The invitation could not be redeemed: validated, but nothing stored; audited as failed.
    let seen = Arc::new(Mutex::new(String::new()));
    let gate_saw = seen.clone();
    let refuse = move |id: String| async move {
        *gate_saw.lock().map_err(|_| "poisoned")? = id;
        Err::<(), &'static str>("the invitation expired")
    };
    let req = attach_req(&tenant, &app.client_id, &app.secret);
    match creds.attach_for_invitation(req, refuse).await? {
        Gated::Refused(e) => ensure!(e == "the invitation expired"),
        Gated::Attached(a) => bail!("attached through a refusing gate: {a:?}"),
    }
    ensure!(matches!(
        creds.registration(&r),
        Err(CredentialsError::NotFound(_))
    ));
    let refused_id = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    ensure!(refused_id.starts_with(credentials::ATTACHED_ID_PREFIX));
    ensure!(creds.attachment(&refused_id)?.is_none());
    let entries = attach_entries(&env, &refused_id)?;
    ensure!(
        entries.len() == 2
            && entries[0].0 == "intent"
            && entries[1]
                == (
                    "failed".into(),
                    "not attached: the invitation expired".into()
                ),
        "{entries:?}"
    );

    // More than one service is the operator's attach, not an invitation's.
    let mut two = attach_req(&tenant, &app.client_id, &app.secret);
    two.service_ids.push("svc-other".into());
    let e = creds
        .attach_for_invitation(two, |_| async { Ok::<(), &'static str>(()) })
        .await
        .err();
    ensure!(
        matches!(
            e,
            Some(CredentialsError::InvalidArgument {
                field: "service_ids",
                ..
            })
        ),
        "{e:?}"
    );

    // Passed: the gate saw the id the registration is stored under, and the attachment names
    // the service whose current secret is the one entered.
    let (a, gate_id) = attach_passing(
        &creds,
        &tenant,
        &app.client_id,
        &app.secret,
        "svc-hand",
        "direct-routing",
    )
    .await?;
    ensure!(a.attachment_id == gate_id && a.view.id == gate_id, "{a:?}");
    ensure!(a.view.source == Source::Attached);
    let found = creds.attachment(&gate_id)?.context("the attachment")?;
    ensure!(found.registration == r && found.service_id == "svc-hand");
    let held = creds.current_secret(&r, "svc-hand")?.0;
    ensure!(found.secret_key == Some(credentials::Registration::secret_key(&held)));
    let (_, value) = creds.current_secret(&r, "svc-hand")?;
    ensure!(value.expose_secret() == app.secret.expose_secret());
    let entries = attach_entries(&env, &gate_id)?;
    ensure!(
        entries.iter().map(|e| e.0.as_str()).collect::<Vec<_>>() == ["intent", "succeeded"],
        "{entries:?}"
    );
    let all = serde_json::to_string(&env.audit_entries(&gate_id)?)?;
    ensure!(all.contains(&format!("\"{gate_id}\"")) && all.contains("attachmentId"));
    ensure!(!all.contains(app.secret.expose_secret()));

    // A second service of the customer joins with a secret of its own; a third attach for
    // that service is refused, and the first service's secret is untouched.
    let (_, second) = env.secret_by_hand(&app.client_id).await?;
    let attach_second = || {
        attach_passing(
            &creds,
            &tenant,
            &app.client_id,
            &second,
            "svc-two",
            "direct-routing",
        )
    };
    let (b, b_id) = attach_second().await?;
    ensure!(b_id != gate_id && b.attachment_id == b_id && b.view.id == gate_id);
    let found = creds.attachment(&b_id)?.context("the second attachment")?;
    ensure!(found.registration == r && found.service_id == "svc-two");
    let (two_secret, value) = creds.current_secret(&r, "svc-two")?;
    ensure!(value.expose_secret() == second.expose_secret());
    ensure!(
        !two_secret.key_id.is_empty(),
        "the key id read with the session"
    );
    let (_, first) = creds.current_secret(&r, "svc-hand")?;
    ensure!(first.expose_secret() == app.secret.expose_secret());
    let again = attach_second()
        .await
        .err()
        .context("a service that has a secret cannot attach again")?;
    let e = again.downcast::<CredentialsError>()?;
    ensure!(
        matches!(e, CredentialsError::AlreadyExists(ref m) if m.contains("svc-two")),
        "{e:?}"
    );
    // The operator's attach still refuses a managed registration.
    let op = creds
        .attach(attach_req(&tenant, &app.client_id, &second))
        .await
        .err();
    ensure!(
        matches!(op, Some(CredentialsError::AlreadyExists(_))),
        "{op:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioned_registration_gains_a_service_by_its_own_secret() -> Result<()> {
    let (env, creds) = testkit::creds::start(calm()).await?;
    let tenant = env.info.tenant_id.clone();
    let r = provisioned(&env, &creds, "onb-join", "JoinMe").await?;
    let (_, secret) = env.secret_by_hand(&r.client_id).await?;

    // A wrong secret for the managed registration does not authenticate: nothing joins.
    let wrong = SecretString::from("abc8Q~wrong".to_owned());
    let e = attach_passing(
        &creds,
        &tenant,
        &r.client_id,
        &wrong,
        "svc-new",
        LEAST_PRIVILEGE,
    )
    .await
    .err()
    .context("a wrong secret joins nothing")?
    .downcast::<CredentialsError>()?;
    ensure!(
        matches!(&e, CredentialsError::FailedPrecondition(m) if m.contains("does not authenticate")),
        "{e:?}"
    );
    ensure!(creds.current_secret(&r, "svc-new").is_err());
    // Its refusal is logged, without any hint of the value entered (it never authenticated).
    let trail = serde_json::to_string(&env.audit_entries("onb-join")?)?;
    ensure!(trail.contains("registration.attach"), "{trail}");
    ensure!(!trail.contains("\"abc\""), "{trail}");

    let (a, id) = attach_passing(
        &creds,
        &tenant,
        &r.client_id,
        &secret,
        "svc-new",
        LEAST_PRIVILEGE,
    )
    .await?;
    ensure!(a.view.source == Source::Provisioned && a.view.id == "onb-join");
    ensure!(id != "onb-join" && id.starts_with(credentials::ATTACHED_ID_PREFIX));
    let (joined, value) = creds.current_secret(&r, "svc-new")?;
    ensure!(value.expose_secret() == secret.expose_secret());
    // The onboarding's own service keeps its secret.
    let (own, own_value) = creds.current_secret(&r, "svc-onb-join")?;
    ensure!(own.key_id != joined.key_id && own_value.expose_secret() != secret.expose_secret());
    // The join is in the registration's trail (its id is the onboarding's), naming the
    // attachment.
    let trail = serde_json::to_string(&env.audit_entries("onb-join")?)?;
    ensure!(
        trail.contains(&id),
        "the attachment id in the onboarding's trail"
    );
    Ok(())
}
