//! Microsoft Graph v1.0: the request core (auth, correlation ids, retries, errors, paging) and
//! the typed operations, grouped by resource in the submodules.

mod applications;
mod deleted;
mod directory;
mod grants;
mod lost_delete;
mod once;
mod reply;
pub mod roles;
mod service_principals;
#[cfg(test)]
mod tests;
pub mod types;

use std::fmt;
use std::sync::Arc;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Shared;
use crate::error::{EntraError, ErrorHeaders, parse_graph_error};
use crate::odata::literal;
use crate::retry::{OpContext, Retrier};
use crate::sts::header_str;
use crate::token_source::TokenSource;
use crate::transport::{HttpRequest, HttpResponse, parse_retry_after};
use lost_delete::DeleteAttempts;

pub use applications::UpsertOutcome;
pub use directory::ROLE_READ_PERMISSION;
pub use reply::{CallMeta, Reply};
pub use types::*;

/// A Graph client acting with one access token.
#[derive(Clone)]
pub struct GraphClient {
    /// HTTP, clock, policy and base URL.
    shared: Arc<Shared>,
    /// Where bearer tokens come from; exposed only while building the `Authorization` header.
    tokens: Arc<dyn TokenSource>,
    /// `$top` for list calls; `None` leaves Graph's default (100 for directory objects).
    page_size: Option<u32>,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("graph", &self.shared.graph.as_str())
            .finish_non_exhaustive()
    }
}

/// One Graph request as the operations describe it.
pub(crate) struct Call {
    /// Operation name for logs, retry events and errors.
    pub operation: &'static str,
    /// HTTP method.
    pub method: Method,
    /// Absolute URL.
    pub url: Url,
    /// JSON body, already serialized.
    pub body: Option<Vec<u8>>,
    /// `Prefer` header value (e.g. `create-if-missing` for upsert).
    pub prefer: Option<&'static str>,
}

impl Call {
    /// A call without a `Prefer` header.
    fn new(operation: &'static str, method: Method, url: Url, body: Option<Vec<u8>>) -> Self {
        Self {
            operation,
            method,
            url,
            body,
            prefer: None,
        }
    }
}

#[derive(serde::Deserialize)]
struct Page<T> {
    /// This page's items.
    value: Vec<T>,
    /// Absolute URL of the next page, if any.
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

impl GraphClient {
    pub(crate) fn new(shared: Arc<Shared>, tokens: Arc<dyn TokenSource>) -> Self {
        Self {
            shared,
            tokens,
            page_size: None,
        }
    }

    /// Asks for `n` items per page (1..=999) on list calls, as `$top`. Larger pages mean fewer
    /// round trips against the throttling budget; small ones exercise paging in tests.
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n.clamp(1, 999));
        self
    }

    pub(crate) fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, EntraError> {
        crate::odata::url(&self.shared.graph, path, query)
    }

    /// Sends a call with retries; 2xx answers come back, anything else is an error. A 401 is
    /// answered once with a renewed token when the token source can renew; a claims challenge
    /// once with a token asked for silently with its claims request (Microsoft: some
    /// Conditional Access policies need no interaction, so try silently before asking the user),
    /// and returned as it came when that is refused or impossible.
    pub(crate) async fn send(
        &self,
        call: Call,
        ctx: &OpContext,
    ) -> Result<(HttpResponse, CallMeta), EntraError> {
        let token = self.tokens.token(false).await?;
        // Shared by both rounds below: a DELETE that went unanswered before a 401 may have
        // landed all the same.
        let deletes = DeleteAttempts::default();
        match self.send_with(&call, ctx, &token, &deletes).await {
            // A claims challenge is not answered by a plain renewal (a token renewed without
            // the claims request is refused the same way), only by one carrying the request.
            Err(e) if e.is_claims_challenge() => {
                match self.answer_claims(&e, &token, call.operation).await {
                    Some(token) => self.send_with(&call, ctx, &token, &deletes).await,
                    None => Err(e),
                }
            }
            Err(e) if e.graph().is_some_and(|g| g.status == 401) && self.tokens.can_refresh() => {
                tracing::info!(
                    operation = call.operation,
                    "graph said 401; renewing the token once"
                );
                let token = self.tokens.token(true).await?;
                self.send_with(&call, ctx, &token, &deletes).await
            }
            other => other,
        }
    }

    /// A token that may satisfy claims challenge `e` (to `refused`), asked for silently with
    /// its claims request; `None` when the source cannot ask without the user, the challenge has
    /// no usable request, or the STS wants an interactive sign-in. The challenge, not the STS's
    /// refusal, is what the caller then reports: it says what the admin must do.
    async fn answer_claims(
        &self,
        e: &EntraError,
        refused: &SecretString,
        operation: &'static str,
    ) -> Option<SecretString> {
        let request_id = e.request_id().unwrap_or("");
        let claims = e.claims_challenge().and_then(|c| c.token_request_claims());
        let answer = match &claims {
            Some(claims) => self.tokens.token_for_claims(claims, refused).await,
            None => Ok(None),
        };
        match answer {
            Ok(Some(token)) => {
                tracing::info!(
                    operation,
                    request_id,
                    "graph sent a claims challenge (insufficient_claims); a token asked for \
                     silently with its claims request is tried once"
                );
                Some(token)
            }
            Ok(None) => {
                tracing::info!(
                    operation,
                    request_id,
                    "graph sent a claims challenge (insufficient_claims); the admin must sign in again"
                );
                None
            }
            Err(sts) => {
                tracing::info!(
                    operation,
                    request_id,
                    error = %sts,
                    "graph sent a claims challenge (insufficient_claims) that the STS does not \
                     answer without the admin; the admin must sign in again"
                );
                None
            }
        }
    }

    async fn send_with(
        &self,
        call: &Call,
        ctx: &OpContext,
        token: &SecretString,
        deletes: &DeleteAttempts,
    ) -> Result<(HttpResponse, CallMeta), EntraError> {
        let retrier = Retrier {
            policy: &self.shared.policy,
            clock: self.shared.clock.as_ref(),
        };
        // POST creates (and addPassword) are not idempotent: a timed-out one may have landed.
        let idempotent = call.method != Method::POST;
        let crid = ctx.client_request_id.to_string();
        let operation = call.operation;
        let deletes = (call.method == Method::DELETE).then_some(deletes);
        let (resp, attempts) = retrier
            .run(operation, ctx, idempotent, || {
                let sent = self.attempt(call, &crid, token);
                async move {
                    let outcome = sent.await;
                    match deletes {
                        // Before the retry loop classifies it: a 404 after a lost attempt
                        // is the delete done, not an error (nor replication lag).
                        Some(d) => d.settle(operation, outcome),
                        None => outcome,
                    }
                }
            })
            .await?;
        let meta = CallMeta {
            status: resp.status.as_u16(),
            request_id: header_str(&resp.headers, "request-id"),
            client_request_id: crid,
            attempts,
            deleted_by_earlier_attempt: deletes.is_some_and(DeleteAttempts::settled_by_earlier),
        };
        tracing::debug!(
            operation,
            status = meta.status,
            request_id = meta.request_id_or_empty(),
            client_request_id = %meta.client_request_id,
            attempts,
            "graph call done"
        );
        Ok((resp, meta))
    }

    fn attempt(
        &self,
        call: &Call,
        crid: &str,
        token: &SecretString,
    ) -> impl Future<Output = Result<HttpResponse, EntraError>> + Send + 'static {
        let operation = call.operation;
        let req = Self::build_request(call, crid, token);
        let transport = self.shared.transport.clone();
        let sent_crid = crid.to_owned();
        async move {
            let req = req?;
            let resp = crate::telemetry::send(transport, req, operation)
                .await
                .map_err(|f| f.into_error(operation))?;
            if resp.status.is_success() {
                return Ok(resp);
            }
            let headers = ErrorHeaders {
                request_id: header_str(&resp.headers, "request-id"),
                // Graph echoes it (we ask it to); if a proxy drops it, ours is still known.
                client_request_id: header_str(&resp.headers, "client-request-id")
                    .or(Some(sent_crid)),
                retry_after: parse_retry_after(&resp.headers),
                claims_challenge: crate::challenge::claims_challenge_of(&resp.headers),
            };
            let err = parse_graph_error(resp.status.as_u16(), &resp.body, headers);
            tracing::debug!(
                operation,
                status = err.status,
                code = %err.code,
                claims_challenge = err.claims_challenge.is_some(),
                request_id = err.request_id.as_deref().unwrap_or(""),
                "graph call refused"
            );
            Err(EntraError::Graph(Box::new(err)))
        }
    }

    fn build_request(
        call: &Call,
        crid: &str,
        token: &SecretString,
    ) -> Result<HttpRequest, EntraError> {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                EntraError::InvalidInput("access token is not a valid header value".into())
            })?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(crid) {
            headers.insert("client-request-id", v);
        }
        // Asks Graph to echo our id, so the error body and headers carry it too.
        headers.insert("return-client-request-id", HeaderValue::from_static("true"));
        // A JSON body says so; an empty one (a POST Microsoft says takes none) says nothing.
        if call.body.as_ref().is_some_and(|b| !b.is_empty()) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(p) = call.prefer {
            headers.insert("prefer", HeaderValue::from_static(p));
        }
        Ok(HttpRequest {
            method: call.method.clone(),
            url: call.url.clone(),
            headers,
            body: call.body.clone(),
        })
    }

    /// GET returning one JSON object.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        url: Url,
        ctx: &OpContext,
    ) -> Result<Reply<T>, EntraError> {
        self.send_decoded(Call::new(operation, Method::GET, url, None), ctx)
            .await
    }

    /// `POST {path}` with a JSON body, returning the created object.
    pub(crate) async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        body: &B,
        ctx: &OpContext,
    ) -> Result<Reply<T>, EntraError> {
        let url = self.url(path, &[])?;
        let body = Some(to_json(operation, body)?);
        self.send_decoded(Call::new(operation, Method::POST, url, body), ctx)
            .await
    }

    /// `POST {path}` without a body (an action that takes none), returning its JSON answer.
    pub(crate) async fn post_empty<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        ctx: &OpContext,
    ) -> Result<Reply<T>, EntraError> {
        let url = self.url(path, &[])?;
        self.send_decoded(
            Call::new(operation, Method::POST, url, Some(Vec::new())),
            ctx,
        )
        .await
    }

    /// Sends `call` and decodes its JSON answer.
    async fn send_decoded<T: DeserializeOwned>(
        &self,
        call: Call,
        ctx: &OpContext,
    ) -> Result<Reply<T>, EntraError> {
        let operation = call.operation;
        let (resp, meta) = self.send(call, ctx).await?;
        let value = decode(operation, &resp, &meta)?;
        Ok(Reply { value, meta })
    }

    /// `method {path}` whose success has no body (DELETE, removePassword, PATCH): 204.
    async fn no_content(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let url = self.url(path, &[])?;
        let (_, meta) = self
            .send(Call::new(operation, method, url, body), ctx)
            .await?;
        Ok(Reply { value: (), meta })
    }

    /// `GET {path}?$select={select}`: one object (`path` may be `collection/{id}` or an
    /// alternate key such as `applications(appId='…')`).
    pub(crate) async fn get_selected<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        select: &str,
        ctx: &OpContext,
    ) -> Result<Reply<T>, EntraError> {
        let url = self.url(path, &[("$select", select)])?;
        self.get_json(operation, url, ctx).await
    }

    /// Every item of `collection` whose `property` equals `value`
    /// (`$filter={property} eq '{value}'`, with `$select` when given).
    pub(crate) async fn list_where<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        collection: &str,
        property: &str,
        value: &str,
        select: Option<&str>,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<T>>, EntraError> {
        let filter = format!("{property} eq {}", literal(value));
        let mut query = vec![("$filter", filter.as_str())];
        query.extend(select.map(|s| ("$select", s)));
        let url = self.url(collection, &query)?;
        self.list_all(operation, url, ctx).await
    }

    /// The first item of [`Self::list_where`]; `None` when nothing matches.
    pub(crate) async fn find_where<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        collection: &str,
        property: &str,
        value: &str,
        select: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Option<T>>, EntraError> {
        let reply: Reply<Vec<T>> = self
            .list_where(operation, collection, property, value, Some(select), ctx)
            .await?;
        Ok(reply.map(|v| v.into_iter().next()))
    }

    /// Every item under `path` (no query), all pages.
    pub(crate) async fn list_path<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<T>>, EntraError> {
        let url = self.url(path, &[])?;
        self.list_all(operation, url, ctx).await
    }

    /// `DELETE {path}` (204).
    pub(crate) async fn delete_path(
        &self,
        operation: &'static str,
        path: &str,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        self.no_content(operation, Method::DELETE, path, None, ctx)
            .await
    }

    /// `method {path}` with a JSON body whose success has no body (204).
    pub(crate) async fn write_path<B: Serialize>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: &B,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let body = to_json(operation, body)?;
        self.no_content(operation, method, path, Some(body), ctx)
            .await
    }

    /// GET a collection, following `@odata.nextLink` until the last page.
    pub(crate) async fn list_all<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        first: Url,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<T>>, EntraError> {
        self.list_pages(operation, first, true, ctx).await
    }

    /// [`Self::list_all`], except that `top_allowed: false` is for collections that refuse
    /// `$top` (e.g. `roleManagement/directory/roleAssignments`): the configured page size is
    /// not sent; Graph's own paging still applies.
    pub(crate) async fn list_pages<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        first: Url,
        top_allowed: bool,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<T>>, EntraError> {
        let mut items = Vec::new();
        let mut url = match self.page_size {
            Some(n) if top_allowed && !first.query_pairs().any(|(k, _)| k == "$top") => {
                let sep = if first.query().is_some() { '&' } else { '?' };
                Url::parse(&format!("{first}{sep}$top={n}"))
                    .map_err(|e| EntraError::InvalidInput(format!("{operation}: {e}")))?
            }
            _ => first,
        };
        let mut attempts = 0;
        loop {
            let reply: Reply<Page<T>> = self.get_json(operation, url, ctx).await?;
            attempts += reply.meta.attempts;
            items.extend(reply.value.value);
            match reply.value.next_link {
                Some(next) => url = self.checked_next_link(operation, &next)?,
                None => {
                    let meta = CallMeta {
                        attempts,
                        ..reply.meta
                    };
                    return Ok(Reply { value: items, meta });
                }
            }
        }
    }

    /// A nextLink is absolute; we only follow it to our own Graph origin, so a bad answer cannot
    /// make us send the bearer token elsewhere.
    fn checked_next_link(&self, operation: &'static str, next: &str) -> Result<Url, EntraError> {
        let url = Url::parse(next).map_err(|e| EntraError::Decode {
            operation,
            status: 200,
            message: format!("bad @odata.nextLink: {e}"),
            request_id: None,
        })?;
        if url.origin() != self.shared.graph.origin() {
            return Err(EntraError::Decode {
                operation,
                status: 200,
                message: "@odata.nextLink points to another host".into(),
                request_id: None,
            });
        }
        Ok(url)
    }
}

pub(crate) fn to_json<B: Serialize>(
    operation: &'static str,
    body: &B,
) -> Result<Vec<u8>, EntraError> {
    serde_json::to_vec(body).map_err(|e| EntraError::InvalidInput(format!("{operation}: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(
    operation: &'static str,
    resp: &HttpResponse,
    meta: &CallMeta,
) -> Result<T, EntraError> {
    serde_json::from_slice(&resp.body).map_err(|e| EntraError::Decode {
        operation,
        status: resp.status.as_u16(),
        message: e.to_string(),
        request_id: meta.request_id.clone(),
    })
}
