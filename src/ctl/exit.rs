//! What `onboard ctl` exits with, and how a gRPC status is told to the operator.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; for checks, nothing FAILed |
//! | 1 | the answer is "no": a check FAILed, the thing does not exist, the server refused in its present state (e.g. the invitation is used), an onboarding being watched failed or was cancelled, or the server failed internally |
//! | 2 | usage: bad flags, unreadable local files, or the server rejected a request field (`INVALID_ARGUMENT`, with the field named) |
//! | 3 | the server could not be reached or is unavailable now (connection refused, TLS failure, the connection lost under a call, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `CANCELLED`): try again later |
//! | 4 | permission: no or unknown credentials (`UNAUTHENTICATED`) or a role that may not call this (`PERMISSION_DENIED`) |

use std::fmt::Write as _;
use std::process::ExitCode;

use tonic::Code;
use tonic_types::StatusExt;

/// The exit codes; see the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok = 0,
    /// 1: a check failed, not found, refused, or a server error.
    Failed = 1,
    /// 2: usage error.
    Usage = 2,
    /// 3: server unreachable or unavailable.
    Unreachable = 3,
    /// 4: not authenticated or not allowed.
    Permission = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// The help text's summary of the exit codes (kept next to the table above).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done (for checks: nothing FAILed)
  1  a check FAILed, not found, refused in the present state, a watched onboarding failed or was
     cancelled, or a server error
  2  usage: bad flags or local files, or the server rejected a field (INVALID_ARGUMENT)
  3  server unreachable or unavailable now (connection, TLS, UNAVAILABLE, DEADLINE_EXCEEDED,
     RESOURCE_EXHAUSTED, CANCELLED): try again later
  4  permission: UNAUTHENTICATED or PERMISSION_DENIED";

/// A command that did not succeed: what to print and how to exit.
#[derive(Debug)]
pub struct CtlError {
    /// The exit code.
    pub exit: Exit,
    /// The message, possibly several lines (field violations), without the `error: ` prefix.
    pub message: String,
}

impl CtlError {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    /// A failure (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Failed,
            message: message.into(),
        }
    }

    /// The server cannot be reached (exit 3).
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Unreachable,
            message: message.into(),
        }
    }

    /// A gRPC call failed: the status code's canonical name, the server's message and every
    /// `google.rpc.BadRequest` field violation, one per line. A status the client made from a
    /// transport failure (a TLS handshake refused, the connection reset) carries the cause as
    /// its source: that is exit 3, with the cause printed.
    pub fn from_status(rpc: &str, status: &tonic::Status) -> Self {
        use std::error::Error as _;
        if status.code() == Code::Unknown
            && let Some(cause) = status.source()
        {
            return Self::unreachable(format!("{rpc}: the connection failed: {}", chain(cause)));
        }
        let mut message = format!("{rpc}: {}: {}", code_name(status.code()), status.message());
        if let Some(bad) = status.get_details_bad_request() {
            for v in bad.field_violations {
                let _ = write!(message, "\n  field `{}`: {}", v.field, v.description);
            }
        }
        // What must change before a retry can succeed (e.g. SIGN_IN_AGAIN, MISSING_RIGHTS,
        // each missing grant), the reason a program branches on, the quota hit and when to
        // try again: the server's remedies are in these, not only in the message.
        if let Some(pre) = status.get_details_precondition_failure() {
            for v in pre.violations {
                let _ = write!(
                    message,
                    "\n  precondition {} {}: {}",
                    v.r#type, v.subject, v.description
                );
            }
        }
        if let Some(quota) = status.get_details_quota_failure() {
            for v in quota.violations {
                let _ = write!(message, "\n  quota {}: {}", v.subject, v.description);
            }
        }
        if let Some(info) = status.get_details_error_info() {
            let _ = write!(message, "\n  reason {} ({})", info.reason, info.domain);
        }
        if let Some(delay) = status.get_details_retry_info().and_then(|r| r.retry_delay) {
            let _ = write!(message, "\n  retry after {} s", delay.as_secs_f64().ceil());
        }
        if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled)
            && changes_something(rpc)
        {
            message.push_str(OUTCOME_UNKNOWN);
            if rpc == "CreateInvitation" {
                message.push_str(
                    "; with the same --idempotency-key a second run answers with the \
                     invitation the first made, if it made one",
                );
            }
        }
        Self {
            exit: exit_for(status.code()),
            message,
        }
    }
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Local errors (files, output) from `anyhow`: the invocation's fault, so usage.
impl From<anyhow::Error> for CtlError {
    fn from(e: anyhow::Error) -> Self {
        Self::usage(format!("{e:#}"))
    }
}

/// An error and its sources on one line (transport errors hide the useful part in sources).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// What a lost answer to a call that changes something means for the operator.
const OUTCOME_UNKNOWN: &str = "\n  outcome unknown: the answer was lost, and the server may have \
made the change; look (list or get) before running the command again";

/// Whether `rpc` changes something (its outcome is unknown when its answer is lost); reads,
/// watches and checks do not.
fn changes_something(rpc: &str) -> bool {
    !["List", "Get", "Watch", "Follow", "Verify"]
        .iter()
        .any(|read| rpc.starts_with(read))
}

/// The exit code for a gRPC status code (module table).
pub fn exit_for(code: Code) -> Exit {
    match code {
        Code::Ok => Exit::Ok,
        Code::InvalidArgument => Exit::Usage,
        // This client never cancels its own calls: CANCELLED means the connection went away
        // under the call (e.g. the server refused the TLS client certificate).
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled => {
            Exit::Unreachable
        }
        Code::Unauthenticated | Code::PermissionDenied => Exit::Permission,
        Code::Unknown
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss => Exit::Failed,
    }
}

/// The canonical name of a status code, as gRPC's `statuscodes.md` spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn field_violations_are_printed_one_per_line_and_exit_2() {
        let mut d = ErrorDetails::new();
        d.add_bad_request_violation("customer", "required");
        d.add_bad_request_violation("valid_for", "at most 30 days");
        let s = tonic::Status::with_error_details(Code::InvalidArgument, "invalid argument", d);
        let e = CtlError::from_status("CreateInvitation", &s);
        assert_eq!(e.exit, Exit::Usage);
        assert_eq!(
            e.message,
            "CreateInvitation: INVALID_ARGUMENT: invalid argument\n  field `customer`: required\n  field `valid_for`: at most 30 days"
        );
    }

    #[test]
    fn preconditions_reasons_quotas_and_retry_delays_are_printed() {
        let mut d = ErrorDetails::new();
        d.add_precondition_failure_violation(
            "SIGN_IN_AGAIN",
            "admin_sign_in",
            "Microsoft no longer accepts the sign-in: sign in again with the invitation",
        );
        d.set_error_info(
            "SIGN_IN_REFUSED",
            "onboard.v1",
            std::collections::HashMap::new(),
        );
        d.add_quota_failure_violation("token_failures_per_minute", "10 a minute from 10.0.0.1");
        d.set_retry_info(Some(std::time::Duration::from_secs(30)));
        let s = tonic::Status::with_error_details(Code::FailedPrecondition, "sign in again", d);
        let e = CtlError::from_status("Provision", &s);
        assert_eq!(e.exit, Exit::Failed);
        assert_eq!(
            e.message,
            "Provision: FAILED_PRECONDITION: sign in again\n  precondition SIGN_IN_AGAIN admin_sign_in: Microsoft no longer accepts the sign-in: sign in again with the invitation\n  quota token_failures_per_minute: 10 a minute from 10.0.0.1\n  reason SIGN_IN_REFUSED (onboard.v1)\n  retry after 30 s"
        );
    }

    /// A change whose answer was lost may have been made: the operator is told to look
    /// before running it again; a read that timed out is simply tried again.
    #[test]
    fn a_lost_answer_to_a_change_says_the_outcome_is_unknown() {
        let lost = tonic::Status::deadline_exceeded("Timeout expired");
        for rpc in ["RevokeSecret", "AddServiceSecret", "CreateInvitation"] {
            let e = CtlError::from_status(rpc, &lost);
            assert_eq!(e.exit, Exit::Unreachable);
            assert!(
                e.message.contains("outcome unknown"),
                "{rpc}: {}",
                e.message
            );
        }
        let e = CtlError::from_status("CreateInvitation", &tonic::Status::cancelled("gone"));
        assert!(e.message.contains("--idempotency-key"), "{}", e.message);
        for rpc in ["ListSecrets", "GetInvitation", "Verify"] {
            let e = CtlError::from_status(rpc, &lost);
            assert!(!e.message.contains("outcome"), "{rpc}: {}", e.message);
        }
        let refused = tonic::Status::unavailable("connection refused");
        let e = CtlError::from_status("RevokeSecret", &refused);
        assert!(!e.message.contains("outcome"), "{}", e.message);
    }

    #[test]
    fn every_code_has_a_documented_exit() {
        assert_eq!(exit_for(Code::NotFound), Exit::Failed);
        assert_eq!(exit_for(Code::Unavailable), Exit::Unreachable);
        assert_eq!(exit_for(Code::PermissionDenied), Exit::Permission);
        assert_eq!(exit_for(Code::Unauthenticated), Exit::Permission);
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(ExitCode::from(Exit::Permission), ExitCode::from(4));
    }
}
