//! Microsoft may issue its APIs' access tokens as opaque strings: "access tokens must be
//! treated as opaque strings … Tokens that a Microsoft API receives might not always be a JWT
//! that can be decoded. Clients should use the token response data." (Learn, access-tokens).
//! With the emulator's `opaque_access_tokens` on, every day-two flow that read a token's claims
//! still works from Graph, or says clearly what it cannot tell and how it can.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use credentials::{AttachRequest, AuthMode, Credentials, CredentialsError, RegistrationRef};
use entra_client::OpContext;
use secrecy::ExposeSecret;
use testkit::creds::{PARTIAL_MISSING, missing_grants, provisioned, store_session};
use testkit::portal::{DIRECT_ROUTING, Grants, HandMade, OWNED_BY};
use testkit::sim::calm;

const ACTOR: &str = testkit::creds::ATTACH_ACTOR;
const TEAMS_API: &str = "Skype and Teams Tenant Admin API/application_access";

fn attach_req(tenant: &str, app: &HandMade) -> AttachRequest {
    testkit::creds::attach_req(tenant, &app.client_id, &app.secret)
}

/// ListGrants of `r` refused: FAILED_PRECONDITION saying the grants cannot be determined and
/// that an admin signed in can; its message.
async fn grants_not_determinable(creds: &Credentials, r: &RegistrationRef) -> Result<String> {
    match creds.list_grants(r).await {
        Err(CredentialsError::FailedPrecondition(m))
            if m.contains("cannot be determined") && m.contains("sign an admin in") =>
        {
            Ok(m)
        }
        other => bail!("not refused as not determinable: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_attach_and_self_rotation_work_from_graph_when_tokens_are_opaque() -> Result<()> {
    let (env, creds) = testkit::creds::start(calm()).await?;
    let tenant = env.info.tenant_id.clone();
    let r = provisioned(&env, &creds, "op", "Sbc-Opaque").await?;
    let partial = env
        .hand_made(
            "Partial",
            &Grants {
                graph: &["User.Read.All"],
                teams_api: false,
                role_template_ids: &[],
            },
        )
        .await?;
    let complete = env.hand_made("Complete", &DIRECT_ROUTING).await?;
    let owned_by = OWNED_BY;
    let self_rot = env.hand_made("SelfRot", &owned_by).await?;
    env.graph_as("globaladmin")
        .await?
        .add_application_owner(&self_rot.object_id, &self_rot.sp_id, &OpContext::new())
        .await?;
    let mut faults = calm();
    faults.opaque_access_tokens = true;
    env.sim.set_faults(faults);

    // No admin session, and the registration's own token may not read its grants from Graph:
    // said so, with the way out, instead of a failure to decode the token.
    let m = grants_not_determinable(&creds, &r).await?;
    ensure!(m.contains("opaque"), "{m}");
    let e = creds
        .attach(attach_req(&tenant, &complete))
        .await
        .err()
        .context("not checkable")?;
    ensure!(
        matches!(&e, CredentialsError::FailedPrecondition(m)
            if m.contains("cannot be checked") && m.contains("opaque")),
        "{e:?}"
    );

    // With an admin session (itself signed in with an opaque token) Graph answers.
    store_session(&env, &creds, "globaladmin").await?;
    let g = creds.list_grants(&r).await?;
    ensure!(
        g.permissions == ["Organization.Read.All", TEAMS_API, "User.Read.All"]
            && g.roles == ["Teams Administrator"],
        "{g:?}"
    );
    // Attach checks what Graph says the registration holds: the same list as from claims.
    let missing = missing_grants(creds.attach(attach_req(&tenant, &partial)).await)?;
    ensure!(missing == PARTIAL_MISSING, "{missing:#?}");
    let view = creds.attach(attach_req(&tenant, &complete)).await?;
    ensure!(view.sp_id == complete.sp_id, "{view:?}");
    ensure!(view.display_name == "Complete", "{view:?}");
    ensure!(view.auth_mode == AuthMode::AdminSession, "{view:?}");

    // Self-rotation: the OwnedBy grant is read from Graph, and the app's opaque token is used
    // for its own secret change without waiting for a claim it cannot show.
    let view = creds.attach(attach_req(&tenant, &self_rot)).await?;
    ensure!(view.auth_mode == AuthMode::SelfRotation, "{view:?}");
    let sr = RegistrationRef::new(&tenant, &self_rot.client_id);
    creds
        .rotate(&sr, "svc-hand", Duration::ZERO, ACTOR, None)
        .await?;
    let (_, v) = creds.current_secret(&sr, "svc-hand")?;
    ensure!(env.authenticates(&self_rot.client_id, &v).await);
    ensure!(
        !env.authenticates(&self_rot.client_id, &self_rot.secret)
            .await
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reads_with_the_kept_admin_token_by_its_recorded_expiry() -> Result<()> {
    let mut faults = calm();
    faults.opaque_access_tokens = true;
    let (env, creds) = testkit::creds::start(faults).await?;
    let r = provisioned(&env, &creds, "tg", "Sbc-Targets").await?;
    // No admin session: the onboarding's own access token is the reader while it is valid,
    // which the token response's expires_in says (the token itself is opaque).
    let targets = credentials::targets::RegistryTargets::new(
        creds.clone(),
        std::sync::Arc::new(env.engine.clone()),
        credentials::targets::TargetSettings::default(),
    );
    use verifier::Targets;
    let input = targets
        .resolve(&verifier::Target::ClientId(r.client_id.clone()))
        .await?;
    let reader = input
        .reader_token
        .context("the onboarding's admin token still reads")?;
    ensure!(!reader.expose_secret().contains('.'), "an opaque token");
    Ok(())
}

/// An app whose tokens carry no `wids` claim (its manifest sets no `groupMembershipClaims`):
/// its directory roles are not in its token, which is not "it holds none". Attach reads them
/// from Graph (with the admin session) and takes the registration, where it used to refuse it
/// as missing the Teams Administrator role it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_reads_roles_from_graph_when_the_token_has_no_wids() -> Result<()> {
    let (env, creds) = testkit::creds::start(calm()).await?;
    let tenant = env.info.tenant_id.clone();
    let complete = env.hand_made("NoWids", &DIRECT_ROUTING).await?;
    store_session(&env, &creds, "globaladmin").await?;
    let mut faults = calm();
    faults.app_tokens_without_wids = true;
    env.sim.set_faults(faults);
    let view = creds.attach(attach_req(&tenant, &complete)).await?;
    ensure!(view.sp_id == complete.sp_id, "{view:?}");
    Ok(())
}

/// ListGrants of a registration whose tokens carry no `wids`: its Teams Administrator role is
/// not in the token, which used to be listed as "no roles". Without an admin session the
/// registration's own token may not read role assignments, so the answer says the grants
/// cannot be determined and how; with one, Graph names the role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_without_wids_are_read_from_graph_not_listed_as_no_roles() -> Result<()> {
    let (env, creds) = testkit::creds::start(calm()).await?;
    let r = provisioned(&env, &creds, "nw", "Sbc-NoWids").await?;
    let mut faults = calm();
    faults.app_tokens_without_wids = true;
    env.sim.set_faults(faults);
    let m = grants_not_determinable(&creds, &r).await?;
    ensure!(m.contains("`wids`"), "{m}");
    store_session(&env, &creds, "globaladmin").await?;
    let g = creds.list_grants(&r).await?;
    ensure!(g.roles == ["Teams Administrator"], "{g:?}");
    Ok(())
}

/// An Application Administrator's admin session may read the app's permissions but not its
/// directory role assignments (Learn, rbacapplication-list-roleassignments: Directory Readers,
/// Global Reader or Privileged Role Administrator): ListGrants falls back to the app's own
/// tokens instead of failing with Graph's 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_with_an_application_administrators_session_come_from_the_apps_tokens() -> Result<()>
{
    let (env, creds) = testkit::creds::start(calm()).await?;
    let r = provisioned(&env, &creds, "aa", "Sbc-AppAdmin").await?;
    store_session(&env, &creds, testkit::sim::users::APP_ADMIN).await?;
    let g = creds.list_grants(&r).await?;
    // From the token: its `wids`, the implicit default value named as such (manage.rs).
    ensure!(
        g.permissions == ["Organization.Read.All", TEAMS_API, "User.Read.All"]
            && g.roles.iter().any(|n| n == "Teams Administrator"),
        "{g:?}"
    );
    Ok(())
}
