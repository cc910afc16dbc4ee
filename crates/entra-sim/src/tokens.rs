//! Scope parsing and the claims of the tokens the STS issues.

use serde_json::{Value, json};

use crate::SimError;
use crate::model::{Directory, ServicePrincipal, User};
use crate::seed::{GRAPH_APP_ID, OIDC_SCOPES, TEAMS_APP_ID};
use crate::state::{Shared, new_guid, random_key, unix_now};

/// Lifetime of access tokens, in seconds (Entra hands out 60–90 minutes; 3599 is what it
/// reports), unless a fault sets another ([`crate::Faults::access_token_lifetime_s`]).
pub const ACCESS_TOKEN_LIFETIME: i64 = 3599;

/// Lifetime of delegated access tokens for a client that declared the `cp1` capability (a
/// Continuous Access Evaluation session), in seconds: "For some resource APIs, because risk
/// and policy are evaluated in real time, CAE can substantially increase token lifetime up to
/// 28 hours" (Learn, access-tokens / concept-continuous-access-evaluation); revocation then
/// reaches the client as Graph's claims challenge, not as the token's end. A fixed day here,
/// inside Microsoft's range, so runs replay exactly.
pub const CAE_ACCESS_TOKEN_LIFETIME: i64 = 86_399;

/// The default member role every member user's `wids` carries in Entra.
const MEMBER_ROLE: &str = "b79fbf4d-3ef9-4689-8143-76b194e85509";

/// What a B2B guest's `wids` carries instead of [`MEMBER_ROLE`]. Not in Learn's claims
/// reference; Microsoft's support wiki "How to check user permissions" lists it as "B2B guest".
const GUEST_ROLE: &str = "13bd1c72-6f4a-4dcf-985f-18d3b80f208a";

/// A resource (API) a token is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Its service principal in the tenant.
    pub sp_id: String,
    /// Its client id.
    pub app_id: String,
    /// `aud` of tokens for it.
    pub aud: String,
}

/// A parsed `scope` parameter.
#[derive(Debug, Clone, Default)]
pub struct Scopes {
    /// The one resource the permissions are for (Graph when only OIDC scopes were asked).
    pub resource: Option<Resource>,
    /// Permission values on that resource (`.default` expanded by the caller).
    pub perms: Vec<String>,
    /// Whether `.default` was asked for.
    pub default: bool,
    /// OpenID Connect scopes asked for (openid, profile, email, offline_access).
    pub oidc: Vec<String>,
}

/// Finds the resource that a scope prefix (`https://graph.microsoft.com`, an app id, `api://…`) names.
pub fn resource_for(dir: &Directory, prefix: &str) -> Option<Resource> {
    let p = prefix.trim_end_matches('/');
    let (app_id, aud) = match p.to_ascii_lowercase().as_str() {
        "https://graph.microsoft.com" | "graph.microsoft.com" => (
            GRAPH_APP_ID.to_string(),
            "https://graph.microsoft.com".to_string(),
        ),
        GRAPH_APP_ID => (GRAPH_APP_ID.to_string(), GRAPH_APP_ID.to_string()),
        TEAMS_APP_ID => (TEAMS_APP_ID.to_string(), TEAMS_APP_ID.to_string()),
        other => {
            let id = other.strip_prefix("api://").unwrap_or(other).to_string();
            (id.clone(), p.to_string())
        }
    };
    let sp = dir.sp_by_app_id(&app_id)?;
    Some(Resource {
        sp_id: sp.id.clone(),
        app_id: sp.app_id.clone(),
        aud,
    })
}

/// Parses a space-separated `scope` parameter. Bare permission names mean Microsoft Graph,
/// as in Entra. Errors carry the offending scope for AADSTS70011.
pub fn parse_scopes(dir: &Directory, scope: &str) -> Result<Scopes, String> {
    let mut out = Scopes::default();
    for s in scope.split_whitespace() {
        if OIDC_SCOPES.contains(&s) {
            out.oidc.push(s.to_string());
            continue;
        }
        let (prefix, perm) = match s.rfind('/') {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => ("https://graph.microsoft.com", s),
        };
        let res = resource_for(dir, prefix).ok_or_else(|| s.to_string())?;
        if let Some(existing) = &out.resource
            && existing.app_id != res.app_id
        {
            return Err(s.to_string());
        }
        if perm == ".default" {
            out.default = true;
        } else {
            let sp = dir.sp(&res.sp_id).ok_or_else(|| s.to_string())?;
            let known = sp.oauth2_permission_scopes.iter().any(|p| {
                p["value"]
                    .as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case(perm))
            });
            if !known {
                return Err(s.to_string());
            }
            let canonical = sp
                .oauth2_permission_scopes
                .iter()
                .find_map(|p| p["value"].as_str().filter(|v| v.eq_ignore_ascii_case(perm)))
                .unwrap_or(perm)
                .to_string();
            if !out.perms.contains(&canonical) {
                out.perms.push(canonical);
            }
        }
        out.resource = Some(res);
    }
    if out.resource.is_none() {
        out.resource = resource_for(dir, "https://graph.microsoft.com");
    }
    Ok(out)
}

/// The value Entra puts in every app-only token's `wids`, next to the service principal's
/// directory roles (entra-reference §6). It is not an assignable directory role.
const APP_ONLY_DEFAULT_WID: &str = "0997a1d0-0d1d-4acb-b408-d5ca73121e90";

/// Role template ids for `wids`: the principal's directory roles in `dir`, plus the implicit
/// `default` (the member or guest role for users, the app-only default for service principals).
fn wids(dir: &Directory, principal_id: &str, default: &str) -> Vec<String> {
    let mut w = dir.roles_of(principal_id);
    w.push(default.to_string());
    w
}

/// A user's `wids`: its directory roles in `dir` (a guest's in the resource tenant) and the
/// member or guest default.
fn user_wids(dir: &Directory, user: &User) -> Vec<String> {
    let default = if user.home.is_some() {
        GUEST_ROLE
    } else {
        MEMBER_ROLE
    };
    wids(dir, &user.id, default)
}

/// Turns a member's user-token claims into a B2B guest's (Learn "Understand user tokens in
/// Microsoft Entra B2B collaboration"): `idp` names the home tenant's issuer, `unique_name` and
/// `email` the home account, and there is no `upn` (the guest's `#EXT#` UPN is no sign-in name).
fn as_guest(claims: &mut Value, user: &User) {
    let (Some(home), Value::Object(m)) = (&user.home, claims) else {
        return;
    };
    m.remove("upn");
    m.insert("unique_name".into(), json!(home.upn));
    m.insert("email".into(), json!(home.upn));
    m.insert("idp".into(), json!(v1_issuer(&home.tenant_id)));
}

/// A tenant's v1.0 issuer. Graph and Teams tokens are v1.0 tokens, whose issuer is
/// sts.windows.net even when requested from the v2.0 endpoint; a guest's tokens name its home
/// tenant's as `idp`.
pub fn v1_issuer(tid: &str) -> String {
    format!("https://sts.windows.net/{tid}/")
}

/// Start of the emulator's opaque access tokens (Microsoft's own opaque tokens start alike).
const OPAQUE_PREFIX: &str = "EwA";

/// What the STS hands out as the access token for `resource`: the signed JWT, or, when
/// `opaque` (`Faults::opaque_access_tokens`) and the resource is one of Microsoft's own APIs,
/// an opaque string (no dots; its content is the emulator's own business) that only the
/// emulator's Graph reads back ([`jwt_of`]).
pub fn issued_access_token(jwt: String, resource: &Resource, opaque: bool) -> String {
    let microsoft_api = [GRAPH_APP_ID, TEAMS_APP_ID]
        .iter()
        .any(|id| resource.app_id.eq_ignore_ascii_case(id));
    if opaque && microsoft_api {
        use base64::Engine;
        let inner = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jwt);
        format!("{OPAQUE_PREFIX}{inner}")
    } else {
        jwt
    }
}

/// The JWT behind an access token the emulator issued, opaque or not; `None` for an opaque
/// string it did not make.
pub fn jwt_of(token: &str) -> Option<String> {
    use base64::Engine;
    match token.strip_prefix(OPAQUE_PREFIX) {
        Some(inner) if !token.contains('.') => {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(inner)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        _ => Some(token.to_owned()),
    }
}

impl Shared {
    /// The v2.0 issuer of this emulator for the tenant (id tokens, discovery).
    pub fn v2_issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.base_url)
    }

    /// A delegated access token for `user` calling `resource` through client `client_id`,
    /// which declared `capabilities` (see [`client_capabilities`]), valid for `lifetime` seconds.
    #[allow(clippy::too_many_arguments)]
    pub fn user_access_token(
        &self,
        dir: &Directory,
        user: &User,
        client_id: &str,
        client_name: &str,
        resource: &Resource,
        perms: &[String],
        capabilities: &[String],
        lifetime: i64,
    ) -> Result<String, SimError> {
        let mut claims = json!({
            "acct": 0, "acr": "1",
            "amr": ["pwd", "mfa"],
            "app_displayname": client_name,
            "appid": client_id,
            "appidacr": "0",
            "family_name": user.surname,
            "given_name": user.given_name,
            "idtyp": "user",
            "ipaddr": "127.0.0.1",
            "name": user.display_name,
            "oid": user.id,
            "platf": "14",
            "puid": format!("{:016X}", u64::from_str_radix(&user.id.replace('-', "")[..15], 16).unwrap_or(0)),
            "scp": perms.join(" "),
            "sid": new_guid(),
            "sub": random_key(32),
            "unique_name": user.upn,
            "upn": user.upn,
            "wids": user_wids(dir, user),
            "xms_idrel": "1 20",
        });
        as_guest(&mut claims, user);
        if !capabilities.is_empty() {
            claims["xms_cc"] = json!(capabilities);
        }
        self.access_token(dir, resource, claims, lifetime)
    }

    /// An app-only access token for service principal `sp` calling `resource`, valid for
    /// `lifetime` seconds; `without_wids`: [`crate::Faults::app_tokens_without_wids`].
    pub fn app_access_token(
        &self,
        dir: &Directory,
        sp: &ServicePrincipal,
        resource: &Resource,
        roles: &[String],
        lifetime: i64,
        without_wids: bool,
    ) -> Result<String, SimError> {
        let mut claims = json!({
            "app_displayname": sp.display_name,
            "appid": sp.app_id,
            "appidacr": "1",
            "idp": v1_issuer(&dir.tenant.id),
            "idtyp": "app",
            "oid": sp.id,
            "sub": sp.id,
            "wids": wids(dir, &sp.id, APP_ONLY_DEFAULT_WID),
            "xms_idrel": "7 24",
        });
        if without_wids && let Some(c) = claims.as_object_mut() {
            c.remove("wids");
        }
        // Entra omits `roles` entirely when nothing is granted.
        if !roles.is_empty() {
            claims["roles"] = json!(roles);
        }
        self.access_token(dir, resource, claims, lifetime)
    }

    /// Signs a v1.0 access token for `resource`: the claims every such token carries (audience,
    /// issuer, `lifetime` in seconds, tenant, unique ids) plus the caller's `claims` (an object).
    fn access_token(
        &self,
        dir: &Directory,
        resource: &Resource,
        claims: Value,
        lifetime: i64,
    ) -> Result<String, SimError> {
        let now = unix_now();
        let tid = &dir.tenant.id;
        let mut all = json!({
            "aud": resource.aud,
            "iss": v1_issuer(tid),
            "iat": now, "nbf": now, "exp": now + lifetime,
            "aio": random_key(24),
            "rh": random_key(16),
            "tenant_region_scope": "EU",
            "tid": tid,
            "uti": random_key(16),
            "ver": "1.0",
            "xms_tcdt": now - 86_400 * 400,
        });
        if let (Some(all), Value::Object(own)) = (all.as_object_mut(), claims) {
            all.extend(own);
        }
        self.key.sign(&all)
    }

    /// A v2.0 id token for `user`, audience `client_id`.
    pub fn id_token(
        &self,
        dir: &Directory,
        user: &User,
        client_id: &str,
    ) -> Result<String, SimError> {
        let now = unix_now();
        let tid = &dir.tenant.id;
        let mut claims = json!({
            "aud": client_id,
            "iss": self.v2_issuer(tid),
            "iat": now, "nbf": now, "exp": now + ACCESS_TOKEN_LIFETIME,
            "name": user.display_name,
            "oid": user.id,
            "preferred_username": user.sign_in_name(),
            "rh": random_key(16),
            "sub": crate::state::sha256_hex(&format!("{}:{client_id}", user.id))[..43].to_string(),
            "tid": tid,
            "uti": random_key(16),
            "ver": "2.0",
            "wids": user_wids(dir, user),
        });
        if let Some(home) = &user.home {
            // A guest's: who authenticated it (the id-token claims reference, `idp`).
            claims["idp"] = json!(v1_issuer(&home.tenant_id));
        }
        self.key.sign(&claims)
    }
}

/// `client_info` as MSAL expects it: base64url JSON of `uid` (object id) and `utid` (tenant id)
/// of the signed-in account's home account ([`crate::model::User::home_ids`]: a guest's is the
/// user in its home tenant, which MSAL's home account id names).
pub fn client_info((user_id, tid): (&str, &str)) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"uid": user_id, "utid": tid}).to_string())
}

/// The `scope` value a token response reports.
pub fn granted_scope_string(perms: &[String], oidc: &[String]) -> String {
    let mut all: Vec<String> = perms.to_vec();
    for o in oidc {
        if !all.contains(o) {
            all.push(o.clone());
        }
    }
    all.join(" ")
}

/// A JSON value that holds a token response for an access token valid `lifetime` seconds.
pub fn token_response(
    lifetime: i64,
    access_token: String,
    scope: Option<String>,
    refresh_token: Option<String>,
    id_token: Option<String>,
    client_info: Option<String>,
) -> Value {
    let mut v = json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    if let Some(s) = scope {
        v["scope"] = json!(s);
    }
    if let Some(r) = refresh_token {
        v["refresh_token"] = json!(r);
    }
    if let Some(i) = id_token {
        v["id_token"] = json!(i);
    }
    if let Some(c) = client_info {
        v["client_info"] = json!(c);
    }
    v
}

/// The client capabilities a token request declares in its `claims` parameter, as Microsoft's
/// "Claims challenges, claims requests and client capabilities" describes it
/// (`{"access_token":{"xms_cc":{"values":["cp1"]}}}`, possibly merged with a challenge's claims
/// request): the `values`, none when there is no `claims` or it declares none. `Err` (what is
/// wrong) for a `claims` that is not a JSON object.
pub fn client_capabilities(claims: Option<&str>) -> Result<Vec<String>, String> {
    let Some(text) = claims.filter(|c| !c.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let request: Value = serde_json::from_str(text)
        .map_err(|e| format!("the claims parameter is not valid JSON ({e})"))?;
    if !request.is_object() {
        return Err("the claims parameter is not a JSON object".into());
    }
    Ok(request["access_token"]["xms_cc"]["values"]
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Whether a delegated access token's claims say its client handles claims challenges
/// (`xms_cc` holds `cp1`): Graph sends Continuous Access Evaluation's and Conditional Access's
/// claims challenges only to such clients; others keep their token until it expires and meet
/// the policy or the revocation when they renew it.
pub fn handles_claims_challenges(claims: &Value) -> bool {
    claims["xms_cc"].as_array().is_some_and(|values| {
        values
            .iter()
            .any(|v| v.as_str().is_some_and(|c| c.eq_ignore_ascii_case("cp1")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::seed_directory;

    #[test]
    fn client_capabilities_are_read_from_the_claims_request() {
        // (claims parameter, capabilities declared or None for a refusal)
        let cases: [(Option<&str>, Option<Vec<&str>>); 8] = [
            (None, Some(vec![])),
            (Some("  "), Some(vec![])),
            (
                Some(r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#),
                Some(vec!["cp1"]),
            ),
            // A challenge's claims request merged with the capabilities, as MSAL sends it.
            (
                Some(
                    r#"{"access_token":{"nbf":{"essential":true,"value":"1"},"xms_cc":{"values":["CP1","x"]}}}"#,
                ),
                Some(vec!["CP1", "x"]),
            ),
            (
                Some(r#"{"id_token":{"auth_time":{"essential":true}}}"#),
                Some(vec![]),
            ),
            (Some("[]"), None),
            (Some("null"), None),
            (Some("{"), None),
        ];
        for (claims, want) in cases {
            let got = client_capabilities(claims).ok();
            let want = want.map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(got, want, "{claims:?}");
        }
        assert!(handles_claims_challenges(&json!({"xms_cc": ["CP1"]})));
        assert!(!handles_claims_challenges(&json!({"xms_cc": ["cp2"]})));
        assert!(!handles_claims_challenges(&json!({})));
    }

    #[test]
    fn bare_and_prefixed_graph_scopes_parse_to_graph() {
        let d = seed_directory("contoso.onmicrosoft.com", "2026-01-01T00:00:00Z");
        let s = parse_scopes(
            &d,
            "https://graph.microsoft.com/Application.ReadWrite.All user.read offline_access openid",
        )
        .unwrap();
        assert_eq!(s.resource.unwrap().app_id, GRAPH_APP_ID);
        assert_eq!(s.perms, vec!["Application.ReadWrite.All", "User.Read"]);
        assert_eq!(s.oidc, vec!["offline_access", "openid"]);
    }

    #[test]
    fn unknown_scope_and_mixed_resources_are_rejected() {
        let d = seed_directory("contoso.onmicrosoft.com", "2026-01-01T00:00:00Z");
        assert_eq!(parse_scopes(&d, "Made.Up").unwrap_err(), "Made.Up");
        assert!(parse_scopes(&d, &format!("User.Read {TEAMS_APP_ID}/.default")).is_err());
        let t = parse_scopes(&d, &format!("{TEAMS_APP_ID}/.default")).unwrap();
        assert!(t.default);
        assert_eq!(t.resource.unwrap().aud, TEAMS_APP_ID);
    }
}
