//! The Entra emulator and an in-process server pointed at it (its Entra client trusts the
//! emulator's CA through `entra.extra_trust_roots`), with the wizard's calls as methods.

use std::time::Duration;

use anyhow::Result;
use entra_client::EntraClient;
use entra_sim::{Sim, SimInfo};
use onboard_proto::v1 as pb;
use tonic::Status;

use crate::config::{Edit, OPERATOR};
use crate::server::TestServer;
use crate::sim::{calm, users};
use crate::wizard::{self, Browser, Onboarding};

/// The service id invitations name unless a test says otherwise.
pub const SERVICE: &str = "dr-1";

/// The emulator and a server pointed at it.
pub struct SimServer {
    /// The Entra emulator (1 s device-code interval).
    pub sim: Sim,
    /// Its tenant and users.
    pub info: SimInfo,
    /// The server under test.
    pub server: TestServer,
}

impl SimServer {
    /// The emulator and a server with the local set-up.
    pub async fn start() -> Result<Self> {
        Self::start_with(Ok).await
    }

    /// The emulator and a server whose configuration `edit` changes (e.g. `[verification]`).
    pub async fn start_with(edit: impl Edit) -> Result<Self> {
        let sim = crate::sim::start(calm()).await?;
        let info = sim.info();
        let server = TestServer::start_with(|b| edit(b.entra_sim(&sim)?)).await?;
        Ok(Self { sim, info, server })
    }

    /// Stops the server (its background tasks end and the audit log is closed): how a test
    /// ends.
    pub async fn stop(self) -> Result<()> {
        self.server.stop().await
    }

    /// Stops the server and starts a new one on the same data directory (a process restart).
    pub async fn restart(self) -> Result<Self> {
        self.restart_with(|_| {}).await
    }

    /// [`SimServer::restart`] with `change` made to the server's configuration first.
    pub async fn restart_with(
        self,
        change: impl FnOnce(&mut onboard_server::Config),
    ) -> Result<Self> {
        let Self { sim, info, server } = self;
        let server = server.restart_with(change).await?;
        Ok(Self { sim, info, server })
    }

    /// A second server with its own data directory and audit key on the same emulator (e.g. one
    /// that did not make a registration and has it attached).
    pub async fn another_server(&self) -> Result<TestServer> {
        TestServer::start_with(|b| b.entra_sim(&self.sim)).await
    }

    /// `nick@<tenant domain>`.
    pub fn upn(&self, nick: &str) -> String {
        crate::sim::upn(&self.info, nick)
    }

    /// An Entra client for the emulator (to check a secret, or act in the portal).
    pub fn entra_client(&self) -> Result<EntraClient> {
        crate::sim::entra_client(&self.sim)
    }

    /// Whether `secret` gets the emulator's tenant a token for app `client_id`.
    pub async fn authenticates(&self, client_id: &str, secret: &str) -> Result<bool> {
        Ok(crate::sim::authenticates(
            &self.entra_client()?,
            &self.info.tenant_id,
            client_id,
            &secrecy::SecretString::from(secret.to_owned()),
        )
        .await)
    }

    /// Registration `client_id` of the emulator's tenant, as the Credentials service names it.
    pub fn registration(&self, client_id: &str) -> Option<pb::RegistrationRef> {
        Some(pb::RegistrationRef {
            tenant_id: self.info.tenant_id.clone(),
            client_id: client_id.into(),
        })
    }

    /// A new invitation for [`SERVICE`] and `direct-routing`; (token, invitation id).
    pub async fn invite(&self, valid_for: Option<Duration>) -> Result<(String, String)> {
        self.invite_for(valid_for, "direct-routing").await
    }

    /// A new invitation for [`SERVICE`] and `profile`; (token, invitation id).
    pub async fn invite_for(
        &self,
        valid_for: Option<Duration>,
        profile: &str,
    ) -> Result<(String, String)> {
        wizard::invite(self.server.channel().await?, SERVICE, profile, valid_for).await
    }

    /// A whole onboarding of `profile` as the Global Administrator, app named `name`.
    pub async fn onboarded(&self, profile: &str, name: &str) -> Result<Onboarding> {
        wizard::onboard(
            self.server.channel().await?,
            &self.sim,
            SERVICE,
            profile,
            name,
        )
        .await
    }

    /// The emulator and a server with the local set-up ([`SimServer::start`]) holding one
    /// completed onboarding of `profile`, app named `name`.
    pub async fn with_onboarding(profile: &str, name: &str) -> Result<(Self, Onboarding)> {
        let env = Self::start().await?;
        let done = env.onboarded(profile, name).await?;
        Ok((env, done))
    }

    /// A day-two sign-in ("Reinitiate Authentication Flow"): a new invitation signed in as the
    /// Global Administrator, which stores the tenant's admin session.
    pub async fn day_two_sign_in(&self) -> Result<()> {
        self.invited_and_signed_in(users::GLOBAL_ADMIN).await?;
        Ok(())
    }

    /// SignIn with `token` for `upn`, `browser` acting on the code: every event, or the status.
    pub async fn sign_in(
        &self,
        token: &str,
        upn: &str,
        browser: Browser<'_>,
    ) -> Result<Result<Vec<pb::SignInEvent>, Status>> {
        wizard::sign_in(self.server.channel().await?, &self.sim, token, upn, browser).await
    }

    /// A successful sign-in as `nick`; the SignedIn event.
    pub async fn signed_in(&self, token: &str, nick: &str) -> Result<pb::SignedIn> {
        wizard::signed_in(self.server.channel().await?, &self.sim, token, nick).await
    }

    /// A new invitation (server defaults) and a successful sign-in with it as `nick`: the
    /// invitation token and the onboarding id.
    pub async fn invited_and_signed_in(&self, nick: &str) -> Result<(String, String)> {
        let (token, _) = self.invite(None).await?;
        let id = self.signed_in(&token, nick).await?.onboarding_id;
        Ok((token, id))
    }

    /// Provision with the invitation token: every event, or the status.
    pub async fn provision(
        &self,
        token: &str,
        id: &str,
        name: &str,
    ) -> Result<Result<Vec<pb::ProvisionEvent>, Status>> {
        wizard::provision(self.server.channel().await?, token, id, name).await
    }

    /// CancelOnboarding of `id` as the operator, for `reason`: the onboarding as it answers.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<pb::OnboardingInfo> {
        let request = pb::CancelOnboardingRequest {
            onboarding_id: id.into(),
            reason: reason.into(),
            invitation_token: String::new(),
        };
        let mut c = self.server.onboarding(Some(OPERATOR)).await?;
        Ok(c.cancel_onboarding(request).await?.into_inner())
    }

    /// RevokeInvitation of invitation `id` as the operator, for `reason`.
    pub async fn revoke(&self, id: &str, reason: &str) -> Result<pb::Invitation> {
        let request = pb::RevokeInvitationRequest {
            id: id.into(),
            reason: reason.into(),
        };
        let mut c = self.server.invitations(Some(OPERATOR)).await?;
        Ok(c.revoke_invitation(request).await?.into_inner())
    }

    /// AddServiceSecret for `service_id` on the registration of `client_id` in the emulator's
    /// tenant, as the operator, with the server's default lifetime and no sealing.
    pub async fn add_secret(&self, client_id: &str, service_id: &str) -> Result<pb::NewSecret> {
        let request = pb::AddServiceSecretRequest {
            registration: self.registration(client_id),
            service_id: service_id.into(),
            valid_for: None,
            seal_to: None,
        };
        let mut c = self.server.credentials(Some(OPERATOR)).await?;
        Ok(c.add_service_secret(request).await?.into_inner())
    }
}
