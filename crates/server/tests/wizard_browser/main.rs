//! The invitation wizard end to end in a real headless Chromium (WebDriver), against the
//! in-process server and the Entra emulator. The tests assert what the person sees: the
//! screen, its text, where the keyboard focus is, which buttons are disabled. Every step is
//! photographed at 360 px and 1280 px (`WIZARD_SCREENSHOTS=DIR`, default
//! `target/wizard-screenshots`) and checked with axe-core (no serious or critical violation);
//! every response the browser received passes through a recording proxy, so the security
//! headers and the absence of the secret are checked on all of them.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).

mod device_code;
mod flows;
mod hand_off;
mod links;
mod names;
mod undo;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, ensure};
use onboard_server::wizard::{CONTENT_SECURITY_POLICY, page_path};
use testkit::browser::{Chrome, RecordingProxy};
use testkit::config::ACTIVATION_URL;
use testkit::sim_server::SimServer;

/// The vendored axe-core (see tests/fixtures/axe-core/README.md).
const AXE: &str = include_str!("../../../../tests/fixtures/axe-core/axe.min.js");

/// One browser at a time: two cores are shared with the rest of the test suite.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The viewports every step is photographed at.
const SIZES: [(u32, u32); 2] = [(360, 780), (1280, 900)];

/// The emulator, the server, a proxy in front of it and a browser.
pub struct Wiz {
    /// Emulator and server.
    pub env: SimServer,
    /// The browser.
    pub chrome: Chrome,
    /// Everything the browser exchanged with the server.
    pub proxy: RecordingProxy,
    /// Where screenshots go (`None`: not taken in this test).
    shots: Option<PathBuf>,
    /// Holds the one-browser lock.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Wiz {
    /// Starts everything; `shots` names the screenshot set (none: no screenshots).
    pub async fn start(shots: Option<&str>) -> Result<Self> {
        Self::start_with(shots, testkit::sim::calm()).await
    }

    /// [`Wiz::start`] against a slow tenant (150 ms a Microsoft call, `lag_ms` of replication
    /// lag), so that a run is still going when the test acts on it.
    pub async fn start_slow(shots: Option<&str>, lag_ms: u64) -> Result<Self> {
        let mut faults = testkit::sim::calm();
        faults.latency_ms = 150;
        faults.replication_lag_ms = lag_ms;
        Self::start_with(shots, faults).await
    }

    /// [`Wiz::start`] with the emulator's faults.
    pub async fn start_with(shots: Option<&str>, faults: entra_sim::Faults) -> Result<Self> {
        Self::start_configured(shots, faults, Ok).await
    }

    /// [`Wiz::start_with`] and a server configuration that `edit` changes.
    pub async fn start_configured(
        shots: Option<&str>,
        faults: entra_sim::Faults,
        edit: impl testkit::config::Edit,
    ) -> Result<Self> {
        let turn = ONE_BROWSER.lock().await;
        let env = SimServer::start_with(edit).await?;
        env.sim.set_faults(faults);
        let proxy = RecordingProxy::start(env.server.addr).await?;
        let chrome = Chrome::start().await?;
        let shots = shots.map(|s| {
            std::env::var_os("WIZARD_SCREENSHOTS")
                .map_or_else(
                    || {
                        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                            .join("../../target/wizard-screenshots")
                    },
                    PathBuf::from,
                )
                .join(s)
        });
        Ok(Self {
            env,
            chrome,
            proxy,
            shots,
            _turn: turn,
        })
    }

    /// Opens the activation link of `token` (through the proxy).
    pub async fn open(&self, token: &str) -> Result<()> {
        let url = format!(
            "{}{}#token={token}",
            self.proxy.url,
            page_path(ACTIVATION_URL)
        );
        self.chrome.client.goto(&url).await?;
        Ok(())
    }

    /// A new invitation; its token.
    pub async fn invite(&self) -> Result<String> {
        Ok(self.env.invite(None).await?.0)
    }

    /// The screen is `id`, its heading has the focus, and axe finds nothing serious; then the
    /// screenshots `NN-name` at both sizes.
    pub async fn step(&self, id: &str, shot: &str) -> Result<()> {
        self.chrome.wait_screen(id).await?;
        let focus = self.chrome.focus().await?;
        ensure!(
            focus.starts_with(&format!("{id}/h1/")),
            "focus is on {focus}, not the heading of {id}"
        );
        let violations = self.chrome.axe(AXE).await?;
        ensure!(
            violations.is_empty(),
            "axe on {id}: {}",
            violations.join("\n")
        );
        self.shoot(shot).await
    }

    /// Screenshots at both sizes (if this test takes them), back at 1280 px after.
    pub async fn shoot(&self, name: &str) -> Result<()> {
        self.no_internal_ids(name).await?;
        let Some(dir) = &self.shots else {
            return Ok(());
        };
        for (w, h) in SIZES {
            self.chrome
                .screenshot_full(dir, &format!("{name}-{w}"), w, h)
                .await?;
        }
        self.chrome.viewport(1280, 900).await
    }

    /// docs/wizard.md: "no internal ids except the client id on Done". The visible text holds
    /// no GUID but the client id (Done, and the attached registration's).
    async fn no_internal_ids(&self, state: &str) -> Result<()> {
        let js = r#"
            const allowed = ['done-client', 'att-done-client']
              .map(id => document.getElementById(id)).filter(e => e).map(e => e.textContent.trim());
            const re = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
            return (document.body.innerText.match(re) || []).filter(g => !allowed.includes(g));
        "#;
        let shown = self.chrome.js(js).await?;
        ensure!(
            shown.as_array().is_some_and(|a| a.is_empty()),
            "{state}: internal ids shown on the page: {shown}"
        );
        Ok(())
    }

    /// Waits for screen `id`, a run's outcome (up to two minutes: the run is in between).
    pub async fn after_run(&self, id: &str) -> Result<()> {
        self.chrome
            .wait_screen_for(id, Duration::from_secs(120))
            .await
    }

    /// [`Wiz::after_run`], then [`Wiz::step`]; the screen's text.
    pub async fn step_after_run(&self, id: &str, shot: &str) -> Result<String> {
        self.after_run(id).await?;
        self.step(id, shot).await?;
        self.chrome.text(&format!("#{id}")).await
    }

    /// From now on, records every screen the page shows (`screens_shown`): a screen a fast run
    /// passes through may be gone before a poll for it looks.
    pub async fn record_screens(&self) -> Result<()> {
        self.chrome
            .js("window.__shown = []; new MutationObserver(() => { \
                 const s = document.querySelector('main > section:not([hidden])'); \
                 if (s && window.__shown[window.__shown.length - 1] !== s.id) window.__shown.push(s.id); \
                 }).observe(document.querySelector('main'), \
                 {subtree: true, attributes: true, attributeFilter: ['hidden']}); return true")
            .await?;
        Ok(())
    }

    /// The screens shown since [`Wiz::record_screens`], in order.
    pub async fn screens_shown(&self) -> Result<Vec<String>> {
        let v = self.chrome.js("return window.__shown").await?;
        Ok(serde_json::from_value(v)?)
    }

    /// The code shown on the device-code screen.
    pub async fn code(&self) -> Result<String> {
        self.chrome.wait_screen("s-code").await?;
        self.chrome
            .wait_js(
                "document.getElementById('code').textContent.length > 0",
                "the code",
            )
            .await?;
        self.chrome.text("#code").await
    }

    /// Waits until the element `id` is enabled (`what` it means, for the error).
    pub async fn wait_enabled(&self, id: &str, what: &str) -> Result<()> {
        let check = format!("!document.getElementById('{id}').disabled");
        self.chrome.wait_js(&check, what).await
    }

    /// Waits until the element `id` is shown (`what` it means, for the error).
    pub async fn wait_shown(&self, id: &str, what: &str) -> Result<()> {
        let check = format!("!document.getElementById('{id}').hidden");
        self.chrome.wait_js(&check, what).await
    }

    /// Waits until the text of the element `id` includes `part` (`what` it means, for the
    /// error).
    pub async fn wait_text(&self, id: &str, part: &str, what: &str) -> Result<()> {
        let check = format!("document.getElementById('{id}').textContent.includes('{part}')");
        self.chrome.wait_js(&check, what).await
    }

    /// Waits until the progress list shows a step of kind `class` (a CSS class selector such
    /// as `.run`; empty: any step).
    pub async fn wait_step(&self, class: &str, what: &str) -> Result<()> {
        let check = format!("document.querySelectorAll('#steps li{class}').length > 0");
        self.chrome.wait_js(&check, what).await
    }

    /// Screen 6 once the onboarding is cancelled: its heading and the page title say so, and
    /// the "Onboard is setting up" text is gone.
    pub async fn shows_cancelled(&self) -> Result<()> {
        let heading = self.chrome.text("#progress-h").await?;
        ensure!(heading == "Onboarding cancelled", "heading: {heading}");
        let intro = "return document.getElementById('progress-intro').hidden";
        ensure!(
            self.chrome.js(intro).await?.as_bool() == Some(true),
            "the provisioning text is still shown"
        );
        let title = self.chrome.js("return document.title").await?;
        ensure!(
            title.as_str() == Some("Onboarding cancelled – Invitation wizard"),
            "title: {title}"
        );
        Ok(())
    }

    /// `nick@<tenant>`.
    pub fn upn(&self, nick: &str) -> String {
        self.env.upn(nick)
    }

    /// From the landing page to the connected screen, signed in as `nick`.
    pub async fn sign_in_as(&self, nick: &str) -> Result<()> {
        self.chrome.wait_screen("s-landing").await?;
        self.chrome.click("btn-create").await?;
        self.sign_in_from_upn(nick).await
    }

    /// From the UPN screen to the connected screen, signed in as `nick`.
    pub async fn sign_in_from_upn(&self, nick: &str) -> Result<()> {
        self.device_sign_in(nick, nick).await?;
        self.chrome.wait_screen("s-connected").await
    }

    /// On the UPN screen, `typed`'s UPN entered and Start Authentication clicked; `signs_in`
    /// completes the device login at Microsoft. The device code.
    pub async fn device_sign_in(&self, typed: &str, signs_in: &str) -> Result<String> {
        self.chrome.wait_screen("s-upn").await?;
        self.chrome.type_into("upn", &self.upn(typed)).await?;
        self.chrome.click("btn-auth").await?;
        let code = self.code().await?;
        self.env
            .sim
            .complete_device_login(&code, &self.upn(signs_in))
            .await?;
        Ok(code)
    }

    /// A new invitation's link opened, "Create New App Registration" clicked, `nick`'s UPN
    /// entered and Start Authentication clicked: the token, the UPN and the code shown.
    pub async fn code_for_new_link(&self, nick: &str) -> Result<(String, String, String)> {
        let token = self.invite().await?;
        self.open(&token).await?;
        self.chrome.wait_screen("s-landing").await?;
        self.chrome.click("btn-create").await?;
        let upn = self.upn(nick);
        self.chrome.type_into("upn", &upn).await?;
        self.chrome.click("btn-auth").await?;
        let code = self.code().await?;
        Ok((token, upn, code))
    }

    /// A new invitation's link opened, signed in as the Global Administrator, then Microsoft
    /// stops accepting the sign-in (sessions revoked, the access token's hour over) and `name`
    /// is typed: the plan is refused and the offer to sign in again shown; the token.
    pub async fn plan_after_the_sign_in_ended(&self, name: &str) -> Result<String> {
        let token = self.invite().await?;
        self.open(&token).await?;
        self.sign_in_as(testkit::sim::users::GLOBAL_ADMIN).await?;
        self.chrome.click("btn-next").await?;
        self.chrome.wait_screen("s-name").await?;
        self.env.sim.revoke_sign_in_sessions().await;
        self.env.sim.expire_access_tokens().await;
        self.chrome.type_into("app-name", name).await?;
        self.wait_shown("plan-signin", "the offer to sign in again")
            .await?;
        Ok(token)
    }

    /// A new invitation's link opened, signed in as the Global Administrator, `name` typed and
    /// planned, "Start Provisioning" clicked, and the first step of kind `step` (a CSS class:
    /// `run`, `ok`, …) shown; the token.
    pub async fn provisioning(&self, name: &str, step: &str) -> Result<String> {
        let token = self.invite().await?;
        self.open(&token).await?;
        self.sign_in_as(testkit::sim::users::GLOBAL_ADMIN).await?;
        self.chrome.click("btn-next").await?;
        self.name_and_start(name).await?;
        self.wait_step(step, "a step").await?;
        Ok(token)
    }

    /// On the name screen: `name` typed and its plan shown.
    pub async fn name_and_plan(&self, name: &str) -> Result<()> {
        self.chrome.type_into("app-name", name).await?;
        self.wait_enabled("btn-provision", "a plan").await
    }

    /// On the name screen: `name` typed, its plan shown, "Start Provisioning" clicked.
    pub async fn name_and_start(&self, name: &str) -> Result<()> {
        self.name_and_plan(name).await?;
        self.chrome.click("btn-provision").await
    }

    /// Every onboarding the server holds, as an operator lists them.
    pub async fn onboardings(&self) -> Result<Vec<onboard_proto::v1::OnboardingInfo>> {
        Ok(self
            .env
            .server
            .onboarding(Some(testkit::config::OPERATOR))
            .await?
            .list_onboardings(onboard_proto::v1::ListOnboardingsRequest::default())
            .await?
            .into_inner()
            .onboardings)
    }

    /// Every response carried the security headers, and no request line carried the token.
    pub fn check_exchanges(&self, token: &str) -> Result<()> {
        let all = self.proxy.exchanges();
        ensure!(!all.is_empty(), "the proxy saw nothing");
        for x in &all {
            let line = &x.request_line;
            ensure!(!line.contains(token), "token in a request line: {line}");
            for (n, v) in &x.request_headers {
                ensure!(
                    n == "x-invitation-token" || !v.contains(token),
                    "token in request header {n} of {line}"
                );
            }
            for (name, want) in [
                ("content-security-policy", CONTENT_SECURITY_POLICY),
                ("referrer-policy", "no-referrer"),
                ("x-content-type-options", "nosniff"),
                ("cache-control", "no-store, max-age=0"),
                ("x-frame-options", "DENY"),
            ] {
                ensure!(
                    x.header(name) == Some(want),
                    "{line}: {name} is {:?}",
                    x.header(name)
                );
            }
            let csp = x.header("content-security-policy").unwrap_or_default();
            ensure!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
        }
        Ok(())
    }
}

/// Waits a little (the page debounces typing).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}
