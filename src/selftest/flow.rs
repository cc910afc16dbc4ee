//! The smoke path over gRPC, as the platform and the customer admin would drive it: invite →
//! sign-in (the device code, or the browser sign-in's URL, printed for a human) → plan →
//! provision → verify → rotate → cancel, then the audit entries with Microsoft's request ids.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use onboard_proto::v1 as pb;
use onboard_proto::v1::audit_client::AuditClient;
use onboard_proto::v1::credentials_client::CredentialsClient;
use onboard_proto::v1::invitations_client::InvitationsClient;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use onboard_proto::v1::verification_client::VerificationClient;
use pb::provision_event::Event as PE;
use pb::sign_in_event::Event as SE;
use serde_json::Value;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Adds one bearer token to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// `Bearer TOKEN`.
    pub fn new(token: &str) -> anyhow::Result<Self> {
        Ok(Self(format!("Bearer {token}").parse()?))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// What the steps share.
pub struct Flow {
    /// The operator's calls.
    pub operator: Bearer,
    /// The auditor's calls.
    pub auditor: Bearer,
    /// The channel to the server.
    pub channel: Channel,
    /// The Direct Routing service id the invitation names.
    pub service_id: String,
    /// The profile the invitation names.
    pub profile: String,
    /// The admin's UPN.
    pub upn: String,
    /// The tenant the invitation names (empty: the admin's home tenant).
    pub tenant: String,
    /// The app registration's name.
    pub app_name: String,
    /// Device code or browser.
    pub sign_in: super::SignInWith,
    /// Filled as the steps run.
    pub state: State,
}

/// Ids the steps hand on.
#[derive(Default)]
pub struct State {
    /// The invitation token (the wizard's capability).
    pub token: String,
    /// The onboarding id.
    pub onboarding_id: String,
    /// The tenant signed in to.
    pub tenant_id: String,
    /// The new registration's client id.
    pub client_id: String,
}

impl Flow {
    fn op(&self) -> Authed {
        InterceptedService::new(self.channel.clone(), self.operator.clone())
    }

    /// Creates the invitation (operator).
    pub async fn invite(&mut self) -> anyhow::Result<String> {
        let r = InvitationsClient::new(self.op())
            .create_invitation(pb::CreateInvitationRequest {
                customer: "Onboard selftest".into(),
                service_id: self.service_id.clone(),
                profile: self.profile.clone(),
                admin_upn: self.upn.clone(),
                tenant: self.tenant.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        self.state.token = r.token;
        let inv = r.invitation.context("no invitation in the answer")?;
        Ok(format!("invitation {} (profile {})", inv.id, self.profile))
    }

    /// The device-code sign-in: prints Microsoft's instruction and the code, waits for the
    /// person at the browser.
    pub async fn sign_in(&mut self) -> anyhow::Result<String> {
        let mut stream = OnboardingClient::new(self.channel.clone())
            .sign_in(pb::SignInRequest {
                invitation_token: self.state.token.clone(),
                admin_upn: self.upn.clone(),
                method: match self.sign_in {
                    super::SignInWith::DeviceCode => pb::SignInMethod::DeviceCode,
                    super::SignInWith::Browser => pb::SignInMethod::Browser,
                }
                .into(),
            })
            .await?
            .into_inner();
        loop {
            match stream.message().await?.and_then(|e| e.event) {
                Some(SE::DeviceCode(code)) => {
                    println!("      Sign in as {} now:", self.upn);
                    println!("      {}", code.message);
                    println!("      user code: {}", code.user_code);
                    println!("      verification url: {}", code.verification_uri);
                    std::io::stdout().flush()?;
                }
                Some(SE::Pending(_)) => {}
                Some(SE::BrowserSignIn(b)) => {
                    println!(
                        "      Open this in a browser on this machine and sign in as {}:",
                        self.upn
                    );
                    println!("      authorization url: {}", b.authorization_url);
                    std::io::stdout().flush()?;
                }
                Some(SE::SignedIn(s)) => {
                    self.state.onboarding_id = s.onboarding_id.clone();
                    self.state.tenant_id = s.tenant_id.clone();
                    return Ok(format!(
                        "{} in tenant {}, roles {}; onboarding {}",
                        s.upn,
                        s.tenant_id,
                        s.roles_held.join(", "),
                        s.onboarding_id
                    ));
                }
                None => bail!("the sign-in ended without a result"),
            }
        }
    }

    /// The dry run: the planned changes.
    pub async fn plan(&mut self) -> anyhow::Result<String> {
        let plan = OnboardingClient::new(self.channel.clone())
            .plan(pb::PlanRequest {
                onboarding_id: self.state.onboarding_id.clone(),
                app_name: self.app_name.clone(),
                invitation_token: self.state.token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        for c in &plan.changes {
            println!("      - {}", c.description);
        }
        Ok(format!("{} planned changes", plan.changes.len()))
    }

    /// Provisioning to its end, each step printed.
    pub async fn provision(&mut self) -> anyhow::Result<String> {
        let mut events = OnboardingClient::new(self.channel.clone())
            .provision(pb::ProvisionRequest {
                onboarding_id: self.state.onboarding_id.clone(),
                app_name: self.app_name.clone(),
                idempotency_key: format!("selftest-{}", self.state.onboarding_id),
                invitation_token: self.state.token.clone(),
                seal_to: None,
            })
            .await?
            .into_inner();
        while let Some(e) = events.message().await? {
            match e.event {
                Some(PE::Started(_)) | None => {}
                Some(PE::Retrying(r)) => println!("      {} retrying: {}", r.step, r.reason),
                Some(PE::Done(d)) => println!(
                    "      {} {}",
                    d.step,
                    if d.unchanged { "already there" } else { "done" }
                ),
                Some(PE::Completed(c)) => {
                    self.state.client_id = c.client_id.clone();
                    return Ok(format!(
                        "app {} (client id {}), secret key id {} ({} characters; not shown)",
                        self.app_name,
                        c.client_id,
                        c.key_id,
                        c.secret.chars().count()
                    ));
                }
                Some(PE::Failed(f)) => bail!("failed at {}: {}", f.step, f.reason),
                Some(PE::Cancelled(_)) => bail!("the onboarding was cancelled"),
                Some(PE::AwaitingAdmin(h)) => bail!(
                    "the admin lacks rights; the onboarding waits for one holding {} \
                     (run the self-test as a Global Administrator, or finish it with \
                     IssueHandOffLink)",
                    h.roles.join(" or ")
                ),
            }
        }
        bail!("the provision stream ended without Completed")
    }

    /// Verification of the new registration; a FAIL is a failed step.
    pub async fn verify(&mut self) -> anyhow::Result<String> {
        let report = VerificationClient::new(self.op())
            .verify(pb::VerifyRequest {
                target: Some(pb::verify_request::Target::ClientId(
                    self.state.client_id.clone(),
                )),
            })
            .await?
            .into_inner();
        let mut fails = Vec::new();
        for c in &report.checks {
            let status = match pb::CheckStatus::try_from(c.status) {
                Ok(pb::CheckStatus::Ok) => "OK",
                Ok(pb::CheckStatus::Warn) => "WARN",
                Ok(pb::CheckStatus::Fail) => {
                    fails.push(c.name.clone());
                    "FAIL"
                }
                _ => "?",
            };
            println!("      {status:<4} {:<24} {}", c.name, c.detail);
        }
        if !fails.is_empty() {
            bail!("verification FAIL: {}", fails.join(", "));
        }
        Ok(format!("{} checks, none FAIL", report.checks.len()))
    }

    fn registration(&self) -> pb::RegistrationRef {
        pb::RegistrationRef {
            tenant_id: self.state.tenant_id.clone(),
            client_id: self.state.client_id.clone(),
        }
    }

    /// Rotation of the service's secret with no overlap: add, validate, hand over, remove old.
    pub async fn rotate(&mut self) -> anyhow::Result<String> {
        let mut events = CredentialsClient::new(self.op())
            .rotate_secret(pb::RotateSecretRequest {
                registration: Some(self.registration()),
                service_id: self.service_id.clone(),
                overlap: Some(prost_types::Duration::default()),
                seal_to: None,
            })
            .await?
            .into_inner();
        let mut stages = Vec::new();
        while let Some(e) = events.message().await? {
            if e.done {
                println!("      {} done", e.stage);
                stages.push(e.stage);
            }
        }
        if !stages.iter().any(|s| s == "remove_old") {
            bail!("the rotation ended after {stages:?}, without remove_old");
        }
        Ok(format!("stages {}", stages.join(" → ")))
    }

    /// Cancels the completed onboarding, which removes the app registration it made.
    pub async fn cancel(&mut self) -> anyhow::Result<String> {
        let info = OnboardingClient::new(self.op())
            .cancel_onboarding(pb::CancelOnboardingRequest {
                onboarding_id: self.state.onboarding_id.clone(),
                reason: "onboard selftest: cleaning up".into(),
                invitation_token: String::new(),
            })
            .await?
            .into_inner();
        let state = pb::OnboardingState::try_from(info.state)
            .map_or_else(|_| info.state.to_string(), |s| s.as_str_name().to_owned());
        Ok(format!("onboarding {} is {state}", info.onboarding_id))
    }

    /// Every audit entry of the run as JSON (the run's data directory is new, so that is
    /// everything the server wrote).
    pub async fn audit_entries(&self) -> anyhow::Result<Vec<Value>> {
        let mut client = AuditClient::new(InterceptedService::new(
            self.channel.clone(),
            self.auditor.clone(),
        ));
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_entries(pb::ListEntriesRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            for e in page.entries {
                out.push(serde_json::from_slice(&e.leaf)?);
            }
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = page.next_page_token;
        }
    }
}

/// How long one step may take before the selftest gives up (a human signs in within it).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
