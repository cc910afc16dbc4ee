//! Shared helpers: start an emulator on 127.0.0.1:0 and talk to it over real HTTPS.
#![allow(dead_code)]

use entra_sim::{Faults, Sim, SimConfig, SimInfo};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

pub const SCOPE: &str = "https://graph.microsoft.com/.default offline_access openid profile";

pub struct Env {
    pub sim: Sim,
    pub http: reqwest::Client,
    pub info: SimInfo,
}

pub async fn start(faults: Faults) -> Env {
    start_with(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await
}

pub async fn start_with(config: SimConfig) -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Sim::start(listener, config).await.unwrap();
    let ca = reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let info = sim.info();
    Env { sim, http, info }
}

impl Env {
    pub fn upn(&self, nick: &str) -> String {
        format!("{nick}@{}", self.info.tenant_domain)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.info.base_url)
    }

    pub async fn device_code(&self, scope: &str) -> Value {
        let r = self
            .http
            .post(self.url(&format!("/{}/oauth2/v2.0/devicecode", self.info.tenant_id)))
            .form(&[
                ("client_id", self.info.token_app_client_id.as_str()),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(&format!("/{}/oauth2/v2.0/token", self.info.tenant_id)))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    pub async fn poll(&self, device_code: &str) -> (StatusCode, Value) {
        self.token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", self.info.token_app_client_id.as_str()),
            ("device_code", device_code),
        ])
        .await
    }

    /// Full device sign-in as `nick`; returns the token response.
    pub async fn sign_in(&self, nick: &str) -> Value {
        let dc = self.device_code(SCOPE).await;
        self.sim
            .complete_device_login(dc["user_code"].as_str().unwrap(), &self.upn(nick))
            .await
            .unwrap();
        let (st, body) = self.poll(dc["device_code"].as_str().unwrap()).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        body
    }

    pub async fn access_token(&self, nick: &str) -> String {
        self.sign_in(nick).await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn client_credentials(
        &self,
        client_id: &str,
        secret: &str,
        scope: &str,
    ) -> (StatusCode, Value) {
        self.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .await
    }

    pub async fn graph_full(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            self.url(&format!("/v1.0{path}"))
        };
        let mut rb = self.http.request(method, url).bearer_auth(token);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status();
        let h = r.headers().clone();
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, h, v)
    }

    pub async fn graph(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, _, v) = self.graph_full(method, path, token, body, &[]).await;
        (s, v)
    }

    /// Creates an app + SP + secret as `token`'s user; returns (app, sp, secret).
    pub async fn provision(&self, token: &str, name: &str) -> (Value, Value, String) {
        let (s, app) = self
            .graph(
                Method::POST,
                "/applications",
                token,
                Some(json!({"displayName": name, "signInAudience": "AzureADMyOrg"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{app}");
        let (s, sp) = self
            .graph(
                Method::POST,
                "/servicePrincipals",
                token,
                Some(json!({"appId": app["appId"]})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{sp}");
        let (s, pw) = self
            .graph(
                Method::POST,
                &format!("/applications/{}/addPassword", app["id"].as_str().unwrap()),
                token,
                Some(json!({"passwordCredential": {"displayName": "svc"}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{pw}");
        (app, sp, pw["secretText"].as_str().unwrap().to_string())
    }

    pub async fn graph_sp_id(&self, token: &str) -> String {
        let (s, v) = self
            .graph(Method::GET, "/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')?$select=id,appRoles", token, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["id"].as_str().unwrap().to_string()
    }
}

pub fn claims(token: &str) -> Value {
    entra_sim::jwt::decode_claims_unverified(token).unwrap()
}

/// Checks an STS error body: `error`, `error_codes`, `AADSTSnnnn:` description and ids.
pub fn assert_sts_error(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"][0], code, "{body}");
    let desc = body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}:")), "{desc}");
    assert!(body["trace_id"].as_str().is_some_and(|t| t.len() == 36));
    assert!(body["correlation_id"].as_str().is_some());
    assert!(body["timestamp"].as_str().is_some());
}

/// Asserts Graph's OData error shape: `error.code`, a message, and `innerError` with the
/// request ids and date.
pub fn assert_odata_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    let inner = &body["error"]["innerError"];
    assert!(
        inner["request-id"].as_str().is_some_and(|r| r.len() == 36),
        "{body}"
    );
    assert!(inner["client-request-id"].as_str().is_some());
    assert!(inner["date"].as_str().is_some());
}
