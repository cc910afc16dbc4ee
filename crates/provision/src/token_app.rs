//! The provider's token app: the multi-tenant public client every customer admin's device-code
//! sign-in uses. [`manifest`] is the Microsoft Graph `application` body an operator creates it
//! with (`POST /applications`, `az rest`, Graph Explorer); [`compare`] checks an existing app
//! against the same rules, as a pure function; [`read_app`] fetches one by client id
//! (`GET /applications(appId='…')`); [`client_id_problem`] is the one rule for the configured
//! id (used by `onboard config check` and at `onboard serve` start-up).
//!
//! Everything is derived from [`SIGN_IN_SCOPES`]: the manifest lists exactly those delegated
//! Microsoft Graph permissions, by the ids Microsoft publishes (entra-reference.md §3.3).
//! Nothing needs granting in the provider's tenant: each customer admin consents at sign-in.

use entra_client::graph::types::Application;
use entra_client::{EntraClient, MICROSOFT_GRAPH_APP_ID, OpContext};
use onboard_core::text::is_guid;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::error::ProvisionError;
use crate::signin::SIGN_IN_SCOPES;

/// The audience the token app needs: work or school accounts of any organisation, since every
/// customer signs in from their own tenant.
pub const AUDIENCE: &str = "AzureADMultipleOrgs";

/// The redirect URI Microsoft documents for native (public) clients. The device-code flow does
/// not use it, but the portal's "Mobile and desktop applications" platform needs one and tools
/// that fall back to an interactive sign-in expect it.
pub const NATIVE_CLIENT_REDIRECT_URI: &str =
    "https://login.microsoftonline.com/common/oauth2/nativeclient";

/// Delegated (scope) ids of Microsoft Graph permissions, from Microsoft's permission table
/// (microsoft-graph-docs-contrib `concepts/includes/permissions-ids.md`, mirrored in
/// entra-reference.md §3.3). Ids are the same in every tenant. More than the token app needs,
/// so [`SIGN_IN_SCOPES`] stays the one list of what it needs.
const GRAPH_DELEGATED_SCOPE_IDS: &[(&str, &str)] = &[
    ("User.Read", "e1fe6dd8-ba31-4d61-89e7-88639da4683d"),
    ("User.Read.All", "a154be20-db9c-4678-8ab7-66f6cc099a59"),
    ("User.ReadWrite.All", "204e0828-b5ca-4ad8-b9f3-f32a958e7cc4"),
    ("Group.Read.All", "5f8c59db-677d-491f-a6b8-5f174b11ec1d"),
    (
        "Group.ReadWrite.All",
        "4e46008b-f24c-477d-8fff-7bb4ec7aafe0",
    ),
    (
        "GroupMember.Read.All",
        "bc024368-1153-4739-b217-4326f2e966d0",
    ),
    ("Directory.Read.All", "06da0dbc-49e2-44d2-8312-53f166ab848a"),
    (
        "Directory.ReadWrite.All",
        "c5366453-9fb0-48a5-a156-24f0c49a4b84",
    ),
    (
        "Directory.AccessAsUser.All",
        "0e263e50-5827-48a4-b97c-d940288653c7",
    ),
    (
        "Organization.Read.All",
        "4908d5b9-3fb2-4b1e-9336-1888b7937185",
    ),
    (
        "RoleManagement.Read.Directory",
        "741c54c3-0c1e-44a1-818b-3f97ab4e8c83",
    ),
    (
        "RoleManagement.ReadWrite.Directory",
        "d01b97e9-cbc0-49fe-810a-750afd5527a3",
    ),
    (
        "RoleManagement.Read.All",
        "48fec646-b2ba-4019-8681-8eb31435aded",
    ),
    (
        "Application.Read.All",
        "c79f8feb-a9db-4090-85f9-90d820caa0eb",
    ),
    (
        "Application.ReadWrite.All",
        "bdfbf15f-ee85-4955-8675-146e8e5296b5",
    ),
    (
        "AppRoleAssignment.ReadWrite.All",
        "84bccea3-f856-4a8a-967b-dbe0a3d53a64",
    ),
    (
        "DelegatedPermissionGrant.ReadWrite.All",
        "41ce6ca6-6826-4807-84f1-1c82854f7ee5",
    ),
    ("Domain.Read.All", "2f9ee017-59c1-4f1d-9472-bd5529a7b311"),
    ("openid", "37f7f235-527c-4136-accd-4a02d197296e"),
    ("profile", "14dad69e-099b-42c9-810b-d002981feec1"),
    ("email", "64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0"),
    ("offline_access", "7427e0e9-2fba-42fe-b0c0-848c9e6a8182"),
];

/// The delegated Microsoft Graph permission id of `name` (case-insensitive, as Entra compares
/// permission values), if the table knows it.
pub fn graph_scope_id(name: &str) -> Option<&'static str> {
    onboard_core::table::id_of(GRAPH_DELEGATED_SCOPE_IDS, name)
}

/// The permission name of a delegated Microsoft Graph scope id, if the table knows it.
pub fn graph_scope_name(id: &str) -> Option<&'static str> {
    onboard_core::table::name_of(GRAPH_DELEGATED_SCOPE_IDS, id)
}

/// The default display name of the token app in the manifest (`--name` replaces it). The
/// consented service principal in each customer tenant carries this name, and so does the
/// temporary enterprise app the onboarding removes: the vendor's convention is
/// `<server>-<provider>-token`.
pub const DEFAULT_NAME: &str = "Onboard token app";

/// The Microsoft Graph `application` body that creates the token app: `displayName`,
/// `signInAudience` [`AUDIENCE`], "allow public client flows" (`isFallbackPublicClient`), the
/// native-client redirect URI and the `browser_redirect_uris` given (a server's wizard's
/// `/wizard/signed-in`, where a browser sign-in comes back; each as
/// [`registered_redirect_uri`] writes it, once), and
/// `requiredResourceAccess` with exactly [`SIGN_IN_SCOPES`] as delegated Microsoft Graph
/// permissions. Accepted by `POST /applications`.
pub fn manifest(
    display_name: &str,
    browser_redirect_uris: &[&str],
) -> Result<Value, ProvisionError> {
    let mut access = Vec::with_capacity(SIGN_IN_SCOPES.len());
    for name in SIGN_IN_SCOPES {
        let id = graph_scope_id(name).ok_or_else(|| {
            ProvisionError::Profile(format!(
                "token app manifest: no Microsoft Graph permission id known for {name:?}"
            ))
        })?;
        access.push(json!({ "id": id, "type": "Scope" }));
    }
    let mut redirect_uris = vec![NATIVE_CLIENT_REDIRECT_URI.to_owned()];
    for uri in browser_redirect_uris
        .iter()
        .map(|u| registered_redirect_uri(u))
    {
        if !redirect_uris.contains(&uri) {
            redirect_uris.push(uri);
        }
    }
    Ok(json!({
        "displayName": display_name,
        "signInAudience": AUDIENCE,
        "isFallbackPublicClient": true,
        "publicClient": { "redirectUris": redirect_uris },
        "requiredResourceAccess": [{
            "resourceAppId": MICROSOFT_GRAPH_APP_ID,
            "resourceAccess": access,
        }],
    }))
}

/// What [`compare`] looks at, read from an application object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppFacts {
    /// Client id.
    pub app_id: String,
    /// Display name.
    pub display_name: String,
    /// `signInAudience` as Graph reports it.
    pub sign_in_audience: Option<String>,
    /// `isFallbackPublicClient` ("Allow public client flows"); `None` when Graph says null
    /// (which Entra treats as off).
    pub public_client_flows: Option<bool>,
    /// `publicClient.redirectUris`.
    pub public_client_redirect_uris: Vec<String>,
    /// Ids of the delegated Microsoft Graph permissions in `requiredResourceAccess`.
    pub graph_scope_ids: Vec<String>,
}

impl AppFacts {
    /// The facts of `app` (read with [`read_app`], whose `$select` includes every one).
    pub fn from_application(app: &Application) -> Self {
        let graph_scope_ids = app
            .required_resource_access
            .iter()
            .filter(|r| {
                r.resource_app_id
                    .eq_ignore_ascii_case(MICROSOFT_GRAPH_APP_ID)
            })
            .flat_map(|r| r.resource_access.iter())
            .filter(|a| a.kind == "Scope")
            .map(|a| a.id.clone())
            .collect();
        let public_client_redirect_uris = app
            .extra
            .get("publicClient")
            .and_then(|p| p.get("redirectUris"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            app_id: app.app_id.clone(),
            display_name: app.display_name.clone().unwrap_or_default(),
            sign_in_audience: app.sign_in_audience.clone(),
            public_client_flows: app
                .extra
                .get("isFallbackPublicClient")
                .and_then(Value::as_bool),
            public_client_redirect_uris,
            graph_scope_ids,
        }
    }
}

/// How one rule came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// As the manifest has it.
    Ok,
    /// Works, but differs from the manifest.
    Warn,
    /// Customer sign-ins or onboardings will fail.
    Fail,
}

impl Verdict {
    /// `OK`, `WARN` or `FAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One rule's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleResult {
    /// The rule (`public_client_flows`, `sign_in_audience`, `graph_scopes`, `redirect_uri`).
    pub rule: &'static str,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to change, when it is not OK.
    pub fix: Option<String>,
}

impl RuleResult {
    fn ok(rule: &'static str, detail: impl Into<String>) -> Self {
        Self {
            rule,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(
        rule: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            rule,
            verdict,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Checks `app` against the manifest's rules, one result per rule, in a fixed order:
/// public client flows on, a multi-organisation audience, every delegated Graph permission of
/// [`SIGN_IN_SCOPES`] listed, the native-client redirect URI present (a warning only: the
/// device-code flow does not use it).
pub fn compare(app: &AppFacts, browser_redirect_uri: Option<&str>) -> Vec<RuleResult> {
    let id = &app.app_id;
    let mut out = Vec::with_capacity(5);
    out.push(match app.public_client_flows {
        Some(true) => RuleResult::ok("public_client_flows", "allowed (isFallbackPublicClient: true)"),
        other => RuleResult::bad(
            "public_client_flows",
            Verdict::Fail,
            format!(
                "off (isFallbackPublicClient: {}): Entra refuses the device-code sign-in with AADSTS7000218",
                other.map_or("null".to_owned(), |b| b.to_string())
            ),
            format!(
                "portal: App registrations > the app > Authentication > Advanced settings > Allow public client flows: Yes; or: az ad app update --id {id} --is-fallback-public-client true"
            ),
        ),
    });
    let audience = app.sign_in_audience.as_deref().unwrap_or("");
    out.push(match audience {
        AUDIENCE => RuleResult::ok("sign_in_audience", AUDIENCE),
        "AzureADandPersonalMicrosoftAccount" => RuleResult::bad(
            "sign_in_audience",
            Verdict::Warn,
            format!("{audience}: customers can sign in, but personal Microsoft accounts may too"),
            format!("az ad app update --id {id} --sign-in-audience {AUDIENCE}"),
        ),
        other => RuleResult::bad(
            "sign_in_audience",
            Verdict::Fail,
            format!(
                "{}: admins of other tenants cannot sign in (AADSTS50194)",
                if other.is_empty() { "unset" } else { other }
            ),
            format!(
                "portal: the app > Authentication > Supported account types > Accounts in any organizational directory; or: az ad app update --id {id} --sign-in-audience {AUDIENCE}"
            ),
        ),
    });
    let missing: Vec<&str> = SIGN_IN_SCOPES
        .iter()
        .copied()
        .filter(|name| {
            let want = graph_scope_id(name);
            !app.graph_scope_ids
                .iter()
                .any(|have| want.is_some_and(|w| w.eq_ignore_ascii_case(have)))
        })
        .collect();
    let extra: Vec<String> = app
        .graph_scope_ids
        .iter()
        .filter(|have| {
            !SIGN_IN_SCOPES
                .iter()
                .any(|n| graph_scope_id(n).is_some_and(|w| w.eq_ignore_ascii_case(have)))
        })
        .map(|have| graph_scope_name(have).map_or_else(|| have.clone(), str::to_owned))
        .collect();
    out.push(if missing.is_empty() {
        let mut detail = format!(
            "all {} delegated Microsoft Graph permissions listed",
            SIGN_IN_SCOPES.len()
        );
        if !extra.is_empty() {
            detail.push_str(&format!(" (also {}; not needed)", extra.join(", ")));
        }
        RuleResult::ok("graph_scopes", detail)
    } else {
        let ids: Vec<&str> = missing.iter().filter_map(|n| graph_scope_id(n)).collect();
        RuleResult::bad(
            "graph_scopes",
            Verdict::Fail,
            format!("missing delegated Microsoft Graph permissions: {}", missing.join(", ")),
            format!(
                "portal: the app > API permissions > Add a permission > Microsoft Graph > Delegated permissions: {}; or: az ad app permission add --id {id} --api {MICROSOFT_GRAPH_APP_ID} --api-permissions {} (grant nothing: customers consent at sign-in)",
                missing.join(", "),
                ids.iter().map(|i| format!("{i}=Scope")).collect::<Vec<_>>().join(" ")
            ),
        )
    });
    out.push(
        if app
            .public_client_redirect_uris
            .iter()
            .any(|u| u.eq_ignore_ascii_case(NATIVE_CLIENT_REDIRECT_URI))
        {
            RuleResult::ok("redirect_uri", NATIVE_CLIENT_REDIRECT_URI)
        } else {
            RuleResult::bad(
                "redirect_uri",
                Verdict::Warn,
                format!(
                    "no mobile/desktop redirect URI {NATIVE_CLIENT_REDIRECT_URI} (the device-code flow works without it)"
                ),
                format!(
                    "portal: the app > Authentication > Add a platform > Mobile and desktop applications > {NATIVE_CLIENT_REDIRECT_URI}; or: az ad app update --id {id} --public-client-redirect-uris {NATIVE_CLIENT_REDIRECT_URI}"
                ),
            )
        },
    );
    if let Some(uri) = browser_redirect_uri {
        out.push(browser_redirect_rule(app, uri));
    }
    out
}

/// The worst verdict of `results` (`Ok` when empty).
pub fn worst(results: &[RuleResult]) -> Verdict {
    results
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Ok)
}

/// `GET /applications(appId='{app_id}')` with `token` (a delegated Graph token of an admin
/// of the tenant that owns the app, with `Application.Read.All` or more). `Ok(None)` when
/// Graph says 404 (no such app in that tenant); the Graph `request-id` of the answer comes
/// along for the report.
pub async fn read_app(
    entra: &EntraClient,
    token: SecretString,
    app_id: &str,
) -> Result<(Option<Application>, Option<String>), ProvisionError> {
    let graph = entra.graph(token);
    match graph
        .get_application_by_app_id(app_id, &OpContext::new())
        .await
    {
        Ok(r) => Ok((Some(r.value), r.meta.request_id)),
        Err(e) if e.is_not_found() => Ok((None, e.request_id().map(str::to_owned))),
        Err(e) => Err(ProvisionError::entra("read_token_app", e)),
    }
}

/// What is wrong with a configured token app client id, or `None` when it looks like one:
/// unset, not a GUID, or the all-zero placeholder of the example configuration.
pub fn client_id_problem(id: &str) -> Option<String> {
    let id = id.trim();
    if id.is_empty() {
        Some("unset: the admin's device code sign-in needs the provider's public client app (application id); create it with `onboard token-app manifest` (docs/microsoft.md)".into())
    } else if !is_guid(id) {
        Some(format!("{id:?} is not an application id (a GUID)"))
    } else if id.bytes().all(|b| b == b'0' || b == b'-') {
        Some("the all-zero placeholder from the example config: set the provider's public client app id (`onboard token-app manifest` creates the app)".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests;

/// How the token app lists the browser sign-in address `uri`: as it is, except that on a
/// loopback host (`localhost`, `127.0.0.1`) the port is left out. Microsoft ignores a loopback
/// reply address's port when it compares (its "localhost exceptions", after RFC 8252 §7.3), so
/// one entry serves a server on any port, such as `onboard selftest --live --sign-in browser`.
pub fn registered_redirect_uri(uri: &str) -> String {
    loopback_without_port(uri).unwrap_or_else(|| uri.to_owned())
}

/// `uri` without its port when it is an http(s) address on `localhost` or `127.0.0.1`.
fn loopback_without_port(uri: &str) -> Option<String> {
    let mut url = url::Url::parse(uri).ok()?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1"));
    if !loopback || !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.set_port(None).ok()?;
    Some(url.into())
}

/// Whether Microsoft takes the registered reply address `listed` for `wanted`: the same
/// letters, or the same loopback address but for the port.
fn same_reply_address(listed: &str, wanted: &str) -> bool {
    listed == wanted
        || loopback_without_port(listed).is_some_and(|l| Some(l) == loopback_without_port(wanted))
}

/// Whether the token app lists the server's browser sign-in address as a "Mobile and
/// desktop applications" redirect URI: without it Microsoft stops a browser sign-in (the way
/// in for tenants that block device codes) with AADSTS50011. Compared as Entra compares
/// redirect URIs: exactly, but for a loopback address's port. A warning: device-code sign-ins
/// work without it.
fn browser_redirect_rule(app: &AppFacts, uri: &str) -> RuleResult {
    let listed = &app.public_client_redirect_uris;
    if let Some(found) = listed.iter().find(|u| same_reply_address(u, uri)) {
        return RuleResult::ok("browser_redirect_uri", found);
    }
    let uri = &registered_redirect_uri(uri);
    RuleResult::bad(
        "browser_redirect_uri",
        Verdict::Warn,
        format!(
            "no mobile/desktop redirect URI {uri}: a browser sign-in (for tenants whose Conditional Access blocks device codes) stops at Microsoft with AADSTS50011"
        ),
        format!(
            "portal: the app > Authentication > Mobile and desktop applications > Add URI > {uri}; or: az ad app update --id {} --public-client-redirect-uris {NATIVE_CLIENT_REDIRECT_URI} {uri}",
            app.app_id
        ),
    )
}
