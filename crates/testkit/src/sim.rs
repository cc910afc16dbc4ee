//! The Entra emulator on `127.0.0.1:0`, the one Entra client configuration tests use, the
//! seeded users, and the wizard's device-code sign-in driven through the emulator.

use std::time::Duration;

use anyhow::{Result, ensure};
use std::future::Future;

use entra_client::graph::ApplicationSpec;
use entra_client::{
    DeviceCodeFlow, EntraClient, EntraConfig, EntraError, GraphClient, OpContext, Reply, TokenSet,
};
use entra_sim::{Faults, Sim, SimConfig, SimInfo};
use secrecy::SecretString;
use serde_json::Value;

/// The seeded users of `contoso.onmicrosoft.com`, by nickname (the part before the `@`).
pub mod users {
    /// Global Administrator: may do everything an onboarding needs.
    pub const GLOBAL_ADMIN: &str = "globaladmin";
    /// Privileged Role Administrator.
    pub const PRIV_ROLE_ADMIN: &str = "privroleadmin";
    /// Application Administrator: may create apps and secrets, not grant app roles or assign
    /// directory roles.
    pub const APP_ADMIN: &str = "appadmin";
    /// A user without any admin role.
    pub const USER: &str = "user";
}

/// The temporary token app the device sign-in creates (`<server>-<provider>-token`).
pub const TOKEN_APP: &str = "Sandbox1-sp2-token";

/// Delegated scopes of the provider's token app, as the wizard asks for them.
pub const SIGN_IN_SCOPES: &[&str] = &[
    "https://graph.microsoft.com/.default",
    "offline_access",
    "openid",
    "profile",
];

/// The app-only Graph scope of client-credentials tokens.
pub const GRAPH_DEFAULT: &str = "https://graph.microsoft.com/.default";

/// A calm emulator: a 1 s device-code poll interval (Entra's 5 s would make every sign-in
/// slow) and a fixed fault seed.
pub fn calm() -> Faults {
    Faults {
        device_code_interval_s: Some(1),
        seed: Some(7),
        ..Faults::default()
    }
}

/// Starts the emulator on `127.0.0.1:0` with exactly `faults` (in memory).
pub async fn start(faults: Faults) -> Result<Sim> {
    start_with(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await
}

/// Starts the emulator on `127.0.0.1:0` with `config`.
pub async fn start_with(config: SimConfig) -> Result<Sim> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(Sim::start(listener, config).await?)
}

/// The Entra configuration every test uses: the emulator's URLs, trust in its CA, and one
/// retry policy chosen for fast, deterministic tests:
/// - no jitter, so every wait is the computed backoff and a seeded fault run replays exactly;
/// - short steps (100 ms doubling to at most 1 s; replication lag 200 ms to 1 s), so tests
///   against a throttling or lagging emulator take seconds, not the production minutes;
/// - generous budgets (10 attempts within 60 s; replication lag for 30 s), so the emulator's
///   seeded faults never exhaust them and a test fails only on a real defect. A test of
///   budget exhaustion narrows one field itself.
pub fn entra_config(sim: &Sim) -> EntraConfig {
    let mut c = EntraConfig::with_bases(sim.base_url(), sim.base_url()).trust_pem(sim.ca_pem());
    c.request_timeout = Duration::from_secs(15);
    c.connect_timeout = Duration::from_secs(5);
    c.retry.jitter = false;
    c.retry.initial_backoff = Duration::from_millis(100);
    c.retry.max_backoff = Duration::from_secs(1);
    c.retry.max_elapsed = Duration::from_secs(60);
    c.retry.max_attempts = 10;
    c.retry.replication_initial_backoff = Duration::from_millis(200);
    c.retry.replication_max_backoff = Duration::from_secs(1);
    c.retry.replication_max_elapsed = Duration::from_secs(30);
    c
}

/// An Entra client with [`entra_config`].
pub fn entra_client(sim: &Sim) -> Result<EntraClient> {
    Ok(EntraClient::new(&entra_config(sim))?)
}

/// `nick@<tenant domain>`.
pub fn upn(info: &SimInfo, nick: &str) -> String {
    format!("{nick}@{}", info.tenant_domain)
}

/// A device-code flow for the token app of `info`'s tenant with the wizard's scopes, started.
pub async fn device_flow(client: &EntraClient, info: &SimInfo) -> Result<DeviceCodeFlow> {
    device_flow_with(client, info, SIGN_IN_SCOPES).await
}

/// A device-code flow for the token app of `info`'s tenant asking for `scopes`, started.
pub async fn device_flow_with(
    client: &EntraClient,
    info: &SimInfo,
    scopes: &[&str],
) -> Result<DeviceCodeFlow> {
    let (tenant, app) = (&info.tenant_domain, &info.token_app_client_id);
    let ctx = OpContext::new();
    Ok(client
        .sts()
        .start_device_code(tenant, app, scopes, &ctx)
        .await?)
}

/// A single-tenant application named `name`, with nothing else set.
pub fn app_spec(name: &str) -> ApplicationSpec {
    ApplicationSpec {
        display_name: name.into(),
        sign_in_audience: Some("AzureADMyOrg".into()),
        ..Default::default()
    }
}

/// Awaits an Entra call that must succeed; its value (panics with the error otherwise).
pub async fn ok<T>(call: impl Future<Output = std::result::Result<Reply<T>, EntraError>>) -> T {
    match call.await {
        Ok(reply) => reply.value,
        Err(e) => panic!("the call failed: {e:?}"),
    }
}

/// Checks `err` is Graph's 400 with the `NoBackingApplicationObject` detail (a service principal
/// for an application Graph does not know, or not yet).
#[track_caller]
pub fn assert_no_backing_application(err: &EntraError) {
    let ge = err
        .graph()
        .unwrap_or_else(|| panic!("not a Graph error: {err:?}"));
    assert_eq!(ge.status, 400, "{ge:?}");
    let detail = ge
        .detail_codes
        .iter()
        .any(|c| c == "NoBackingApplicationObject");
    assert!(detail, "{ge:?}");
}

/// The wizard's device-code sign-in as `nick`: the client starts the flow, the emulator's
/// "browser" completes it, the client polls until the tokens arrive.
pub async fn sign_in(sim: &Sim, client: &EntraClient, nick: &str) -> Result<TokenSet> {
    sign_in_with(sim, client, &upn(&sim.info(), nick), SIGN_IN_SCOPES).await
}

/// A device-code sign-in as `upn` asking for `scopes`, completed in the emulator's "browser".
pub async fn sign_in_with(
    sim: &Sim,
    client: &EntraClient,
    upn: &str,
    scopes: &[&str],
) -> Result<TokenSet> {
    let mut flow = device_flow_with(client, &sim.info(), scopes).await?;
    sim.complete_device_login(&flow.authorization().user_code, upn)
        .await?;
    Ok(flow.poll_until_done(|_| {}).await?)
}

/// True when `secret` gets a client-credentials token for `client_id` of `tenant` now.
pub async fn authenticates(
    client: &EntraClient,
    tenant: &str,
    client_id: &str,
    secret: &SecretString,
) -> bool {
    let ctx = OpContext::new();
    client_credentials(client, tenant, client_id, secret, &ctx)
        .await
        .is_ok()
}

/// A client-credentials token for Graph for `client_id` of `tenant` with `secret`.
pub async fn client_credentials(
    client: &EntraClient,
    tenant: &str,
    client_id: &str,
    secret: &SecretString,
    ctx: &OpContext,
) -> std::result::Result<TokenSet, EntraError> {
    let sts = client.sts();
    sts.client_credentials(tenant, client_id, secret, GRAPH_DEFAULT, ctx)
        .await
}

/// The emulator with an Entra client pointed at it.
pub struct SimEnv {
    /// The running emulator.
    pub sim: Sim,
    /// Its seeded tenant and users.
    pub info: SimInfo,
    /// A client with [`entra_config`].
    pub client: EntraClient,
}

impl SimEnv {
    /// Starts the emulator with `faults` and a client for it.
    pub async fn start(faults: Faults) -> Result<Self> {
        let sim = start(faults).await?;
        let client = entra_client(&sim)?;
        let info = sim.info();
        Ok(Self { sim, info, client })
    }

    /// `nick@<tenant domain>`.
    pub fn upn(&self, nick: &str) -> String {
        upn(&self.info, nick)
    }

    /// A device-code flow of the wizard's, started (nobody has signed in yet).
    pub async fn device_flow(&self) -> Result<DeviceCodeFlow> {
        device_flow(&self.client, &self.info).await
    }

    /// `nick` approves `flow`'s code in the emulator's "browser".
    pub async fn approve(&self, flow: &DeviceCodeFlow, nick: &str) -> Result<()> {
        let code = &flow.authorization().user_code;
        Ok(self
            .sim
            .complete_device_login(code, &self.upn(nick))
            .await?)
    }

    /// `nick` declines `flow`'s code in the emulator's "browser".
    pub async fn decline(&self, flow: &DeviceCodeFlow, nick: &str) -> Result<()> {
        let code = &flow.authorization().user_code;
        Ok(self.sim.decline_device_login(code, &self.upn(nick)).await?)
    }

    /// The wizard's device-code sign-in as `nick`.
    pub async fn sign_in(&self, nick: &str) -> Result<TokenSet> {
        sign_in(&self.sim, &self.client, nick).await
    }

    /// The wizard's device-code sign-in as `nick` asking for exactly `scopes` (plus the OpenID
    /// ones): a Graph client with the access token.
    pub async fn graph_with_scopes(&self, nick: &str, scopes: &[&str]) -> Result<GraphClient> {
        let mut all: Vec<&str> = scopes.to_vec();
        all.extend(["offline_access", "openid", "profile"]);
        let mut flow = device_flow_with(&self.client, &self.info, &all).await?;
        self.approve(&flow, nick).await?;
        Ok(self.graph_with(flow.poll_until_done(|_| {}).await?.access_token))
    }

    /// Redeems `refresh_token` for the wizard's scopes.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
    ) -> std::result::Result<TokenSet, EntraError> {
        let (tenant, app) = (&self.info.tenant_domain, &self.info.token_app_client_id);
        let ctx = OpContext::new();
        let sts = self.client.sts();
        sts.refresh(tenant, app, refresh_token, SIGN_IN_SCOPES, &ctx)
            .await
    }

    /// A client-credentials token for Graph for `client_id` with `secret` in the tenant.
    pub async fn app_token(
        &self,
        client_id: &str,
        secret: &SecretString,
        ctx: &OpContext,
    ) -> std::result::Result<TokenSet, EntraError> {
        client_credentials(&self.client, &self.info.tenant_id, client_id, secret, ctx).await
    }

    /// A Graph client acting as `nick` (delegated).
    pub async fn graph_as(&self, nick: &str) -> Result<GraphClient> {
        Ok(self.client.graph(self.sign_in(nick).await?.access_token))
    }

    /// A Graph client with `token`.
    pub fn graph_with(&self, token: SecretString) -> GraphClient {
        self.client.graph(token)
    }

    /// True when `secret` gets a client-credentials token for `client_id` now.
    pub async fn authenticates(&self, client_id: &str, secret: &SecretString) -> bool {
        authenticates(&self.client, &self.info.tenant_id, client_id, secret).await
    }

    /// The application's passwords as the emulator holds them.
    pub fn passwords(&self, client_id: &str) -> Vec<Value> {
        crate::snapshot::passwords(&self.sim.snapshot(), client_id)
    }

    /// A registration made by hand in the portal by the Global Administrator.
    pub async fn hand_made(
        &self,
        name: &str,
        grants: &crate::portal::Grants<'_>,
    ) -> Result<crate::portal::HandMade> {
        let g = self.graph_as(users::GLOBAL_ADMIN).await?;
        crate::portal::hand_made(&g, name, grants).await
    }

    /// Another secret on application `client_id`, made by hand by the Global Administrator:
    /// its key id and value.
    pub async fn secret_by_hand(&self, client_id: &str) -> Result<(String, SecretString)> {
        let g = self.graph_as(users::GLOBAL_ADMIN).await?;
        crate::portal::add_secret(&g, client_id).await
    }

    /// The emulator's state (see [`crate::snapshot`]).
    pub fn snapshot(&self) -> Value {
        self.sim.snapshot()
    }
}

/// Checks that a run against a throttling and lagging emulator was seen to ride it out: among
/// the retries' `reasons` a 429 and a replication lag, and among their waits (ms) one of at
/// least the emulator's one-second `Retry-After`.
pub fn assert_rode_out_faults(reasons: &[impl AsRef<str>], waits_ms: &[u64]) -> Result<()> {
    let reasons: Vec<&str> = reasons.iter().map(AsRef::as_ref).collect();
    ensure!(
        reasons.iter().any(|r| r.contains("429")),
        "no throttling retry: {reasons:?}"
    );
    ensure!(
        reasons
            .iter()
            .any(|r| r.contains("replication") || r.contains("propagate")),
        "no replication-lag retry: {reasons:?}"
    );
    ensure!(
        waits_ms.iter().any(|ms| *ms >= 1000),
        "no wait of Retry-After length: {waits_ms:?}"
    );
    Ok(())
}

/// Where Microsoft's admin-consent page sends the admin back in tests: the wizard's
/// `/wizard/consented` under the test configuration's activation URL (the server derives it;
/// an engine test sets it as `consent_redirect_uri`).
pub const CONSENT_REPLY: &str = "https://wizard.example.net/wizard/consented";

/// An admin `nick` answers Microsoft's admin-consent page at `consent_url` as a browser would
/// (the page, then its form: Accept, or Cancel when `accept` is false); the redirect's
/// `Location`, not followed.
pub async fn admin_consent(
    sim: &Sim,
    consent_url: &str,
    nick: &str,
    accept: bool,
) -> Result<String> {
    answer_page(sim, consent_url, nick, accept).await
}

/// `nick` signs in at the authorization code flow's page at `authorize_url`
/// (`…/oauth2/v2.0/authorize?…`) as a browser would (the page, then its form: Accept, or Cancel
/// when `accept` is false); the redirect back to the app (`code` or `error`, and `state`) as
/// its `Location`, not followed.
pub async fn authorize(sim: &Sim, authorize_url: &str, nick: &str, accept: bool) -> Result<String> {
    answer_page(sim, authorize_url, nick, accept).await
}

/// GETs an emulator page with a sign-in form, posts the form back (its hidden fields, `upn` of
/// `nick`, `action`), and returns the 302's `Location`.
async fn answer_page(sim: &Sim, page_url: &str, nick: &str, accept: bool) -> Result<String> {
    let browser = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(sim.ca_pem().as_bytes())?])
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = browser.get(page_url).send().await?;
    let status = page.status();
    let html = page.text().await?;
    ensure!(status == 200, "the page answered {status}: {html}");
    let mut form = hidden_fields(&html);
    form.push(("upn".into(), upn(&sim.info(), nick)));
    let action = if accept { "accept" } else { "cancel" };
    form.push(("action".into(), action.into()));
    let mut post_url = reqwest::Url::parse(page_url)?;
    post_url.set_query(None);
    let answer = browser.post(post_url).form(&form).send().await?;
    let status = answer.status();
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(l) if status == 302 => Ok(l),
        _ => anyhow::bail!("the form answered {status}: {}", answer.text().await?),
    }
}

/// The `<input type="hidden" name="…" value="…">` fields of an emulator page, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let unescape = |s: &str| {
        s.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let value = rest.strip_prefix(" value=\"")?.split_once('"')?.0;
            Some((unescape(name), unescape(value)))
        })
        .collect()
}
