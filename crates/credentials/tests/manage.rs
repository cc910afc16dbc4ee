//! Attaching hand-made registrations, grants and roles, and self-rotation with
//! `Application.ReadWrite.OwnedBy`, against the emulator.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use credentials::{AuthMode, Credentials, CredentialsError, RegistrationRef, UpdateRequest};
use entra_client::OpContext;
use secrecy::{ExposeSecret, SecretString};
use testkit::creds::{PARTIAL_MISSING, attach_req, missing_grants, provisioned, store_session};
use testkit::engine::EngineEnv;
use testkit::portal::{DIRECT_ROUTING, Grants, HandMade, OWNED_BY};
use testkit::sim::{GRAPH_DEFAULT, SIGN_IN_SCOPES, calm};

/// The operator of attach and rotation.
const ACTOR: &str = testkit::creds::ATTACH_ACTOR;
/// The day-two operator of grant changes (attach and rotation used [`ACTOR`]).
const DAY2: &str = "spiffe://platform.test/day2";
const TEAMS_API: &str = "Skype and Teams Tenant Admin API/application_access";

/// The emulator, a manager over it, the tenant's id and a hand-made registration `name`
/// holding `grants` (made in the portal, as a customer would).
async fn start_with(
    name: &str,
    grants: &Grants<'_>,
) -> Result<(EngineEnv, Credentials, String, HandMade)> {
    let (env, creds) = testkit::creds::start(calm()).await?;
    let tenant = env.info.tenant_id.clone();
    let app = env.hand_made(name, grants).await?;
    Ok((env, creds, tenant, app))
}

/// A day-two change by [`DAY2`] adding `names`.
fn adding(names: &[&str]) -> UpdateRequest {
    UpdateRequest {
        add: names.iter().map(|n| n.to_string()).collect(),
        actor: DAY2.into(),
        ..UpdateRequest::default()
    }
}

/// A day-two change by [`DAY2`] removing `names`.
fn removing(names: &[&str]) -> UpdateRequest {
    UpdateRequest {
        remove: names.iter().map(|n| n.to_string()).collect(),
        actor: DAY2.into(),
        ..UpdateRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_validates_against_the_profile_and_lists_what_is_missing() -> Result<()> {
    // Missing: one Graph permission, the Teams API permission and the directory role.
    let partial = Grants {
        graph: &["User.Read.All"],
        teams_api: false,
        role_template_ids: &[],
    };
    let (env, creds, tenant, app) = start_with("Partial", &partial).await?;
    let HandMade {
        client_id: client,
        secret,
        ..
    } = app;
    let missing = missing_grants(creds.attach(attach_req(&tenant, &client, &secret)).await)?;
    ensure!(missing == PARTIAL_MISSING, "{missing:#?}");
    ensure!(matches!(
        creds.registration(&RegistrationRef::new(&tenant, &client)),
        Err(CredentialsError::NotFound(_))
    ));

    // A wrong secret does not authenticate (and a secret made minutes ago may not be known to
    // the sign-in service yet, the message says).
    let e = creds
        .attach(attach_req(
            &tenant,
            &client,
            &SecretString::from("abc8Q~wrong".to_owned()),
        ))
        .await
        .err();
    ensure!(
        matches!(&e, Some(CredentialsError::FailedPrecondition(m))
            if m.contains("does not authenticate") && m.contains("try again in a minute")),
        "{e:?}"
    );

    // A tenant Microsoft does not know is the request's tenant id; a client id it does not find
    // in the tenant is NOT_FOUND, with the hint that a new one may not be known yet.
    let nowhere = "0a0b0c0d-0000-4000-8000-00000000abcd";
    let e = creds
        .attach(attach_req(nowhere, &client, &secret))
        .await
        .err();
    ensure!(
        matches!(&e, Some(CredentialsError::InvalidArgument { field: "registration.tenant_id", reason })
            if reason.contains("AADSTS90002") && reason.contains(nowhere)),
        "{e:?}"
    );
    let e = creds
        .attach(attach_req(&tenant, nowhere, &secret))
        .await
        .err();
    ensure!(
        matches!(&e, Some(CredentialsError::NotFound(m))
            if m.contains("AADSTS700016") && m.contains("try again in a minute")),
        "{e:?}"
    );

    // `organizations` / `common` name no tenant: Entra refuses client credentials there.
    for alias in ["organizations", "common"] {
        let e = creds
            .attach(attach_req(alias, &client, &secret))
            .await
            .err();
        ensure!(
            matches!(
                &e,
                Some(CredentialsError::InvalidArgument {
                    field: "registration.tenant_id",
                    ..
                })
            ),
            "{e:?}"
        );
    }

    // Complete: attached, sealed, audited, then managed like a provisioned one.
    store_session(&env, &creds, "globaladmin").await?;
    let HandMade {
        client_id: client,
        object_id,
        sp_id,
        secret,
    } = env.hand_made("Complete", &DIRECT_ROUTING).await?;
    let view = creds.attach(attach_req(&tenant, &client, &secret)).await?;
    ensure!(view.sp_id == sp_id && view.app_object_id.as_deref() == Some(object_id.as_str()));
    ensure!(view.display_name == "Complete" && view.auth_mode == AuthMode::AdminSession);
    let r = RegistrationRef::new(&tenant, &client);
    let list = creds.list_secrets(&r)?;
    ensure!(list.len() == 1 && !list[0].key_id.is_empty(), "{list:?}");
    ensure!(list[0].hint == secret.expose_secret()[..3]);
    let stored = serde_json::to_string(&creds.registration(&r)?)?;
    ensure!(
        !stored.contains(secret.expose_secret()),
        "secret stored in clear"
    );
    let entries = env.audit_entries(&view.id)?;
    ensure!(!serde_json::to_string(&entries)?.contains(secret.expose_secret()));
    let phases: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "registration.attach")
        .filter_map(|e| e["phase"].as_str())
        .collect();
    ensure!(phases == ["intent", "succeeded"], "{phases:?}");
    // The intent and its outcome pair up by correlation id, as docs/audit-entries.md says.
    let pairs = testkit::audit::change_pairs(&entries, &view.id)?;
    ensure!(pairs.get("registration.attach") == Some(&1), "{pairs:?}");
    let again = creds
        .attach(attach_req(&tenant, &client, &secret))
        .await
        .err();
    ensure!(
        matches!(again, Some(CredentialsError::AlreadyExists(_))),
        "{again:?}"
    );

    // Managed from now on: rotate it.
    creds
        .rotate(&r, "svc-hand", Duration::ZERO, ACTOR, None)
        .await?;
    ensure!(!env.authenticates(&client, &secret).await);
    let (_, v) = creds.current_secret(&r, "svc-hand")?;
    ensure!(env.authenticates(&client, &v).await);
    ensure!(env.passwords(&client).len() == 1);
    Ok(())
}

/// `g` is what the direct-routing profile grants, read from the app's own token (whose `wids`
/// also carry Entra's implicit app-only value, shown by name).
fn ensure_profile_grants(g: &credentials::Grants) -> Result<()> {
    ensure!(
        g.permissions == ["Organization.Read.All", TEAMS_API, "User.Read.All"]
            && g.roles
                == [
                    "Default service principal permissions (implicit)",
                    "Teams Administrator"
                ],
        "{g:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_permissions_change_audited_and_required_ones_need_the_override() -> Result<()> {
    let (env, creds) = testkit::creds::start(calm()).await?;
    let r = provisioned(&env, &creds, "gr", "Sbc-Grants").await?;
    // Without a session, grants are read from the app's own tokens (whose wids also carry
    // Entra's implicit app-only value, shown by name).
    let g = creds.list_grants(&r).await?;
    ensure_profile_grants(&g)?;
    // Also when the stored session no longer renews: the onboarding's own sign-in, whose
    // consent went with the temporary token app the onboarding removed.
    let onboarding_sign_in = env.sign_in("globaladmin").await?;
    let ga = env.graph_as("globaladmin").await?;
    let token_app = ga
        .find_service_principals_by_display_name("Sandbox1-sp2-token", &OpContext::new())
        .await?
        .value;
    ensure!(token_app.len() == 1, "{token_app:?}");
    for sp in token_app {
        ga.delete_service_principal(&sp.id, &OpContext::new())
            .await?;
    }
    creds
        .store_admin_session(
            &env.info.tenant_id,
            &env.upn("globaladmin"),
            &env.info.token_app_client_id,
            SIGN_IN_SCOPES,
            &onboarding_sign_in,
        )
        .await?;
    let e = creds
        .update_roles(&r, &adding(&["Global Reader"]))
        .await
        .err();
    ensure!(
        matches!(&e, Some(CredentialsError::NoAdminSession { reason, .. }) if reason.contains("65001")),
        "{e:?}"
    );
    let g = creds.list_grants(&r).await?;
    // Read from the app's own token: its wids also carry Entra's implicit app-only value,
    // shown by name (not a directory role assignment).
    ensure_profile_grants(&g)?;
    let e = creds
        .update_roles(&r, &adding(&["Global Reader"]))
        .await
        .err();
    ensure!(
        matches!(e, Some(CredentialsError::NoAdminSession { .. })),
        "{e:?}"
    );
    store_session(&env, &creds, "globaladmin").await?;

    let g = creds.update_roles(&r, &adding(&["Global Reader"])).await?;
    ensure!(g.roles == ["Global Reader", "Teams Administrator"], "{g:?}");
    ensure!(g.audit_seqs.len() == 1);
    let remove_required = removing(&["Teams Administrator"]);
    let e = creds.update_roles(&r, &remove_required).await.err();
    ensure!(
        matches!(&e, Some(CredentialsError::RequiredByProfile { what, .. }) if what == &["Teams Administrator"]),
        "{e:?}"
    );
    ensure!(creds.list_grants(&r).await?.roles.len() == 2);
    let g = creds
        .update_roles(
            &r,
            &UpdateRequest {
                override_required: true,
                ..remove_required
            },
        )
        .await?;
    ensure!(g.roles == ["Global Reader"], "{g:?}");

    let g = creds
        .update_permissions(&r, &adding(&["Group.Read.All"]))
        .await?;
    ensure!(
        g.permissions.contains(&"Group.Read.All".to_owned()),
        "{g:?}"
    );
    let e = creds
        .update_permissions(&r, &removing(&["User.Read.All", "Group.Read.All"]))
        .await
        .err();
    ensure!(
        matches!(&e, Some(CredentialsError::RequiredByProfile { what, .. }) if what == &["User.Read.All"]),
        "{e:?}"
    );
    let g = creds
        .update_permissions(&r, &removing(&["Group.Read.All"]))
        .await?;
    ensure!(
        g.permissions == ["Organization.Read.All", TEAMS_API, "User.Read.All"],
        "{g:?}"
    );
    let e = creds
        .update_roles(&r, &adding(&["Chief Wizard"]))
        .await
        .err();
    ensure!(
        matches!(
            e,
            Some(CredentialsError::InvalidArgument { field: "add", .. })
        ),
        "{e:?}"
    );

    // Each change: intent then outcome, with the override recorded where it was used.
    let entries = env.audit_entries(&creds.registration(&r)?.id)?;
    let day2: Vec<_> = entries.iter().filter(|e| e["actor"] == DAY2).collect();
    let pairs: Vec<(String, String)> = day2
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_owned(),
                e["phase"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        "directory_role_assignment.create",
        "directory_role_assignment.delete",
        "app_role_assignment.create",
        "app_role_assignment.delete",
    ]
    .iter()
    .flat_map(|a| {
        [
            (a.to_string(), "intent".to_string()),
            (a.to_string(), "succeeded".to_string()),
        ]
    })
    .collect();
    ensure!(pairs == expected, "{pairs:#?}");
    let overridden = day2
        .iter()
        .find(|e| e["action"] == "directory_role_assignment.delete" && e["phase"] == "succeeded")
        .context("role delete")?;
    ensure!(
        overridden["changes"]
            .to_string()
            .contains("overrideRequired"),
        "{overridden}"
    );
    Ok(())
}

/// Graph's assignment lists may go on showing what was just removed ("replication delays for
/// app role assignments that were recently granted or removed"): removing it again meets a
/// 404 on the DELETE, which means it is gone already, not a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_the_lists_still_show_is_gone_already() -> Result<()> {
    let (env, creds, r) = testkit::creds::start_ready("lag").await?;
    creds.update_roles(&r, &adding(&["Global Reader"])).await?;
    creds
        .update_permissions(&r, &adding(&["Group.Read.All"]))
        .await?;
    let mut faults = calm();
    faults.assignment_list_lag_ms = 60_000;
    env.sim.set_faults(faults);
    let g = creds
        .update_roles(&r, &removing(&["Global Reader"]))
        .await?;
    ensure!(g.audit_seqs.len() == 1, "{g:?}");
    let g = creds
        .update_permissions(&r, &removing(&["Group.Read.All"]))
        .await?;
    ensure!(g.audit_seqs.len() == 1, "{g:?}");
    // The lists still show both: removing them again finds each gone (a 404), and succeeds.
    let g = creds
        .update_roles(&r, &removing(&["Global Reader"]))
        .await?;
    ensure!(g.audit_seqs.is_empty(), "{g:?}");
    let g = creds
        .update_permissions(&r, &removing(&["Group.Read.All"]))
        .await?;
    ensure!(g.audit_seqs.is_empty(), "{g:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_owns_itself_with_owned_by_rotates_without_an_admin() -> Result<()> {
    let owned_by = OWNED_BY;
    let (env, creds, tenant, app) = start_with("SelfRot", &owned_by).await?;
    let HandMade {
        client_id: client,
        object_id,
        sp_id,
        secret,
    } = app;
    let admin = env.graph_as("globaladmin").await?;
    // OwnedBy alone is not enough until the app's SP owns the registration.
    let app_token = env
        .client
        .sts()
        .client_credentials(&tenant, &client, &secret, GRAPH_DEFAULT, &OpContext::new())
        .await?;
    let own = env.client.graph(app_token.access_token);
    let e = own
        .add_password(&object_id, Some("x"), None, &OpContext::new())
        .await
        .err()
        .context("not an owner yet")?;
    ensure!(e.is_authorization_denied(), "{e}");
    admin
        .add_application_owner(&object_id, &sp_id, &OpContext::new())
        .await?;
    let owners = admin
        .list_application_owners(&object_id, &OpContext::new())
        .await?
        .value;
    ensure!(owners.iter().any(|o| o.id == sp_id), "{owners:?}");
    // Per the reference: OwnedBy may not list /applications.
    let e = own
        .find_applications_by_display_name("SelfRot", &OpContext::new())
        .await
        .err()
        .context("OwnedBy must not list applications")?;
    ensure!(e.is_authorization_denied(), "{e}");

    // No admin session stored at all.
    ensure!(creds.admin_session(&tenant)?.is_none());
    let view = creds.attach(attach_req(&tenant, &client, &secret)).await?;
    ensure!(view.auth_mode == AuthMode::SelfRotation, "{view:?}");
    let r = RegistrationRef::new(&tenant, &client);
    ensure!(!creds.list_secrets(&r)?[0].key_id.is_empty());
    creds
        .rotate(&r, "svc-hand", Duration::ZERO, ACTOR, None)
        .await?;
    let (_, v) = creds.current_secret(&r, "svc-hand")?;
    ensure!(env.authenticates(&client, &v).await);
    ensure!(!env.authenticates(&client, &secret).await);
    ensure!(env.passwords(&client).len() == 1);
    ensure!(env.sim.calls("POST removePassword") == 1);
    // And again, now authenticating with the rotated secret.
    creds
        .rotate(&r, "svc-hand", Duration::ZERO, ACTOR, None)
        .await?;
    ensure!(!env.authenticates(&client, &v).await);
    ensure!(env.passwords(&client).len() == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_secret_whose_key_id_was_unreadable_is_found_by_hint_at_rotation() -> Result<()>
{
    let (env, creds, tenant, app) = start_with("NoKeyId", &DIRECT_ROUTING).await?;
    let HandMade {
        client_id: client,
        secret,
        ..
    } = app;
    // No session and no OwnedBy: the app cannot read its own registration, so the key id of the
    // secret it was given stays unknown.
    let view = creds.attach(attach_req(&tenant, &client, &secret)).await?;
    ensure!(view.app_object_id.is_none() && view.auth_mode == AuthMode::AdminSession);
    let r = RegistrationRef::new(&tenant, &client);
    let list = creds.list_secrets(&r)?;
    ensure!(list.len() == 1 && list[0].key_id.is_empty(), "{list:?}");
    let e = creds
        .rotate(&r, "svc-hand", Duration::ZERO, ACTOR, None)
        .await
        .err();
    ensure!(
        matches!(e, Some(CredentialsError::NoAdminSession { .. })),
        "{e:?}"
    );
    ensure!(
        creds.pending_rotations()?.is_empty(),
        "nothing is started without auth"
    );
    store_session(&env, &creds, "globaladmin").await?;
    creds
        .rotate(&r, "svc-hand", Duration::ZERO, ACTOR, None)
        .await?;
    ensure!(
        !env.authenticates(&client, &secret).await,
        "old secret still works"
    );
    ensure!(env.passwords(&client).len() == 1);
    let list = creds.list_secrets(&r)?;
    ensure!(list.len() == 1 && !list[0].key_id.is_empty(), "{list:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_shared_by_two_services_is_removed_only_when_neither_uses_it() -> Result<()> {
    let (env, creds, tenant, app) = start_with("Shared", &DIRECT_ROUTING).await?;
    store_session(&env, &creds, "globaladmin").await?;
    let HandMade {
        client_id: client,
        secret,
        ..
    } = app;
    let mut req = attach_req(&tenant, &client, &secret);
    req.service_ids = vec!["svc-a".into(), "svc-b".into()];
    creds.attach(req).await?;
    let r = RegistrationRef::new(&tenant, &client);
    creds
        .rotate(&r, "svc-a", Duration::ZERO, ACTOR, None)
        .await?;
    // svc-b still uses the shared secret: kept, in Entra and here.
    ensure!(env.authenticates(&client, &secret).await);
    ensure!(env.passwords(&client).len() == 2);
    ensure!(env.sim.calls("POST removePassword") == 0);
    let (b, _) = creds.current_secret(&r, "svc-b")?;
    ensure!(b.hint == secret.expose_secret()[..3]);
    creds
        .rotate(&r, "svc-b", Duration::ZERO, ACTOR, None)
        .await?;
    ensure!(!env.authenticates(&client, &secret).await);
    ensure!(env.sim.calls("POST removePassword") == 1);
    let (a, av) = creds.current_secret(&r, "svc-a")?;
    let (b, bv) = creds.current_secret(&r, "svc-b")?;
    ensure!(a.key_id != b.key_id);
    ensure!(env.authenticates(&client, &av).await && env.authenticates(&client, &bv).await);
    ensure!(env.passwords(&client).len() == 2 && creds.list_secrets(&r)?.len() == 2);
    Ok(())
}
