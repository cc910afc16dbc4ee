//! The emulator's wire protocol over raw HTTPS (no Entra client in between), for the
//! emulator's own tests: device code, token endpoint, Graph calls, and the shapes of Entra's
//! STS and Graph errors. Every call answers an [`Answer`], which a test checks in one line
//! (`.expect(201)`, `.expect_error(404, "Request_ResourceNotFound")`,
//! `.expect_sts_error(400, "invalid_grant", 54005)`). Panics on transport failures (these are
//! test helpers).

use entra_sim::{Faults, Sim, SimConfig, SimInfo};
use reqwest::{Method, RequestBuilder, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

/// The device sign-in's scope, space-separated as the form field takes it.
pub const SCOPE: &str = "https://graph.microsoft.com/.default offline_access openid profile";
/// The client-credentials scope for Microsoft Graph.
pub const GRAPH_DEFAULT: &str = "https://graph.microsoft.com/.default";
/// The device-code grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The `claims` request declaring the `cp1` client capability (Microsoft's "Claims challenges,
/// claims requests and client capabilities"), which our client and MSAL send on every
/// user-token request; Graph sends claims challenges only to clients that declare it.
pub const CP1_CLAIMS: &str = r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#;
/// `Prefer: create-if-missing`, which makes a PATCH by alternate key an upsert.
pub const CREATE_IF_MISSING: [(&str, &str); 1] = [("Prefer", "create-if-missing")];

/// Microsoft's well-known ids, written out here rather than taken from the emulator's seed, so
/// the emulator's tests check its seed against Microsoft's published values.
pub mod ids {
    /// Microsoft Graph's app id.
    pub const GRAPH: &str = "00000003-0000-0000-c000-000000000000";
    /// The Skype and Teams Tenant Admin API's app id.
    pub const TEAMS: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239";
    /// Graph app role `User.Read.All`.
    pub const USER_READ_ALL: &str = "df021288-bdef-4463-88db-98f22de89214";
    /// Graph app role `Group.Read.All`.
    pub const GROUP_READ_ALL: &str = "5b567255-7703-4780-807c-7be8301ae99b";
    /// Graph app role `Application.ReadWrite.All`.
    pub const APPLICATION_READ_WRITE_ALL: &str = "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9";
    /// Directory role template Teams Administrator.
    pub const TEAMS_ADMIN: &str = "69091246-20e8-4a56-aa4d-066075b2a7a8";
    /// The `wids` value every app-only token carries.
    pub const DEFAULT_APP_WID: &str = "0997a1d0-0d1d-4acb-b408-d5ca73121e90";
}

/// One HTTP answer with what was asked, so a failed check names the call.
#[derive(Debug)]
pub struct Answer {
    /// `METHOD path`.
    pub what: String,
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// The body as JSON (`null` when empty).
    pub fn json(&self) -> Value {
        if self.text.is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.what, self.text))
    }

    /// Asserts the status; the JSON body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}: {}", self.what, self.text);
        self.json()
    }

    /// Asserts the status; the body as text.
    #[track_caller]
    pub fn expect_text(self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "{}: {}", self.what, self.text);
        self.text
    }

    /// Asserts the status and Graph's OData error shape with `code` (see
    /// [`assert_odata_error`]); the JSON body.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Value {
        let body = self.expect(status);
        assert_odata_error(&body, code);
        body
    }

    /// Asserts the status and the STS error shape with `error` and `code` (see
    /// [`assert_sts_error`]); the JSON body.
    #[track_caller]
    pub fn expect_sts_error(self, status: u16, error: &str, code: u64) -> Value {
        let body = self.expect(status);
        assert_sts_error(&body, error, code);
        body
    }

    /// The `access_token` of a successful token answer.
    #[track_caller]
    pub fn access_token(self) -> String {
        str_of(&self.expect(200)["access_token"])
    }
}

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

    /// Starts the emulator with Entra's defaults and signs `nick` in: the wire and the access
    /// token.
    pub async fn signed_in(nick: &str) -> (Self, String) {
        let wire = Self::start(Faults::default()).await;
        let token = wire.access_token(nick).await;
        (wire, token)
    }

    /// Starts the emulator with `config`.
    pub async fn start_with(config: SimConfig) -> Self {
        let sim = crate::sim::start_with(config).await.unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([Self::ca(&sim)])
            .build()
            .unwrap();
        let info = sim.info();
        Self { sim, http, info }
    }

    /// The emulator's CA as a reqwest certificate (for a client built differently, say one
    /// that does not follow redirects).
    pub fn ca(sim: &Sim) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap()
    }

    /// `nick@<tenant domain>`.
    pub fn upn(&self, nick: &str) -> String {
        format!("{nick}@{}", self.info.tenant_domain)
    }

    /// The emulator's URL for `path` (a full `https://` URL is kept as it is).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.info.base_url)
        }
    }

    /// Sends `rb` and reads the whole answer.
    pub async fn send(&self, what: String, rb: RequestBuilder) -> Answer {
        let r = rb.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Answer {
            what,
            status,
            headers,
            text,
        }
    }

    /// An unauthenticated GET of `path` (or a full URL).
    pub async fn get_raw(&self, path: &str) -> Answer {
        self.send(format!("GET {path}"), self.http.get(self.url(path)))
            .await
    }

    /// An unauthenticated form POST to `path`.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let rb = self.http.post(self.url(path)).form(form);
        self.send(format!("POST {path}"), rb).await
    }

    /// A tenant's OpenID discovery document (`tenant` an id, a domain, `organizations`...).
    pub async fn discovery(&self, tenant: &str) -> Answer {
        self.get_raw(&format!("/{tenant}/v2.0/.well-known/openid-configuration"))
            .await
    }

    /// Starts a device-code flow at `tenant` for the token app with `scope`: the answer.
    pub async fn device_code_at(&self, tenant: &str, scope: &str) -> Answer {
        let form = [
            ("client_id", self.info.token_app_client_id.as_str()),
            ("scope", scope),
        ];
        self.post_form(&format!("/{tenant}/oauth2/v2.0/devicecode"), &form)
            .await
    }

    /// Starts a device-code flow for the token app with `scope`; the JSON answer.
    pub async fn device_code(&self, scope: &str) -> Value {
        self.device_code_at(&self.info.tenant_id, scope)
            .await
            .expect(200)
    }

    /// POSTs `form` to `tenant`'s token endpoint.
    pub async fn token_at(&self, tenant: &str, form: &[(&str, &str)]) -> Answer {
        self.post_form(&format!("/{tenant}/oauth2/v2.0/token"), form)
            .await
    }

    /// POSTs `form` to the tenant's token endpoint.
    pub async fn token(&self, form: &[(&str, &str)]) -> Answer {
        self.token_at(&self.info.tenant_id, form).await
    }

    /// Redeems the refresh token of the token answer `tok` for the wizard's scopes, at the
    /// tenant's authority, declaring `cp1` ([`CP1_CLAIMS`]).
    pub async fn refresh(&self, tok: &Value) -> Answer {
        let rt = str_of(&tok["refresh_token"]);
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.info.token_app_client_id.as_str()),
            ("refresh_token", rt.as_str()),
            ("scope", SCOPE),
            ("claims", CP1_CLAIMS),
        ];
        self.token(&form).await
    }

    /// One device-code poll at `tenant`, declaring `cp1` ([`CP1_CLAIMS`]) as our client does.
    pub async fn poll_at(&self, tenant: &str, device_code: &str) -> Answer {
        self.poll_with_claims(tenant, device_code, Some(CP1_CLAIMS))
            .await
    }

    /// One device-code poll at `tenant` with `claims` as the `claims` parameter (none: a
    /// client that declares no capability).
    pub async fn poll_with_claims(
        &self,
        tenant: &str,
        device_code: &str,
        claims: Option<&str>,
    ) -> Answer {
        let mut form = vec![
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", self.info.token_app_client_id.as_str()),
            ("device_code", device_code),
        ];
        form.extend(claims.map(|c| ("claims", c)));
        self.token_at(tenant, &form).await
    }

    /// One device-code poll.
    pub async fn poll(&self, device_code: &str) -> Answer {
        self.poll_at(&self.info.tenant_id, device_code).await
    }

    /// Signs `upn` in for the flow `dc` (a device-code answer) and polls once at `tenant`.
    pub async fn complete_at(&self, tenant: &str, dc: &Value, upn: &str) -> Answer {
        self.complete_with_claims(tenant, dc, upn, Some(CP1_CLAIMS))
            .await
    }

    /// [`Self::complete_at`] polling with `claims` as the `claims` parameter.
    async fn complete_with_claims(
        &self,
        tenant: &str,
        dc: &Value,
        upn: &str,
        claims: Option<&str>,
    ) -> Answer {
        self.sim
            .complete_device_login(&str_of(&dc["user_code"]), upn)
            .await
            .unwrap();
        self.poll_with_claims(tenant, &str_of(&dc["device_code"]), claims)
            .await
    }

    /// Full device sign-in as `nick` asking for `scope`; returns the token response.
    pub async fn sign_in_with(&self, nick: &str, scope: &str) -> Value {
        let dc = self.device_code(scope).await;
        let tenant = &self.info.tenant_id;
        self.complete_at(tenant, &dc, &self.upn(nick))
            .await
            .expect(200)
    }

    /// Full device sign-in as `nick`; returns the token response.
    pub async fn sign_in(&self, nick: &str) -> Value {
        self.sign_in_with(nick, SCOPE).await
    }

    /// Full device sign-in as `nick` by a client that declares no capability (no `claims`).
    pub async fn sign_in_without_capabilities(&self, nick: &str) -> Value {
        let dc = self.device_code(SCOPE).await;
        let tenant = &self.info.tenant_id;
        self.complete_with_claims(tenant, &dc, &self.upn(nick), None)
            .await
            .expect(200)
    }

    /// The access token of a device sign-in as `nick` asking for `scope`.
    pub async fn token_with(&self, nick: &str, scope: &str) -> String {
        str_of(&self.sign_in_with(nick, scope).await["access_token"])
    }

    /// The access token of a device sign-in as `nick`.
    pub async fn access_token(&self, nick: &str) -> String {
        self.token_with(nick, SCOPE).await
    }

    /// The `/_sim/devicelogin` control endpoint: `upn` completes `user_code` with `action`
    /// (`approve` when `None`).
    pub async fn sim_login(&self, user_code: &str, upn: &str, action: Option<&str>) -> Answer {
        let mut form = vec![("user_code", user_code), ("upn", upn)];
        form.extend(action.map(|a| ("action", a)));
        self.post_form("/_sim/devicelogin", &form).await
    }

    /// A client-credentials token request.
    pub async fn client_credentials(&self, client_id: &str, secret: &str, scope: &str) -> Answer {
        self.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .await
    }

    /// A client-credentials token request for Microsoft Graph by `app` (an application
    /// object) with `secret`.
    pub async fn app_token(&self, app: &Value, secret: &str) -> Answer {
        let app_id = str_of(&app["appId"]);
        self.client_credentials(&app_id, secret, GRAPH_DEFAULT)
            .await
    }

    /// A Graph call (`path` under `/v1.0`, or a full `https://` URL) with `token`, optional JSON
    /// body and extra headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            self.url(&format!("/v1.0{path}"))
        };
        let what = format!("{method} {path}");
        let mut rb = self.http.request(method, url).bearer_auth(token);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(what, rb).await
    }

    /// `GET path` on Graph with `token`.
    pub async fn get(&self, token: &str, path: &str) -> Answer {
        self.call(Method::GET, path, token, None, &[]).await
    }

    /// `POST path` on Graph with `token` and a JSON body (none when `body` is `null`).
    pub async fn post(&self, token: &str, path: &str, body: Value) -> Answer {
        let body = (!body.is_null()).then_some(body);
        self.call(Method::POST, path, token, body, &[]).await
    }

    /// `PATCH path` on Graph with `token` and a JSON body.
    pub async fn patch(&self, token: &str, path: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, token, Some(body), &[]).await
    }

    /// `PATCH path` with `Prefer: create-if-missing`: the upsert by alternate key.
    pub async fn upsert(&self, token: &str, path: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, token, Some(body), &CREATE_IF_MISSING)
            .await
    }

    /// `DELETE path` on Graph with `token`.
    pub async fn delete(&self, token: &str, path: &str) -> Answer {
        self.call(Method::DELETE, path, token, None, &[]).await
    }

    /// Creates an app + SP + secret as `token`'s user; returns (app, sp, secret).
    pub async fn provision(&self, token: &str, name: &str) -> (Value, Value, String) {
        let app = json!({"displayName": name, "signInAudience": "AzureADMyOrg"});
        let app = self.post(token, "/applications", app).await.expect(201);
        let sp = json!({"appId": app["appId"]});
        let sp = self.post(token, "/servicePrincipals", sp).await.expect(201);
        let pw = self
            .add_password(token, &app, json!({"displayName": "svc"}))
            .await;
        (app, sp, str_of(&pw.expect(200)["secretText"]))
    }

    /// `POST /applications/{id}/addPassword` for `app` (an application object) with
    /// `credential` as the `passwordCredential` (none when `null`).
    pub async fn add_password(&self, token: &str, app: &Value, credential: Value) -> Answer {
        let path = format!("/applications/{}/addPassword", str_of(&app["id"]));
        let body = if credential.is_null() {
            json!({})
        } else {
            json!({ "passwordCredential": credential })
        };
        self.post(token, &path, body).await
    }

    /// Assigns app role `role` of the resource service principal `resource` to `principal`
    /// (`POST /servicePrincipals/{resource}/appRoleAssignedTo`).
    pub async fn assign_role(
        &self,
        token: &str,
        resource: &str,
        principal: &Value,
        role: &str,
    ) -> Answer {
        let path = format!("/servicePrincipals/{resource}/appRoleAssignedTo");
        let body = json!({"principalId": principal, "resourceId": resource, "appRoleId": role});
        self.post(token, &path, body).await
    }

    /// Microsoft Graph's service principal id, read with `token`.
    pub async fn graph_sp_id(&self, token: &str) -> String {
        let path =
            "/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')?$select=id,appRoles";
        str_of(&self.get(token, path).await.expect(200)["id"])
    }
}

/// A JSON string's value (panics naming the value when it is not a string).
#[track_caller]
pub fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// The length of a Graph collection's `value` array.
#[track_caller]
pub fn count(body: &Value) -> usize {
    body["value"]
        .as_array()
        .unwrap_or_else(|| panic!("no value array: {body}"))
        .len()
}

/// A JWT's claims, unverified.
pub fn claims(token: &str) -> Value {
    entra_sim::jwt::decode_claims_unverified(token).unwrap()
}

/// The claims of a token answer's `access_token`.
pub fn access_claims(token_answer: &Value) -> Value {
    claims(&str_of(&token_answer["access_token"]))
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
