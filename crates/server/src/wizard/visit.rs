//! One wizard request as the gRPC services see it: the invitation token (the only credential)
//! and the connection it came on, so the per-address and per-caller limits of `[limits]`
//! (failed tokens, expensive calls) apply to the browser exactly as to a gRPC client.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use invitations::InvitationRecord;
use serde::de::DeserializeOwned;
use tonic::Request;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use zeroize::Zeroizing;

use super::Wizard;
use super::stream::plain_error;
use crate::App;
use crate::error::ServerError;
use crate::limits::RpcPath;

/// The header that carries the invitation token (never the URL).
pub const TOKEN_HEADER: &str = "x-invitation-token";

/// A wizard request's token and connection facts; extracting it refuses a request without a
/// token (401).
pub(super) struct Visit {
    /// The invitation token from [`TOKEN_HEADER`] (zeroed when dropped).
    pub(super) token: Zeroizing<String>,
    /// The plain-TCP connection's facts (the peer address), when not over TLS.
    tcp: Option<TcpConnectInfo>,
    /// The TLS connection's facts, when over TLS.
    tls: Option<TlsConnectInfo<TcpConnectInfo>>,
}

/// The invitation token of a request, if it carries one.
fn token(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .map(|t| Zeroizing::new(t.to_owned()))
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let token = token(&parts.headers).ok_or_else(|| {
            plain_error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "this page needs the invitation link from your email",
            )
        })?;
        Ok(Self {
            token,
            tcp: parts.extensions.get::<TcpConnectInfo>().cloned(),
            tls: parts
                .extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .cloned(),
        })
    }
}

/// One call of the wizard's JSON API: what the handlers share, the visit, and the page's JSON
/// body (extracted in that order, so a request without a token is refused before its body is
/// read).
pub(super) struct Page<B> {
    /// The handlers' state.
    pub(super) w: Wizard,
    /// The token and connection facts.
    pub(super) visit: Visit,
    /// The page's JSON body.
    pub(super) body: B,
}

impl<B: DeserializeOwned> FromRequest<Wizard> for Page<B> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, w: &Wizard) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let visit = Visit::from_request_parts(&mut parts, w).await?;
        let req = axum::extract::Request::from_parts(parts, body);
        let Json(body) = Json::<B>::from_request(req, w)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            w: w.clone(),
            visit,
            body,
        })
    }
}

impl Visit {
    /// `msg` as a call of the Onboarding service's `method` from this browser: the service
    /// sees its peer address and which RPC it serves, as for a gRPC client.
    pub(super) fn request<T>(&self, method: &str, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        let ext = req.extensions_mut();
        if let Some(i) = &self.tcp {
            ext.insert(i.clone());
        }
        if let Some(i) = &self.tls {
            ext.insert(i.clone());
        }
        ext.insert(RpcPath(format!("/onboard.v1.Onboarding/{method}")));
        req
    }

    /// The browser's address.
    fn peer(&self) -> Option<IpAddr> {
        let tcp = self.tcp.as_ref().and_then(TcpConnectInfo::remote_addr);
        let tls = || self.tls.as_ref().and_then(|i| i.get_ref().remote_addr());
        tcp.or_else(tls).map(|a| a.ip())
    }

    /// The invitation the token names (in any state), through the same failed-token limit per
    /// address as the gRPC services: an unknown or forged token counts against the browser's
    /// address, and an address whose bucket is empty is refused (RESOURCE_EXHAUSTED) before
    /// the token is looked at.
    pub(super) fn invitation(&self, app: &App) -> Result<InvitationRecord, ServerError> {
        let guards = app.guards();
        let peer = self.peer();
        guards.token_gate(peer)?;
        app.invitations()
            .get_by_token(&self.token)
            .map_err(|e| match e {
                invitations::InvitationError::InvalidArgument(_)
                | invitations::InvitationError::NotFound(_) => guards
                    .token_failed(peer)
                    .unwrap_or_else(|| ServerError::from(e)),
                other => other.into(),
            })
    }
}
