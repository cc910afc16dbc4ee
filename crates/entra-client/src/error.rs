//! The crate's one error type, and the parsers for the two error bodies Microsoft sends:
//! the identity platform's (STS) OAuth error JSON and Graph's OData error JSON.

use std::time::Duration;

use serde::Deserialize;

use crate::challenge::ClaimsChallenge;

/// An error answered by the Microsoft identity platform (the STS), e.g. `invalid_client` with
/// AADSTS7000215.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsError {
    /// HTTP status of the answer; 400 for most grant errors, 401 for `invalid_client`.
    pub http_status: u16,
    /// The OAuth `error` value; Microsoft says to branch on this, never on the description.
    pub error: String,
    /// The first AADSTS number of `error_codes`, the most specific reason we can map for callers.
    pub code: Option<u32>,
    /// All AADSTS numbers the STS listed, kept for diagnostics.
    pub error_codes: Vec<u32>,
    /// Human text (`error_description`); shown to operators, never matched on.
    pub description: String,
    /// STS-side trace id, which Microsoft support asks for.
    pub trace_id: Option<String>,
    /// STS-side correlation id, for the audit log and support cases.
    pub correlation_id: Option<String>,
    /// When the STS produced the error (its own clock), for the audit log.
    pub timestamp: Option<String>,
    /// `Retry-After` of the answer, if any; honoured when the STS throttles.
    pub retry_after: Option<Duration>,
}

/// An OData error answered by Microsoft Graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    /// HTTP status (404, 400, 403, 429, ...); the retry classifier needs it next to `code`.
    pub status: u16,
    /// `error.code`, e.g. `Request_ResourceNotFound`; what callers should branch on.
    pub code: String,
    /// `error.message`, human text; only a few replication-lag cases must be matched on it.
    pub message: String,
    /// `details[].code` values (e.g. `NoBackingApplicationObject`), more specific than `code`.
    pub detail_codes: Vec<String>,
    /// Graph's `request-id` (header, else `innerError`), for the audit log and support cases.
    pub request_id: Option<String>,
    /// The `client-request-id` we sent, so one logical operation can be traced across retries.
    pub client_request_id: Option<String>,
    /// `innerError.date`, Graph's time of the failure.
    pub date: Option<String>,
    /// `Retry-After` of the answer, if any; the retry loop honours it.
    pub retry_after: Option<Duration>,
    /// The claims challenge of a 401 or 403 (`WWW-Authenticate: Bearer …
    /// error="insufficient_claims", claims="…"`): Conditional Access wants a new sign-in that
    /// satisfies it. Neither a renewed token nor a retry helps (docs/microsoft.md §17).
    pub claims_challenge: Option<ClaimsChallenge>,
}

impl GraphError {
    /// An error of `status` with Graph's `code` and `message` and nothing else known (no
    /// request ids, no Retry-After, no challenge): what a caller's own tests and mappings
    /// start from.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            detail_codes: Vec::new(),
            request_id: None,
            client_request_id: None,
            date: None,
            retry_after: None,
            claims_challenge: None,
        }
    }
}

/// Everything that can go wrong talking to the identity platform or Graph.
#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    /// The STS refused a token request.
    #[error("identity platform error {}{}: {}", .0.error, fmt_aadsts(.0.code), first_line(&.0.description))]
    Sts(Box<StsError>),
    /// The user declined the sign-in: the device code's (`authorization_declined` /
    /// `access_denied`), or a browser sign-in's (the redirect's `access_denied`, AADSTS65004).
    #[error("the sign-in was declined{}", fmt_aadsts(.0.code))]
    DeviceCodeDeclined(Box<StsError>),
    /// The device code expired before the user finished; `None` when our own clock saw it first.
    #[error("the device code expired before the sign-in completed")]
    DeviceCodeExpired(Option<Box<StsError>>),
    /// A browser sign-in (authorization code flow) was not finished in the time allowed:
    /// Microsoft never sent the admin back with a code.
    #[error("the browser sign-in was not finished in time")]
    SignInExpired,
    /// A device-code poll went unanswered (timeout, broken connection, 500/502/504), so the
    /// sign-in may have completed and redeemed the code then; the next poll was refused as
    /// redeemed or expired (`invalid_grant`, `expired_token`, `bad_verification_code`).
    /// Microsoft redeems a device code once, so only a new sign-in helps.
    #[error("the sign-in must be started again: a device-code poll's answer was lost (the sign-in may have completed then), and the identity platform now refuses the code as redeemed or expired ({}{})", .0.error, fmt_aadsts(.0.code))]
    SignInAnswerLost(Box<StsError>),
    /// The STS did not recognise the device code (`bad_verification_code`): a client bug, not a retry.
    #[error("the device code was not recognised{}", fmt_aadsts(.0.code))]
    BadVerificationCode(Box<StsError>),
    /// Graph answered with an OData error.
    #[error("graph error {} {}: {} (request-id {}){}", .0.status, .0.code, .0.message, .0.request_id.as_deref().unwrap_or("-"), fmt_challenge(.0.claims_challenge.as_ref()))]
    Graph(Box<GraphError>),
    /// Still throttled (429) after the retry budget was spent.
    #[error("{operation}: still throttled after {attempts} attempts")]
    Throttled {
        /// Which client operation was throttled.
        operation: &'static str,
        /// How many requests were sent in total.
        attempts: u32,
        /// The last throttling answer.
        last: Box<EntraError>,
    },
    /// A retryable failure (5xx, replication lag) persisted past the configured budget.
    #[error("{operation}: gave up after {attempts} attempts in {elapsed:?}: {last}")]
    RetryBudgetExhausted {
        /// Which client operation gave up.
        operation: &'static str,
        /// How many requests were sent in total.
        attempts: u32,
        /// Time spent from the first request to giving up.
        elapsed: Duration,
        /// The last failure, so callers can still inspect its code and request id.
        last: Box<EntraError>,
    },
    /// The request never produced an HTTP answer (connect, TLS, timeout, body read).
    #[error("{operation}: transport error ({kind:?}): {message}")]
    Transport {
        /// Which client operation failed.
        operation: &'static str,
        /// Whether the request may have reached the server; decides if a retry is safe.
        kind: TransportErrorKind,
        /// The underlying error text; URLs carry no secrets, so this is safe to show.
        message: String,
    },
    /// An answer could not be decoded into the expected shape.
    #[error("{operation}: cannot decode the answer (HTTP {status}): {message}")]
    Decode {
        /// Which client operation failed.
        operation: &'static str,
        /// HTTP status of the undecodable answer.
        status: u16,
        /// The decoder's error (positions only, never the body, which may hold a token).
        message: String,
        /// Graph's request id when there was one.
        request_id: Option<String>,
    },
    /// Graph answered, but the token's permissions are too narrow for the answer to mean what
    /// was asked. Directory roles in `/me/transitiveMemberOf` come back with only `@odata.type`
    /// and `id` (no `roleTemplateId`) unless the token holds RoleManagement.Read.Directory or
    /// Directory.Read.All: read as "no roles" that would be wrong.
    #[error("{operation}: the token lacks {needed} ({detail})")]
    InsufficientScope {
        /// Which client operation noticed it.
        operation: &'static str,
        /// The permission to add, and the ones that would also do.
        needed: String,
        /// What the answer looked like.
        detail: String,
    },
    /// The client configuration is unusable (bad URL, bad PEM).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A caller-supplied value cannot be put into a request.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// How a request failed below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// No connection was made, so the server never saw the request: always safe to retry.
    Connect,
    /// The request timed out; the server may have acted on it.
    Timeout,
    /// The TLS handshake failed (untrusted or invalid certificate): retrying cannot help.
    Tls,
    /// The client refused to send (e.g. a plain-HTTP URL while `https_only` is on).
    Refused,
    /// Anything else (connection reset, body read, protocol).
    Other,
}

fn fmt_aadsts(code: Option<u32>) -> String {
    code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default()
}

fn fmt_challenge(c: Option<&ClaimsChallenge>) -> &'static str {
    match c {
        Some(c) if c.claims.is_some() => {
            "; claims challenge (insufficient_claims) with a claims request"
        }
        Some(_) => "; claims challenge (insufficient_claims)",
        None => "",
    }
}

fn first_line(s: &str) -> &str {
    // The STS appends trace/correlation ids on later lines; they are kept in fields instead.
    s.lines().next().unwrap_or("")
}

impl EntraError {
    /// The AADSTS number of an STS-side failure, looking through retry wrappers.
    pub fn aadsts(&self) -> Option<u32> {
        match self.root() {
            EntraError::Sts(e)
            | EntraError::DeviceCodeDeclined(e)
            | EntraError::SignInAnswerLost(e)
            | EntraError::BadVerificationCode(e) => e.code,
            EntraError::DeviceCodeExpired(Some(e)) => e.code,
            _ => None,
        }
    }

    /// True when a tenant's app management policy refused the change (a credential type or
    /// lifetime the tenant forbids): trying again does not help, the tenant's policy must change.
    pub fn is_app_policy_refusal(&self) -> bool {
        matches!(self.root(), EntraError::Graph(g) if is_policy_code(&g.code))
    }

    /// True when a person or policy refused us: the signed-in user lacks the rights for a Graph
    /// call (403), or declined / was blocked at sign-in. The server maps the first to
    /// FAILED_PRECONDITION (a role is missing) and the second to PERMISSION_DENIED.
    pub fn is_authorization_denied(&self) -> bool {
        match self.root() {
            EntraError::Graph(g) => {
                g.status == 403
                    && g.claims_challenge.is_none()
                    && !crate::retry::is_backing_application_message(&g.message)
            }
            EntraError::DeviceCodeDeclined(_) => true,
            // 65004: consent declined; 53003: Conditional Access block; 50105: user not assigned;
            // 50020: the account is neither a member nor a guest of the tenant signed in at.
            EntraError::Sts(e) => {
                e.error == "access_denied" || matches!(e.code, Some(65004 | 53003 | 50105 | 50020))
            }
            _ => false,
        }
    }

    /// True when Graph answered with a claims challenge: Conditional Access (or Continuous
    /// Access Evaluation) wants a new sign-in that satisfies its policy. Not a lack of rights,
    /// and not retried: the same sign-in fails the same way.
    pub fn is_claims_challenge(&self) -> bool {
        self.claims_challenge().is_some()
    }

    /// True when the STS refused to renew a user's sign-in: `invalid_grant` (a refresh token
    /// revoked, expired or issued before the user's sessions were revoked: AADSTS50173, 70008,
    /// 700082, ...) or `interaction_required` (a policy wants the user back, e.g. MFA:
    /// AADSTS50076, 50079). Microsoft's answer to both is a new interactive sign-in.
    /// A refusal [`Self::is_authorization_denied`] names (a Conditional Access block,
    /// AADSTS53003, which Microsoft sends as `invalid_grant` too) is not one: the same policy
    /// refuses the new sign-in.
    pub fn needs_new_sign_in(&self) -> bool {
        self.sts().is_some_and(|e| {
            (e.error == "invalid_grant" || e.error == "interaction_required")
                && !self.is_authorization_denied()
        })
    }

    /// The claims challenge behind this error, looking through retry wrappers.
    pub fn claims_challenge(&self) -> Option<&ClaimsChallenge> {
        self.graph().and_then(|g| g.claims_challenge.as_ref())
    }

    /// The Graph error behind this error, looking through retry wrappers.
    pub fn graph(&self) -> Option<&GraphError> {
        match self.root() {
            EntraError::Graph(g) => Some(g),
            _ => None,
        }
    }

    /// The STS error behind this error, looking through retry wrappers.
    pub fn sts(&self) -> Option<&StsError> {
        match self.root() {
            EntraError::Sts(e)
            | EntraError::DeviceCodeDeclined(e)
            | EntraError::SignInAnswerLost(e)
            | EntraError::BadVerificationCode(e) => Some(e),
            EntraError::DeviceCodeExpired(Some(e)) => Some(e),
            _ => None,
        }
    }

    /// True when a write's answer was lost, so Graph may or may not have acted on it: a 500,
    /// 502 or 504 (Graph documents only 429 and 503 as "repeat the request after a delay"), or
    /// a timeout or broken connection after the request was sent. A create must not be sent
    /// again before looking whether it landed ([`GraphClient`](crate::GraphClient)'s creates do).
    pub fn is_unanswered_write(&self) -> bool {
        match self.root() {
            EntraError::Graph(g) => matches!(g.status, 500 | 502 | 504),
            EntraError::Transport { kind, .. } => {
                matches!(
                    kind,
                    TransportErrorKind::Timeout | TransportErrorKind::Other
                )
            }
            _ => false,
        }
    }

    /// True when Microsoft could not answer the request: unreachable or timed out, a 5xx, a
    /// 429, the STS's `temporarily_unavailable`, or the retries used up on one of those. Asking
    /// again later may succeed; the request itself was not judged. Anything else Microsoft
    /// answered (a 4xx: wrong credentials, no such client, no right to read) is about the request.
    pub fn is_outage(&self) -> bool {
        match self.root() {
            EntraError::Transport { .. } => true,
            EntraError::Graph(g) => g.status >= 500 || g.status == 429,
            _ => self.sts().is_some_and(|e| {
                e.http_status >= 500 || e.http_status == 429 || e.error == "temporarily_unavailable"
            }),
        }
    }

    /// True for a Graph 404 (the object does not exist, or has not replicated yet).
    pub fn is_not_found(&self) -> bool {
        self.graph().is_some_and(|g| g.status == 404)
    }

    /// True when Graph refused a create or upsert because another object (live, or deleted and
    /// still in the recycle bin) holds the same `uniqueName`: 400 "Another object with the same
    /// value for property uniqueName already exists." Graph gives this case no code of its own
    /// (`Request_BadRequest`), so the property named in the message decides.
    pub fn is_unique_name_taken(&self) -> bool {
        self.graph().is_some_and(|g| {
            let m = g.message.to_ascii_lowercase();
            g.status == 400
                && m.contains("another object with the same value for property uniquename")
        })
    }

    /// True when Graph refused a create because what it would make is already there: any 409,
    /// a 400 or 409 `Request_MultipleObjectsWithSameKeyValue`, or a 400 whose message says so
    /// ("Permission being assigned already exists on the object", "One or more added object
    /// references already exist", "A conflicting object with one or more of the specified
    /// property values is present in the directory"). Graph gives most of these no code of
    /// their own (`Request_BadRequest`), so the message decides.
    pub fn is_already_exists(&self) -> bool {
        self.graph().is_some_and(|g| {
            let m = g.message.to_ascii_lowercase();
            g.status == 409
                || (g.status == 400
                    && (g
                        .code
                        .eq_ignore_ascii_case("Request_MultipleObjectsWithSameKeyValue")
                        || m.contains("already exist")
                        || m.contains("conflicting object")))
        })
    }

    /// Graph's request id, for the audit log.
    pub fn request_id(&self) -> Option<&str> {
        match self.root() {
            EntraError::Graph(g) => g.request_id.as_deref(),
            EntraError::Decode { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The innermost error: retry wrappers keep the last real failure.
    pub fn root(&self) -> &EntraError {
        match self {
            EntraError::Throttled { last, .. } | EntraError::RetryBudgetExhausted { last, .. } => {
                last.root()
            }
            other => other,
        }
    }
}

#[derive(Deserialize)]
struct StsErrorBody {
    /// OAuth error value.
    error: String,
    /// Human text with the AADSTS prefix.
    #[serde(default, deserialize_with = "null_as_default")]
    error_description: String,
    /// AADSTS numbers; absent on some STS versions. Read leniently: an entry that is not one
    /// is skipped rather than costing the whole error.
    #[serde(default, deserialize_with = "lenient_codes")]
    error_codes: Vec<u32>,
    /// STS time of the error.
    timestamp: Option<String>,
    /// STS trace id.
    trace_id: Option<String>,
    /// STS correlation id.
    correlation_id: Option<String>,
}

impl StsError {
    /// The identity platform's error answer with HTTP `status` and JSON `body` as Microsoft
    /// sends it (`error`, `error_description`, `error_codes`, …); `None` when the body is not
    /// one (e.g. an HTML gateway page).
    pub fn from_body(status: u16, body: &[u8]) -> Option<StsError> {
        parse_sts_error(status, body)
    }
}

/// Parses an STS error body; `None` when it is not one (e.g. an HTML gateway page).
pub(crate) fn parse_sts_error(status: u16, body: &[u8]) -> Option<StsError> {
    let b: StsErrorBody = serde_json::from_value(json_object(body)?).ok()?;
    let code = b
        .error_codes
        .first()
        .copied()
        .or_else(|| aadsts_from_text(&b.error_description));
    Some(StsError {
        http_status: status,
        error: b.error,
        code,
        error_codes: b.error_codes,
        description: b.error_description,
        trace_id: b.trace_id,
        correlation_id: b.correlation_id,
        timestamp: b.timestamp,
        retry_after: None,
    })
}

/// The body as a JSON object, or `None`. serde's derived structs also accept a JSON array (as
/// the fields in order), so `[[]]` would otherwise pass for an error body with every field empty.
fn json_object(body: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(serde_json::Value::is_object)
}

/// Fallback for STS answers that omit `error_codes`: the description starts with `AADSTSnnnn:`.
fn aadsts_from_text(desc: &str) -> Option<u32> {
    let rest = desc.trim_start().strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[derive(Deserialize)]
struct GraphErrorEnvelope {
    /// The OData error object.
    error: GraphErrorBody,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    /// Error code to branch on.
    #[serde(default, deserialize_with = "null_as_default")]
    code: String,
    /// Human text, string or `{value}`.
    #[serde(default)]
    message: GraphMessage,
    /// Correlation ids and date; the casing differs between services.
    #[serde(default, rename = "innerError", alias = "innererror")]
    inner_error: Option<InnerError>,
    /// More specific codes (e.g. `NoBackingApplicationObject`).
    #[serde(default, deserialize_with = "null_as_default")]
    details: Vec<GraphErrorDetail>,
}

/// The AADSTS numbers of `error_codes`: the integers of an array, anything else skipped (a
/// value that is not an array reads as none).
fn lenient_codes<'de, D>(d: D) -> Result<Vec<u32>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(v.as_array()
        .map(|codes| {
            codes
                .iter()
                .filter_map(|c| c.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect()
        })
        .unwrap_or_default())
}

/// A JSON `null` read as the field's default: an error body with `"code": null` or
/// `"details": null` is still an error body, not an unparseable one that loses its message.
/// Graph's resources use it too (`graph::types`), where a list or flag may come back `null`.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Graph's `message` is usually a string, but some directory errors send `{ "value": "..." }`.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum GraphMessage {
    Text(String),
    Object {
        /// The message text.
        value: String,
    },
    #[default]
    Missing,
}

#[derive(Deserialize)]
struct InnerError {
    /// Graph's time of the failure.
    date: Option<String>,
    /// Graph's request id (also sent as a header).
    #[serde(rename = "request-id")]
    request_id: Option<String>,
    /// Our client-request-id, echoed.
    #[serde(rename = "client-request-id")]
    client_request_id: Option<String>,
}

#[derive(Deserialize)]
struct GraphErrorDetail {
    /// Detail code.
    #[serde(default, deserialize_with = "null_as_default")]
    code: String,
}

/// Header-level facts of a Graph answer that end up in the error.
#[derive(Debug, Default, Clone)]
pub(crate) struct ErrorHeaders {
    /// `request-id` header.
    pub request_id: Option<String>,
    /// `client-request-id` header (our id, echoed).
    pub client_request_id: Option<String>,
    /// `Retry-After` header.
    pub retry_after: Option<Duration>,
    /// The claims challenge of the `WWW-Authenticate` header(s), kept on a 401 or 403 only.
    pub claims_challenge: Option<ClaimsChallenge>,
}

/// Parses a Graph error answer. Never fails: a non-OData body still yields an error with the
/// status, so a gateway's HTML 502 is classified by status alone.
pub(crate) fn parse_graph_error(status: u16, body: &[u8], headers: ErrorHeaders) -> GraphError {
    let parsed: Option<GraphErrorEnvelope> = json_object(body)
        .filter(|v| v.get("error").is_some_and(serde_json::Value::is_object))
        .and_then(|v| serde_json::from_value(v).ok());
    let (code, message, details, inner) = match parsed {
        Some(env) => {
            let message = match env.error.message {
                GraphMessage::Text(s) => s,
                GraphMessage::Object { value } => value,
                GraphMessage::Missing => String::new(),
            };
            let details = env.error.details.into_iter().map(|d| d.code).collect();
            (env.error.code, message, details, env.error.inner_error)
        }
        None => (format!("HTTP{status}"), String::new(), Vec::new(), None),
    };
    let (date, inner_rid, inner_crid) = match inner {
        Some(i) => (i.date, i.request_id, i.client_request_id),
        None => (None, None, None),
    };
    GraphError {
        status,
        code,
        message,
        detail_codes: details,
        request_id: headers.request_id.or(inner_rid),
        client_request_id: headers.client_request_id.or(inner_crid),
        date,
        retry_after: headers.retry_after,
        // Microsoft documents claims challenges on 401 (claims-challenge) and 403
        // (Graph's errors.md); on any other status the header is not one.
        claims_challenge: headers
            .claims_challenge
            .filter(|_| matches!(status, 401 | 403)),
    }
}

/// Graph codes of a tenant app management policy refusing a credential
/// (`CredentialTypeNotAllowedAsPerAppPolicy`, `CredentialInvalidLifetimeAsPerAppPolicy`, …).
pub fn is_policy_code(code: &str) -> bool {
    code.ends_with("AsPerAppPolicy") || code.contains("AppManagementPolicy")
}

#[cfg(test)]
mod tests;
