//! The emulator's wire protocol over raw HTTPS (no Entra client in between), for the
//! emulator's own tests: device code, token endpoint, Graph calls, and the shapes of Entra's
//! STS and Graph errors. Panics on transport failures (these are test helpers).

use entra_sim::{Faults, Sim, SimConfig, SimInfo};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

/// The device sign-in's scope, space-separated as the form field takes it.
pub const SCOPE: &str = "https://graph.microsoft.com/.default offline_access openid profile";

/// The emulator with a raw HTTPS client trusting its CA.
pub struct Wire {
    /// The running emulator.
    pub sim: Sim,
    /// An HTTPS client trusting only the emulator's CA.
    pub http: reqwest::Client,
    /// The seeded tenant and users.
    pub info: SimInfo,
}

impl Wire {
    /// Starts the emulator with exactly `faults` (Entra's 5 s poll interval unless set).
    pub async fn start(faults: Faults) -> Self {
        Self::start_with(SimConfig {
            faults,
            ..SimConfig::default()
        })
        .await
    }

    /// Starts the emulator with `config`.
    pub async fn start_with(config: SimConfig) -> Self {
        let sim = crate::sim::start_with(config).await.unwrap();
        let ca = reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .unwrap();
        let info = sim.info();
        Self { sim, http, info }
    }

    /// `nick@<tenant domain>`.
    pub fn upn(&self, nick: &str) -> String {
        format!("{nick}@{}", self.info.tenant_domain)
    }

    /// The emulator's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.info.base_url)
    }

    /// Starts a device-code flow for the token app with `scope`; the JSON answer.
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

    /// POSTs `form` to the tenant's token endpoint: status and JSON body.
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

    /// One device-code poll.
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

    /// The access token of a device sign-in as `nick`.
    pub async fn access_token(&self, nick: &str) -> String {
        self.sign_in(nick).await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A client-credentials token request.
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

    /// A Graph call (`path` under `/v1.0`, or a full `https://` URL) with `token`, optional JSON
    /// body and extra headers: status, headers and JSON body (`null` when empty).
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

    /// [`Wire::graph_full`] without extra headers: status and JSON body.
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
        let app = json!({"displayName": name, "signInAudience": "AzureADMyOrg"});
        let app = self.post_expecting("/applications", token, app, 201).await;
        let sp = json!({"appId": app["appId"]});
        let sp = self
            .post_expecting("/servicePrincipals", token, sp, 201)
            .await;
        let path = format!("/applications/{}/addPassword", app["id"].as_str().unwrap());
        let pw = json!({"passwordCredential": {"displayName": "svc"}});
        let pw = self.post_expecting(&path, token, pw, 200).await;
        (app, sp, pw["secretText"].as_str().unwrap().to_string())
    }

    /// POSTs `body` to Graph `path` with `token`; the answer must be `status`.
    async fn post_expecting(&self, path: &str, token: &str, body: Value, status: u16) -> Value {
        let (s, v) = self.graph(Method::POST, path, token, Some(body)).await;
        assert_eq!(s.as_u16(), status, "POST {path}: {v}");
        v
    }

    /// Microsoft Graph's service principal id, read with `token`.
    pub async fn graph_sp_id(&self, token: &str) -> String {
        let (s, v) = self
            .graph(Method::GET, "/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')?$select=id,appRoles", token, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["id"].as_str().unwrap().to_string()
    }
}

/// A JWT's claims, unverified.
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
