//! Shared set-up for the integration tests: an emulator on loopback HTTPS and a client that
//! trusts its CA, with short retry budgets so failures show up quickly.

#![allow(dead_code)]

use std::time::Duration;

use entra_client::{EntraClient, EntraConfig, GraphClient, OpContext, TokenSet};
use entra_sim::{Faults, Sim, SimConfig, SimInfo};
use secrecy::SecretString;

/// Delegated scopes of the provider's token app, as the wizard asks for them.
pub const SIGN_IN_SCOPES: &[&str] = &[
    "https://graph.microsoft.com/.default",
    "offline_access",
    "openid",
    "profile",
];
/// App-only Graph scope for client credentials.
pub const GRAPH_DEFAULT: &str = "https://graph.microsoft.com/.default";

/// A running emulator with a client pointed at it.
pub struct Env {
    pub sim: Sim,
    pub client: EntraClient,
    pub info: SimInfo,
}

/// Faults for a calm emulator with a 1 s device-code interval (5 s would make tests slow).
pub fn calm() -> Faults {
    Faults {
        device_code_interval_s: Some(1),
        seed: Some(7),
        ..Faults::default()
    }
}

pub fn config_for(sim: &Sim) -> EntraConfig {
    let mut config =
        EntraConfig::with_bases(sim.base_url(), sim.base_url()).trust_pem(sim.ca_pem());
    config.request_timeout = Duration::from_secs(15);
    config.connect_timeout = Duration::from_secs(5);
    config.retry.initial_backoff = Duration::from_millis(100);
    config.retry.max_backoff = Duration::from_secs(5);
    config.retry.max_elapsed = Duration::from_secs(60);
    config.retry.max_attempts = 8;
    config.retry.replication_initial_backoff = Duration::from_millis(200);
    config.retry.replication_max_backoff = Duration::from_secs(1);
    config.retry.replication_max_elapsed = Duration::from_secs(30);
    config
}

pub async fn start(faults: Faults) -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Sim::start(
        listener,
        SimConfig {
            faults,
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let client = EntraClient::new(&config_for(&sim)).unwrap();
    let info = sim.info();
    Env { sim, client, info }
}

impl Env {
    pub fn upn(&self, nick: &str) -> String {
        format!("{nick}@{}", self.info.tenant_domain)
    }

    /// Signs in as `nick` through the device flow, the way the wizard does.
    pub async fn sign_in(&self, nick: &str) -> TokenSet {
        let mut flow = self
            .client
            .sts()
            .start_device_code(
                &self.info.tenant_domain,
                &self.info.token_app_client_id,
                SIGN_IN_SCOPES,
                &OpContext::new(),
            )
            .await
            .unwrap();
        self.sim
            .complete_device_login(&flow.authorization().user_code, &self.upn(nick))
            .await
            .unwrap();
        flow.poll_until_done(|_| {}).await.unwrap()
    }

    /// A Graph client acting as `nick`.
    pub async fn graph_as(&self, nick: &str) -> GraphClient {
        let tokens = self.sign_in(nick).await;
        self.client.graph(tokens.access_token)
    }

    pub fn graph_with(&self, token: SecretString) -> GraphClient {
        self.client.graph(token)
    }
}
