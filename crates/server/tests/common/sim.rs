//! The Entra emulator and a server pointed at it, for the Onboarding service's tests.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::{Faults, Sim, SimConfig, SimInfo};
use onboard_proto::v1 as pb;
use pb::provision_event::Event as PE;
use pb::sign_in_event::Event as SE;
use serde_json::Value;

use super::{OPERATOR, TestServer};

pub const TOKEN_APP: &str = "Sandbox1-sp2-token";

/// The emulator and a server pointed at it.
pub struct Env {
    /// The Entra emulator (1 s device-code interval).
    pub sim: Sim,
    /// Its tenant and users.
    pub info: SimInfo,
    /// The server under test.
    pub server: TestServer,
    /// Its configuration text, to start it again on the same data directory.
    config: String,
    /// The part of it that points at the emulator, for a second server (`another_server`).
    extra: String,
}

pub async fn start() -> Result<Env> {
    start_with("").await
}

/// Like [`start`], with more configuration text appended (e.g. `[verification]`).
pub async fn start_with(more_config: &str) -> Result<Env> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Sim::start(
        listener,
        SimConfig {
            faults: Faults {
                device_code_interval_s: Some(1),
                seed: Some(7),
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await?;
    let info = sim.info();
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("sim-ca.pem");
    std::fs::write(&ca, sim.ca_pem())?;
    let extra = format!(
        r#"
[entra]
authority_url = "{base}"
graph_url = "{base}"
extra_trust_roots = ["{ca}"]
token_app_client_id = "{client}"
{more_config}
"#,
        base = sim.base_url(),
        ca = ca.display(),
        client = info.token_app_client_id,
    );
    let text = super::base_config(dir.path(), &extra)?;
    let server = TestServer::start_with(dir, &text).await?;
    Ok(Env {
        sim,
        info,
        server,
        config: text,
        extra,
    })
}

impl Env {
    /// Stops the server (graceful: open streams end, running onboardings stop where they are)
    /// and starts a new one on the same data directory, as a process restart would.
    pub async fn restart(self) -> Result<Env> {
        let Env {
            sim,
            info,
            mut server,
            config,
            extra,
        } = self;
        if let Some(s) = server.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = server.task.take() {
            t.await??;
        }
        server.app.close();
        let dir = std::mem::replace(&mut server.dir, tempfile::tempdir()?);
        // Every handle on the state databases goes with it, so they can be opened again.
        drop(server);
        let server = TestServer::start_with(dir, &config).await?;
        Ok(Env {
            sim,
            info,
            server,
            config,
            extra,
        })
    }

    /// A second server with its own data directory and audit key, on the same emulator (e.g.
    /// one that did not make a registration and has it attached).
    pub async fn another_server(&self) -> Result<TestServer> {
        let dir = tempfile::tempdir()?;
        let text = super::base_config(dir.path(), &self.extra)?;
        TestServer::start_with(dir, &text).await
    }

    pub fn upn(&self, nick: &str) -> String {
        format!("{nick}@{}", self.info.tenant_domain)
    }

    /// A new invitation (operator); returns (token, invitation id).
    pub async fn invite(&self, valid_for: Option<Duration>) -> Result<(String, String)> {
        self.invite_for(valid_for, "direct-routing").await
    }

    /// A new invitation for `profile` (operator); returns (token, invitation id).
    pub async fn invite_for(
        &self,
        valid_for: Option<Duration>,
        profile: &str,
    ) -> Result<(String, String)> {
        let mut c = self.server.invitations(Some(OPERATOR)).await?;
        let r = c
            .create_invitation(pb::CreateInvitationRequest {
                customer: "Contoso".into(),
                service_id: "dr-1".into(),
                profile: profile.into(),
                valid_for: valid_for.map(|d| prost_types::Duration {
                    seconds: d.as_secs() as i64,
                    nanos: d.subsec_nanos() as i32,
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        let id = r.invitation.context("invitation")?.id;
        Ok((r.token, id))
    }

    /// A whole onboarding for `profile` as the Global Administrator, app named `name`;
    /// returns the onboarding id and every Provision event (ending with Completed).
    pub async fn onboarded(
        &self,
        profile: &str,
        name: &str,
    ) -> Result<(String, Vec<pb::ProvisionEvent>)> {
        let (token, _) = self.invite_for(None, profile).await?;
        let id = self.signed_in(&token, "globaladmin").await?.onboarding_id;
        let events = self
            .provision(&token, &id, name)
            .await?
            .map_err(|s| anyhow::anyhow!("provision failed: {s:?}"))?;
        completed(&events)?;
        Ok((id, events))
    }

    /// A day-two sign-in ("Reinitiate Authentication Flow"): a new invitation signed in as the
    /// Global Administrator, which stores the tenant's admin session.
    pub async fn day_two_sign_in(&self) -> Result<()> {
        let (token, _) = self.invite(None).await?;
        self.signed_in(&token, "globaladmin").await?;
        Ok(())
    }

    /// SignIn with `token` for `upn`; when the code arrives the person at the browser signs in
    /// as `as_nick` (or declines). Returns every event, or the terminal status.
    pub async fn sign_in(
        &self,
        token: &str,
        upn: &str,
        as_nick: Option<&str>,
        decline: bool,
    ) -> Result<Result<Vec<pb::SignInEvent>, tonic::Status>> {
        let mut c = self.server.onboarding(None).await?;
        let mut stream = match c
            .sign_in(pb::SignInRequest {
                invitation_token: token.into(),
                admin_upn: upn.into(),
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(status) => return Ok(Err(status)),
        };
        let mut events = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(60), stream.message()).await?;
            match next {
                Ok(Some(e)) => {
                    if let Some(SE::DeviceCode(code)) = &e.event {
                        ensure!(!code.onboarding_id.is_empty() && !code.message.is_empty());
                        if let Some(nick) = as_nick {
                            let who = self.upn(nick);
                            if decline {
                                self.sim.decline_device_login(&code.user_code, &who).await?;
                            } else {
                                self.sim
                                    .complete_device_login(&code.user_code, &who)
                                    .await?;
                            }
                        }
                    }
                    events.push(e);
                }
                Ok(None) => return Ok(Ok(events)),
                Err(status) => return Ok(Err(status)),
            }
        }
    }

    /// A successful sign-in as `nick`; returns the SignedIn event.
    pub async fn signed_in(&self, token: &str, nick: &str) -> Result<pb::SignedIn> {
        let events = self
            .sign_in(token, &self.upn(nick), Some(nick), false)
            .await?
            .map_err(|s| anyhow::anyhow!("sign-in failed: {s:?}"))?;
        ensure!(
            matches!(
                events.first().and_then(|e| e.event.as_ref()),
                Some(SE::DeviceCode(_))
            ),
            "first event is not the code: {events:?}"
        );
        match events.last().and_then(|e| e.event.clone()) {
            Some(SE::SignedIn(s)) => Ok(s),
            other => bail!("last event is not SignedIn: {other:?}"),
        }
    }

    /// Provision with the invitation token; all events or the status.
    pub async fn provision(
        &self,
        token: &str,
        id: &str,
        name: &str,
    ) -> Result<Result<Vec<pb::ProvisionEvent>, tonic::Status>> {
        let mut c = self.server.onboarding(None).await?;
        let stream = c
            .provision(pb::ProvisionRequest {
                onboarding_id: id.into(),
                app_name: name.into(),
                idempotency_key: format!("key-{id}"),
                invitation_token: token.into(),
            })
            .await;
        match stream {
            Ok(s) => Ok(Ok(drain(s.into_inner()).await?)),
            Err(status) => Ok(Err(status)),
        }
    }
}

/// Reads a ProvisionEvent stream to its end.
pub async fn drain(mut s: tonic::Streaming<pb::ProvisionEvent>) -> Result<Vec<pb::ProvisionEvent>> {
    let mut out = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(120), s.message()).await?? {
        out.push(e);
    }
    Ok(out)
}

pub fn completed(events: &[pb::ProvisionEvent]) -> Result<pb::Completed> {
    match events.last().and_then(|e| e.event.clone()) {
        Some(PE::Completed(c)) => Ok(c),
        other => bail!("last event is not Completed: {other:?}\nall: {events:#?}"),
    }
}

pub fn apps_named<'a>(snap: &'a Value, name: &str) -> Vec<&'a Value> {
    snap["applications"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["props"]["displayName"] == name)
                .collect()
        })
        .unwrap_or_default()
}

pub fn sps_where<'a>(snap: &'a Value, key: &str, value: &str) -> Vec<&'a Value> {
    snap["service_principals"]
        .as_array()
        .map(|a| a.iter().filter(|x| x[key] == value).collect())
        .unwrap_or_default()
}

/// Every Entra change of `onboarding_id` is an intent followed by one outcome with the same
/// correlation id; returns action -> succeeded count.
pub fn change_pairs(entries: &[Value], onboarding_id: &str) -> Result<HashMap<String, usize>> {
    let mut open: HashMap<String, String> = HashMap::new();
    let mut done: HashMap<String, usize> = HashMap::new();
    for e in entries
        .iter()
        .filter(|e| e["onboarding_id"] == onboarding_id)
    {
        let action = e["action"].as_str().context("action")?.to_owned();
        if action.starts_with("onboarding.") || action.starts_with("invitation.") {
            continue;
        }
        let crid = e["correlation_id"]
            .as_str()
            .context("correlation_id")?
            .to_owned();
        match e["phase"].as_str() {
            Some("intent") => ensure!(open.insert(crid, action).is_none(), "intent twice"),
            Some(p @ ("succeeded" | "failed")) => {
                let a = open.remove(&crid).context("outcome without intent")?;
                ensure!(a == action, "outcome {action} for intent {a}");
                if p == "succeeded" {
                    *done.entry(action).or_default() += 1;
                }
            }
            other => bail!("bad phase {other:?}"),
        }
    }
    ensure!(open.is_empty(), "intents without outcome: {open:?}");
    Ok(done)
}

pub fn phases(entries: &[Value], action: &str, onboarding_id: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["action"] == action && e["onboarding_id"] == onboarding_id)
        .filter_map(|e| e["phase"].as_str().map(str::to_owned))
        .collect()
}
