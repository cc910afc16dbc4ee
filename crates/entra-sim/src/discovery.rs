//! The identity platform's discovery documents: a tenant's OpenID configuration and its
//! signing keys (JWKS), for the tenant segment as the token endpoint resolves it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use crate::http::ReqIds;
use crate::state::Shared;
use crate::sts::{TenantRef, resolve_tenant, tenant_not_found};

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub async fn openid_configuration(
    State(s): State<Arc<Shared>>,
    Extension(ids): Extension<ReqIds>,
    Path(tenant): Path<String>,
) -> Response {
    let Some((seg, issuer)) = segment_and_issuer(&s, &tenant) else {
        return tenant_not_found(&ids, &tenant);
    };
    let b = &s.base_url;
    Json(json!({
        "token_endpoint": format!("{b}/{seg}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{b}/{seg}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{b}/{seg}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{b}/{seg}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{b}/{seg}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{b}/{seg}/kerberos"),
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }))
    .into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`.
pub async fn jwks(
    State(s): State<Arc<Shared>>,
    Extension(ids): Extension<ReqIds>,
    Path(tenant): Path<String>,
) -> Response {
    let Some((_, issuer)) = segment_and_issuer(&s, &tenant) else {
        return tenant_not_found(&ids, &tenant);
    };
    Json(s.key.jwks(&issuer)).into_response()
}

/// The path segment the documents name for `tenant` (a tenant's id, or `organizations` /
/// `common`) and the issuer its tokens carry (`{tenantid}` for a multi-tenant one); `None` for
/// an unknown tenant.
fn segment_and_issuer(s: &Shared, tenant: &str) -> Option<(String, String)> {
    let mut inner = s.lock();
    match resolve_tenant(&mut inner, tenant)? {
        TenantRef::Specific => {
            let tid = inner.dir.tenant.id.clone();
            let issuer = s.v2_issuer(&tid);
            Some((tid, issuer))
        }
        TenantRef::Multi(m) => Some((m, s.v2_issuer("{tenantid}"))),
    }
}
