//! An invitation that names the customer's tenant, over loopback gRPC against the Entra
//! emulator: the admin signs in at that tenant, not at `organizations`, so an admin who is a
//! guest (B2B collaboration user) in the customer's tenant onboards it rather than their own
//! home tenant (Microsoft, "OAuth 2.0 authorization code flow", `tenant`: "for guest scenarios
//! … you must provide the tenant identifier to sign them into the resource tenant"). A hand-off
//! signs in at the run's tenant the same way. The field's rule is checked on CreateInvitation.

use anyhow::{Context, Result, bail, ensure};
use onboard_core::roles::GLOBAL_ADMINISTRATOR;
use onboard_proto::v1 as pb;
use onboard_proto::v1::sign_in_event::Event as SE;
use testkit::server::{OPERATOR, bad_fields};
use testkit::sim_server::SimServer;
use testkit::wizard::{Browser, claim, completed, contoso};

/// The provider's own tenant, where the guest's home account lives.
const HOME: &str = "provider.example";

/// A server with the customer's tenant (the emulator's first) and the provider's tenant
/// [`HOME`], whose Global Administrator is also a Global Administrator guest of the customer.
/// Returns the home account's UPN too.
async fn with_guest() -> Result<(SimServer, String)> {
    let env = SimServer::start().await?;
    let home = env.sim.add_tenant(HOME);
    let upn = format!("globaladmin@{}", home.tenant_domain);
    env.sim
        .add_guest(&upn, &env.info.tenant_id, &[GLOBAL_ADMINISTRATOR])
        .context("adding the guest")?;
    Ok((env, upn))
}

/// An invitation for the customer naming `tenant` (empty: none); its token.
async fn invite(env: &SimServer, tenant: &str) -> Result<String> {
    let created = env
        .server
        .invitations(Some(OPERATOR))
        .await?
        .create_invitation(pb::CreateInvitationRequest {
            tenant: tenant.into(),
            ..contoso("svc-guest", "direct-routing")
        })
        .await?
        .into_inner();
    ensure!(created.invitation.context("invitation")?.tenant == tenant.to_ascii_lowercase());
    Ok(created.token)
}

/// SignIn with `token` as `upn`, who approves the device code: the SignedIn event, or the
/// status the sign-in ended with.
async fn sign_in(
    env: &SimServer,
    token: &str,
    upn: &str,
    browser: Browser<'_>,
) -> Result<Result<pb::SignedIn, tonic::Status>> {
    Ok(match env.sign_in(token, upn, browser).await? {
        Err(status) => Err(status),
        Ok(events) => match events.last().and_then(|e| e.event.clone()) {
            Some(SE::SignedIn(s)) => Ok(s),
            other => bail!("the sign-in did not end signed in: {other:?}"),
        },
    })
}

/// A guest admin signs in to the tenant the invitation names, by domain or by id (in any
/// case), is recognised as the account typed although the tenant knows it by its `#EXT#`
/// UPN, and the app registration is made in the customer's tenant. Without the tenant on
/// the invitation the same account lands in its home tenant, which is why the field exists.
#[tokio::test]
async fn a_guest_admin_onboards_the_tenant_the_invitation_names() -> Result<()> {
    let (env, upn) = with_guest().await?;
    let customer = env.info.tenant_id.clone();
    let by_domain = env.info.tenant_domain.to_ascii_uppercase();
    for tenant in [by_domain.as_str(), customer.as_str()] {
        let token = invite(&env, tenant).await?;
        let signed_in = sign_in(&env, &token, &upn, Browser::SignsInAs(&upn))
            .await?
            .map_err(|s| anyhow::anyhow!("the guest's sign-in at {tenant} failed: {s:?}"))?;
        ensure!(signed_in.tenant_id == customer, "{signed_in:?}");
        ensure!(signed_in.upn.contains("#EXT#"), "{signed_in:?}");
        ensure!(signed_in.roles_missing.is_empty(), "{signed_in:?}");
        if tenant == customer {
            let events = env
                .provision(&token, &signed_in.onboarding_id, "Guest-made")
                .await?
                .map_err(|s| anyhow::anyhow!("Provision refused: {s:?}"))?;
            let done = completed(&events)?;
            ensure!(done.tenant_id == customer, "{done:?}");
            // The platform's copy of the secret authenticates in the customer's tenant.
            let claimed = claim(env.server.channel().await?, &signed_in.onboarding_id).await?;
            ensure!(env.authenticates(&done.client_id, &claimed.secret).await?);
        }
    }
    // The home tenant, not the customer's, without the field.
    let token = invite(&env, "").await?;
    let signed_in = sign_in(&env, &token, &upn, Browser::SignsInAs(&upn))
        .await?
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;
    ensure!(signed_in.tenant_id != customer, "{signed_in:?}");
    env.stop().await
}

/// An account that is neither a member nor a guest of the named tenant is refused by
/// Microsoft (AADSTS50020), and the invitation stays unused for the right admin.
#[tokio::test]
async fn an_account_of_another_organization_cannot_sign_in_to_the_named_tenant() -> Result<()> {
    let (env, _) = with_guest().await?;
    let stranger = format!("appadmin@{HOME}");
    let token = invite(&env, &env.info.tenant_id).await?;
    let status = match sign_in(&env, &token, &stranger, Browser::Refused(&stranger)).await? {
        Err(status) => status,
        Ok(s) => bail!("a stranger signed in: {s:?}"),
    };
    // Microsoft's refusal of the account, as any refused sign-in: PERMISSION_DENIED, and the
    // invitation may sign in again.
    ensure!(
        status.code() == tonic::Code::PermissionDenied && status.message().contains("AADSTS50020"),
        "{status:?}"
    );
    let key = pb::get_invitation_request::Key::Token(token);
    let inv = env.server.invitation(key).await?;
    ensure!(inv.state() == pb::InvitationState::Pending, "{inv:?}");
    env.stop().await
}

/// The tenant is a GUID or a domain name, stored trimmed in lower case; `organizations` and
/// its kin name no tenant.
#[tokio::test]
async fn the_tenant_is_an_id_or_a_domain() -> Result<()> {
    let env = SimServer::start().await?;
    let mut c = env.server.invitations(Some(OPERATOR)).await?;
    for bad in [
        "organizations",
        "common",
        "consumers",
        "contoso",
        "contoso.com/",
        "not a tenant",
        "72f988bf-86f1-41af-91ab-2d7cd011db4",
    ] {
        let e = c
            .create_invitation(pb::CreateInvitationRequest {
                tenant: bad.into(),
                ..contoso("svc-1", "direct-routing")
            })
            .await
            .err()
            .with_context(|| format!("{bad:?} accepted"))?;
        ensure!(e.code() == tonic::Code::InvalidArgument, "{e:?}");
        ensure!(bad_fields(&e) == ["tenant"], "{bad:?}: {e:?}");
    }
    let created = c
        .create_invitation(pb::CreateInvitationRequest {
            tenant: " Contoso.Example ".into(),
            ..contoso("svc-1", "direct-routing")
        })
        .await?
        .into_inner();
    ensure!(created.invitation.context("invitation")?.tenant == "contoso.example");
    env.stop().await
}

/// The customer's Application Administrator starts (an invitation naming no tenant); the
/// partner's Global Administrator, a guest in the customer's tenant, finishes through the
/// hand-off link: that sign-in is at the run's tenant, so the guest lands there rather than
/// at home, and the onboarding completes in the customer's tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_global_administrator_finishes_a_hand_off() -> Result<()> {
    let (env, upn) = with_guest().await?;
    let (token, _) = env.invite(None).await?;
    let signed = env.signed_in(&token, "appadmin").await?;
    let id = signed.onboarding_id;
    let events = env
        .provision(&token, &id, "Guest-Finished")
        .await?
        .map_err(|s| anyhow::anyhow!("Provision refused: {s:?}"))?;
    testkit::wizard::awaiting_admin(&events)?;
    let link = testkit::wizard::hand_off_link(env.server.channel().await?, &token, &id)
        .await
        .map_err(|s| anyhow::anyhow!("no link: {s:?}"))?;
    let joined = sign_in(&env, &link.invitation_token, &upn, Browser::SignsInAs(&upn))
        .await?
        .map_err(|s| anyhow::anyhow!("the guest's hand-off sign-in failed: {s:?}"))?;
    ensure!(
        joined.onboarding_id == id
            && joined.tenant_id == env.info.tenant_id
            && joined.roles_missing.is_empty(),
        "{joined:?}"
    );
    let finish = env
        .provision(&link.invitation_token, &id, "Guest-Finished")
        .await?
        .map_err(|s| anyhow::anyhow!("the guest was refused: {s:?}"))?;
    let done = completed(&finish)?;
    ensure!(done.tenant_id == env.info.tenant_id, "{done:?}");
    let claimed = claim(env.server.channel().await?, &id).await?;
    ensure!(
        env.authenticates(&claimed.client_id, &claimed.secret)
            .await?
    );
    env.stop().await
}
