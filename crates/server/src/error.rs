//! The server's one error type and the one place it becomes a gRPC status.

use audit_log::AuditError;
use credentials::CredentialsError;
use entra_client::EntraError;
use invitations::InvitationError;
pub use onboard_core::FieldViolation;
use provision::{NameRule, ProvisionError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use verifier::VerifyError;

/// Everything the server can fail with. Messages never contain secrets (tokens, keys).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The caller presented no usable identity.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but its role may not call this RPC.
    #[error("{0}")]
    PermissionDenied(String),
    /// Request fields are invalid; each violation names its field.
    #[error("{}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the system is not in a state to allow it (expired, used, revoked).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The onboarding holds no signed-in admin (the server restarted, or Microsoft refused the
    /// sign-in it held): FAILED_PRECONDITION with the `SIGN_IN_AGAIN` violation, so a caller
    /// (the wizard) offers a new sign-in with the same invitation.
    #[error("{0}")]
    NoSignIn(String),
    /// A size or index is beyond what the log has.
    #[error("{0}")]
    OutOfRange(String),
    /// A dependency (Entra, the server itself while stopping) cannot serve the call now.
    #[error("{0}")]
    Unavailable(String),
    /// A limit was reached (`[limits]`): which, about what, and when to try again.
    #[error("{subject}: limit reached ({limit}){}", retry_text(.retry_after))]
    ResourceExhausted {
        /// The limit's configuration key and value.
        limit: String,
        /// What is counted (e.g. "sign-ins in progress for this admin domain").
        subject: String,
        /// When a retry may succeed.
        retry_after: Option<std::time::Duration>,
    },
    /// The RPC exists in the contract but is not built yet.
    #[error("{0}")]
    Unimplemented(String),
    /// The server's own time limit for a call (`limits.request_timeout_secs`) was reached.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// An answer already made into a status, passed on as it is: a Provision whose start
    /// failed answers with it, and so do its repeats that followed the start (details
    /// included), so all get the same refusal.
    #[error("{}", .0.message())]
    Made(Status),
    /// The audit log failed; changes are refused when it cannot record them (fail closed).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The onboarding engine (or the Entra sign-in under it) refused or failed.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The credential manager refused or failed.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The server's own state store (sled) failed.
    #[error("state storage error: {0}")]
    State(#[from] sled::Error),
    /// The configuration is unusable.
    #[error("configuration error: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The gRPC transport could not be set up or failed.
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A bug or an impossible state; details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

fn retry_text(d: &Option<std::time::Duration>) -> String {
    match d {
        Some(d) => format!("; retry in {} ms", d.as_millis().max(1)),
        None => String::new(),
    }
}

/// The longest run of one caller-supplied string a status message may echo.
const ECHO_MAX: usize = 128;
/// The longest status message.
const MESSAGE_MAX: usize = 1024;

/// Bounds what a status message can echo of a request: every quoted string and every word
/// longer than [`ECHO_MAX`] characters is cut there with "…", and the message at
/// [`MESSAGE_MAX`]. Messages quote what the caller sent (`{:?}`) or name it as one word, so this
/// catches echoes without each call site remembering to.
pub fn bound_echoes(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MESSAGE_MAX + 8));
    let mut run = 0usize; // characters in the current word or quoted string
    let mut quoted = false;
    let mut escaped = false;
    for c in msg.chars() {
        let boundary = if quoted {
            let end = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            end
        } else {
            c.is_whitespace() || c == '"'
        };
        if boundary {
            if c == '"' {
                quoted = !quoted;
            }
            run = 0;
            out.push(c);
        } else {
            run += 1;
            if run <= ECHO_MAX {
                out.push(c);
            } else if run == ECHO_MAX + 1 {
                out.push('…');
            }
        }
        if out.chars().count() >= MESSAGE_MAX {
            out.push('…');
            break;
        }
    }
    out
}

fn describe(v: &[FieldViolation]) -> String {
    // A violation with no field is the whole request's (a request that does not decode).
    let parts: Vec<String> = v
        .iter()
        .map(|f| match f.field.as_str() {
            "" => f.description.clone(),
            field => format!("{field}: {}", f.description),
        })
        .collect();
    format!("invalid argument: {}", parts.join("; "))
}

impl ServerError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// A free-text field recorded in the audit log: INVALID_ARGUMENT naming `field` when it is
    /// longer than `max` bytes, so an oversized request is refused for its field, before
    /// anything is recorded, not for the audit entry it would make (entries are capped).
    pub fn at_most(field: &str, value: &str, max: usize) -> Result<()> {
        if value.len() > max {
            return Err(Self::invalid(field, format!("at most {max} bytes")));
        }
        Ok(())
    }

    /// A required field: INVALID_ARGUMENT naming `field` ("required") when `value` is empty.
    pub fn required(field: &str, value: &str) -> Result<()> {
        if value.is_empty() {
            return Err(Self::invalid(field, "required"));
        }
        Ok(())
    }

    /// An id field that must be a UUID in its hyphenated form (`8-4-4-4-12` hexadecimal digits,
    /// either case), as every id this server and Entra hand out is: INVALID_ARGUMENT naming
    /// `field` when it is empty or malformed, so only a well-formed id is looked up (and
    /// answered NOT_FOUND when absent, as AIP-193 separates the two). `Ok` is the id in lower
    /// case, as ids are stored and compared (RFC 9562 §4: case-insensitive on input).
    pub fn uuid(field: &str, value: &str) -> Result<String> {
        Self::required(field, value)?;
        if value.len() != 36 || uuid::Uuid::try_parse(value).is_err() {
            return Err(Self::invalid(
                field,
                "must be a UUID (8-4-4-4-12 hexadecimal digits)",
            ));
        }
        Ok(value.to_ascii_lowercase())
    }

    /// An IO error with what we were doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Verification's errors in the server's terms (then mapped below like any other).
impl From<VerifyError> for ServerError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::NotFound(m) => ServerError::NotFound(m),
            VerifyError::InvalidTarget(m) => ServerError::invalid("target", m),
            VerifyError::Audit(a) => ServerError::Audit(a),
            VerifyError::Store(s) => ServerError::State(s),
            VerifyError::NotReady(m) => ServerError::FailedPrecondition(m),
            VerifyError::Unavailable(m) => ServerError::Unavailable(m),
            other @ (VerifyError::Corrupt { .. } | VerifyError::Targets(_)) => {
                ServerError::Internal(other.to_string())
            }
        }
    }
}

/// Invitations' errors in the server's terms.
impl From<InvitationError> for ServerError {
    fn from(e: InvitationError) -> Self {
        match e {
            InvitationError::InvalidArgument(v) => ServerError::InvalidArgument(v),
            InvitationError::NotFound(m) => ServerError::NotFound(m),
            InvitationError::FailedPrecondition(m) => ServerError::FailedPrecondition(m),
            InvitationError::Audit(a) => ServerError::Audit(a),
            InvitationError::Config(m) => ServerError::Config(m),
            other @ (InvitationError::Store(_) | InvitationError::Internal(_)) => {
                ServerError::Internal(other.to_string())
            }
        }
    }
}

/// The shared vocabulary's errors in the server's terms.
impl From<onboard_core::CoreError> for ServerError {
    fn from(e: onboard_core::CoreError) -> Self {
        match e {
            onboard_core::CoreError::Audit(a) => ServerError::Audit(a),
            onboard_core::CoreError::Profile(m) => ServerError::Config(format!("profiles: {m}")),
            other => ServerError::Internal(other.to_string()),
        }
    }
}

/// What a caller is told when the audit log refuses appends after a failed write: its error
/// may name files under the data directory (an IO error of the durable sync), so it is only
/// logged (by the log's writer when the write failed, and with each call refused).
const AUDIT_FAILED: &str = "the audit log is unavailable after a failed write; see the server log";
/// What a caller is told when the audit log's writer has stopped (the server is stopping).
const AUDIT_CLOSED: &str = "the audit log is closed; see the server log";

/// UNAVAILABLE for an audit log that refused to record a call, wherever its error is carried
/// (the log itself, the engine, the credential manager): nothing was changed, and the log may
/// come back. A log refusing appends (`Poisoned`, `Closed`) is answered with a fixed text; the
/// error, which may name files, goes to the server log only.
fn audit_unavailable(a: &AuditError, msg: String) -> Status {
    tracing::error!(error = %msg, "audit log unavailable");
    match a {
        AuditError::Poisoned(_) => Status::unavailable(AUDIT_FAILED),
        AuditError::Closed => Status::unavailable(AUDIT_CLOSED),
        _ => Status::unavailable(msg),
    }
}

/// The one mapping from errors to gRPC statuses.
impl From<ServerError> for Status {
    fn from(e: ServerError) -> Self {
        let msg = bound_echoes(&e.to_string());
        match e {
            ServerError::Unauthenticated(_) => Status::unauthenticated(msg),
            ServerError::PermissionDenied(_) => Status::permission_denied(msg),
            ServerError::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(
                        bound_echoes(&v.field),
                        bound_echoes(&v.description),
                    );
                }
                Status::with_error_details(Code::InvalidArgument, msg, details)
            }
            ServerError::ResourceExhausted {
                limit,
                subject,
                retry_after,
            } => {
                let mut details = ErrorDetails::new();
                details.add_quota_failure_violation(subject, limit);
                if retry_after.is_some() {
                    details.set_retry_info(retry_after);
                }
                Status::with_error_details(Code::ResourceExhausted, msg, details)
            }
            ServerError::NotFound(_) => Status::not_found(msg),
            ServerError::FailedPrecondition(_) => Status::failed_precondition(msg),
            ServerError::NoSignIn(_) => failed_precondition(
                msg,
                "SIGN_IN_AGAIN",
                "admin_sign_in",
                [
                    "the onboarding holds no signed-in admin (the server restarted, or Microsoft \
                  refused the sign-in); the admin signs in again with the same invitation",
                ],
            ),
            ServerError::OutOfRange(_) => Status::out_of_range(msg),
            ServerError::Unimplemented(_) => Status::unimplemented(msg),
            ServerError::DeadlineExceeded(_) => Status::deadline_exceeded(msg),
            ServerError::Unavailable(_) => Status::unavailable(msg),
            ServerError::Made(s) => s,
            ServerError::Audit(a) => audit_status(a, msg),
            ServerError::Provision(p) => provision_status(p, msg),
            ServerError::Credentials(c) => credentials_status(c, msg),
            ServerError::State(_)
            | ServerError::Config(_)
            | ServerError::Io { .. }
            | ServerError::Transport(_)
            | ServerError::Internal(_) => {
                // Handled here, so logged here; the caller gets no internals.
                tracing::error!(error = %msg, "request failed");
                Status::internal("internal error; see the server log")
            }
        }
    }
}

fn audit_status(a: AuditError, msg: String) -> Status {
    match a {
        AuditError::OutOfRange(_) => Status::out_of_range(msg),
        AuditError::Proof(_) | AuditError::InvalidEntry(_) => Status::invalid_argument(msg),
        AuditError::Poisoned(_) | AuditError::Closed => audit_unavailable(&a, msg),
        _ => {
            tracing::error!(error = %msg, "audit log failure");
            Status::internal("audit log failure; see the server log")
        }
    }
}

/// `code` with a `google.rpc.BadRequest` violation of `app_name` saying the rule broken.
fn name_rule_broken(code: Code, msg: String, rule: NameRule) -> Status {
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation("app_name", format!("the name {rule}"));
    Status::with_error_details(code, msg, details)
}

fn provision_status(p: ProvisionError, msg: String) -> Status {
    let sign_in_refused = p.sign_in_refused();
    match p {
        // Every name rule broken names the field and the rule (`google.rpc.BadRequest`);
        // uniqueness, one of the manual's rules, is ALREADY_EXISTS with the same detail.
        ProvisionError::InvalidName { rule, .. } => {
            let code = match rule {
                NameRule::NotUnique => Code::AlreadyExists,
                _ => Code::InvalidArgument,
            };
            name_rule_broken(code, msg, rule)
        }
        ProvisionError::NameTaken { .. } => {
            name_rule_broken(Code::AlreadyExists, msg, NameRule::NotUnique)
        }
        // The admin is not who was named, or lacks a role: the system is not in a state to
        // allow it until someone else signs in or the role is granted.
        ProvisionError::WrongUser { .. } => failed_precondition(
            msg,
            "WRONG_ACCOUNT",
            "admin_upn",
            ["the account that signed in to Microsoft is not the admin UPN entered"],
        ),
        ProvisionError::WrongTenant { .. } => failed_precondition(
            msg,
            "WRONG_TENANT",
            "admin_sign_in",
            ["the sign-in landed in another tenant than the invitation names"],
        ),
        // One violation per missing right, naming the roles any one of which grants it.
        ProvisionError::MissingRights { missing } => {
            failed_precondition(msg, "MISSING_RIGHTS", "admin_sign_in", missing)
        }
        ProvisionError::Profile(_)
        | ProvisionError::UnknownPermission { .. }
        | ProvisionError::MissingResource(_) => Status::failed_precondition(msg),
        ProvisionError::NotFound(_) => Status::not_found(msg),
        ProvisionError::InvalidState { .. } => Status::failed_precondition(msg),
        ProvisionError::Audit(a) => audit_unavailable(&a, msg),
        // Microsoft no longer takes the admin's sign-in (the STS does not renew it, Graph
        // refuses its token): as for Conditional Access, a new sign-in is the precondition,
        // and programs read it from the detail.
        ProvisionError::Entra { .. } if sign_in_refused => sign_in_again_status(msg),
        ProvisionError::Entra { ref source, .. } => entra_status(source, msg),
        ProvisionError::ConditionalAccess { .. } => conditional_access_status(msg),
        ProvisionError::Cancelled(_) => Status::aborted(msg),
        ProvisionError::Halted(_) => Status::unavailable(
            "the server is shutting down; the onboarding resumes when it starts again",
        ),
        ProvisionError::Store(_) | ProvisionError::Crypto(_) => {
            tracing::error!(error = %msg, "onboarding failed");
            Status::internal("internal error; see the server log")
        }
    }
}

fn credentials_status(c: CredentialsError, msg: String) -> Status {
    match c {
        CredentialsError::InvalidArgument { field, reason } => {
            let mut details = ErrorDetails::new();
            details.add_bad_request_violation(field, reason);
            Status::with_error_details(Code::InvalidArgument, msg, details)
        }
        CredentialsError::NotFound(_) => Status::not_found(msg),
        CredentialsError::AlreadyExists(_) => Status::already_exists(msg),
        // Each missing grant is a precondition violation the operator can act on.
        CredentialsError::MissingGrants { missing, .. } => {
            failed_precondition(msg, "MISSING_GRANT", "registration", missing)
        }
        CredentialsError::FailedPrecondition(_)
        | CredentialsError::PolicyRefused { .. }
        | CredentialsError::NoAdminSession { .. }
        | CredentialsError::RequiredByProfile { .. } => Status::failed_precondition(msg),
        // The entry the request would make is refused (too large): retrying cannot help, so
        // not UNAVAILABLE, which clients retry. Requests are bounded per field before this.
        CredentialsError::Audit(AuditError::InvalidEntry(_)) => Status::invalid_argument(msg),
        CredentialsError::Audit(a) => audit_unavailable(&a, msg),
        CredentialsError::Entra { ref source, .. } if source.needs_new_sign_in() => {
            sign_in_again_status(msg)
        }
        CredentialsError::Entra { ref source, .. } => entra_status(source, msg),
        CredentialsError::ConditionalAccess { .. } => conditional_access_status(msg),
        // Stopped at a durable point because the server is shutting down: it resumes at the
        // next start, so the caller may retry there (not an internal error).
        CredentialsError::Halted(_) => Status::unavailable(
            "the server is shutting down; the operation resumes when it starts again",
        ),
        // The new secret could not be confirmed queued to this call in time: nothing changed
        // for the service, and a retry resumes the rotation.
        CredentialsError::AwaitsCaller(_) => Status::unavailable(
            "the rotation stopped before its hand-over: the new secret could not be passed to \
             this call in time; the old secret stays current, and RotateSecret again resumes \
             the rotation",
        ),
        CredentialsError::Store(_) | CredentialsError::Crypto(_) => {
            tracing::error!(error = %msg, "credential operation failed");
            Status::internal("internal error; see the server log")
        }
    }
}

/// Graph's claims challenge (`insufficient_claims`, docs/microsoft.md §17): the customer's
/// Conditional Access policy wants their admin to sign in again, satisfying it. FAILED_PRECONDITION,
/// not UNAUTHENTICATED: the caller of this RPC authenticated fine (mTLS or the invitation
/// token), and a gRPC client that sees UNAUTHENTICATED renews *its own* credentials, which
/// cannot help; nor PERMISSION_DENIED, which tells the admin to get roles they may already
/// hold. The system is not in a state to allow the call until the admin signs in again, as
/// for [`ProvisionError::WrongUser`] and [`CredentialsError::NoAdminSession`]. The detail names
/// the precondition for programs; the message says what to do.
fn conditional_access_status(msg: String) -> Status {
    failed_precondition(
        msg,
        "CONDITIONAL_ACCESS",
        "admin_sign_in",
        [
            "the organisation's Conditional Access policy requires a new admin sign-in that satisfies it",
        ],
    )
}

/// Microsoft's STS refused to renew the admin's sign-in (`invalid_grant`: the refresh token was
/// revoked or expired; `interaction_required`: a policy wants the admin back, e.g. for MFA).
/// FAILED_PRECONDITION for the reasons [`conditional_access_status`] gives, with a violation
/// of type `SIGN_IN_AGAIN`, the name `FailureCause` gives the same state on a failed run.
fn sign_in_again_status(msg: String) -> Status {
    failed_precondition(
        msg,
        "SIGN_IN_AGAIN",
        "admin_sign_in",
        ["Microsoft no longer renews the admin's sign-in; the admin signs in again"],
    )
}

/// FAILED_PRECONDITION with one `google.rpc.PreconditionFailure` violation of `kind` about
/// `subject` per description: the type programs (and the wizard) read, the words for people.
fn failed_precondition(
    msg: String,
    kind: &str,
    subject: &str,
    descriptions: impl IntoIterator<Item = impl Into<String>>,
) -> Status {
    let mut details = ErrorDetails::new();
    for d in descriptions {
        details.add_precondition_failure_violation(kind, subject, d);
    }
    Status::with_error_details(Code::FailedPrecondition, msg, details)
}

/// Entra's answers: the messages hold codes and request ids, never tokens, so they are shown.
/// Graph refusing the admin's session a change (403 `Authorization_RequestDenied`: the admin
/// lacks a directory role) is FAILED_PRECONDITION with a `MISSING_RIGHTS` violation on
/// `admin_sign_in` (api-sketch: "FAILED_PRECONDITION for a missing role"), as Provision's own
/// rights check says it: the caller of the RPC is authorised, and PERMISSION_DENIED would tell
/// a client its own credentials are at fault. A refused sign-in (declined, blocked by a
/// policy) stays PERMISSION_DENIED.
fn entra_status(e: &EntraError, msg: String) -> Status {
    if e.is_authorization_denied() {
        if let EntraError::Graph(_) = e.root() {
            return failed_precondition(
                msg,
                "MISSING_RIGHTS",
                "admin_sign_in",
                [
                    "Microsoft Graph refused the change to the signed-in admin: a directory role it needs is missing",
                ],
            );
        }
        return sign_in_ended(Code::PermissionDenied, msg, e);
    }
    match e.root() {
        EntraError::DeviceCodeExpired(_) | EntraError::SignInExpired => {
            sign_in_ended(Code::DeadlineExceeded, msg, e)
        }
        // The sign-in service down or throttling (after the retries): an upstream outage, as a
        // Graph 5xx or 429 is (api-sketch: UNAVAILABLE), so clients try again later.
        EntraError::Sts(_) if e.is_outage() => {
            tracing::warn!(error = %msg, "Entra sign-in service unavailable");
            Status::unavailable(msg)
        }
        EntraError::BadVerificationCode(_)
        | EntraError::SignInAnswerLost(_)
        | EntraError::Sts(_)
        | EntraError::InsufficientScope { .. } => Status::failed_precondition(msg),
        EntraError::Graph(g) if g.status < 500 && g.status != 429 => {
            Status::failed_precondition(msg)
        }
        // A value that cannot go into a request to Microsoft: an id read back from Graph or a
        // stored record, a sign-in without a refresh token, an unusable access token. Not the
        // request's own field (callers check theirs first and name them: INVALID_ARGUMENT), and
        // not an outage to retry: FAILED_PRECONDITION, logged for the operator.
        EntraError::InvalidInput(_) => {
            tracing::warn!(error = %msg, "a value Microsoft cannot be asked with");
            Status::failed_precondition(msg)
        }
        // The client's own configuration (a URL, a PEM): ours to fix, as any other.
        EntraError::Config(_) => {
            tracing::error!(error = %msg, "Entra client misconfigured");
            Status::internal("internal error; see the server log")
        }
        _ => {
            tracing::warn!(error = %msg, "Entra unavailable");
            Status::unavailable(msg)
        }
    }
}

/// A sign-in Microsoft ended (declined or blocked: PERMISSION_DENIED; the device code
/// expired, or a browser sign-in was not finished in time: DEADLINE_EXCEEDED) with a
/// `google.rpc.ErrorInfo` whose reason tells it from a caller's own refusal or deadline, in
/// domain `onboard.v1`: the invitation can sign in again.
fn sign_in_ended(code: Code, msg: String, e: &EntraError) -> Status {
    let reason = match e.root() {
        EntraError::DeviceCodeDeclined(_) => "SIGN_IN_DECLINED",
        EntraError::DeviceCodeExpired(_) => "DEVICE_CODE_EXPIRED",
        EntraError::SignInExpired => "SIGN_IN_EXPIRED",
        // A Conditional Access block or an unassigned user at the STS.
        _ => "SIGN_IN_REFUSED",
    };
    let details = ErrorDetails::with_error_info(
        reason,
        "onboard.v1",
        std::collections::HashMap::<String, String>::new(),
    );
    Status::with_error_details(code, msg, details)
}

/// Shorthand for handler results.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
