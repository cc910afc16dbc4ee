//! The crate's one error type. Messages never carry a secret or a token: Entra errors only hold
//! codes, messages and request ids, and our own messages name ids and rules.

use crate::names::NameRule;

/// Everything provisioning can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The app-registration name breaks a rule (gRPC: INVALID_ARGUMENT, or ALREADY_EXISTS for
    /// [`NameRule::NotUnique`]).
    #[error("app registration name {name:?} {rule}")]
    InvalidName {
        /// The name as entered.
        name: String,
        /// The rule it breaks.
        rule: NameRule,
    },
    /// The name is already used by another live onboarding of the same service.
    #[error("app registration name {name:?} is already used by onboarding {existing}")]
    NameTaken {
        /// The name as entered.
        name: String,
        /// The onboarding that holds it.
        existing: String,
    },
    /// The signed-in account is not the one the admin entered.
    #[error("signed in as {signed_in:?}, but the UPN entered was {expected:?}")]
    WrongUser {
        /// UPN typed in the wizard.
        expected: String,
        /// UPN Graph reports for the token.
        signed_in: String,
    },
    /// The sign-in landed in another tenant than the invitation names (an account of another
    /// organization, signed in at its home tenant).
    #[error(
        "{upn} signed in to tenant {signed_in}, but the invitation is for tenant {expected}: sign \
         in with an account of that tenant, or a guest account there"
    )]
    WrongTenant {
        /// The account that signed in.
        upn: String,
        /// The tenant the invitation names (id or domain).
        expected: String,
        /// The tenant id of the sign-in.
        signed_in: String,
    },
    /// The signed-in admin lacks directory roles the requested work needs (gRPC:
    /// PERMISSION_DENIED / FAILED_PRECONDITION with the list).
    #[error("the signed-in admin lacks rights: {}", missing.join("; "))]
    MissingRights {
        /// One line per missing capability, naming the roles that would grant it.
        missing: Vec<String>,
    },
    /// The profile file or a profile lookup is wrong.
    #[error("profile: {0}")]
    Profile(String),
    /// A permission of the profile is not offered by the resource in this tenant.
    #[error("{resource} offers no application permission {permission:?}")]
    UnknownPermission {
        /// Resource display name or app id.
        resource: String,
        /// Permission value, e.g. `User.Read.All`.
        permission: String,
    },
    /// The tenant lacks a resource's service principal ([`onboard_core::CoreError::MissingResource`]).
    #[error(transparent)]
    MissingResource(onboard_core::CoreError),
    /// No onboarding with that id.
    #[error("no onboarding {0:?}")]
    NotFound(String),
    /// The onboarding exists in a state that does not allow the request.
    #[error("onboarding {id} is {state}; {what}")]
    InvalidState {
        /// Onboarding id.
        id: String,
        /// Its state.
        state: String,
        /// What was refused.
        what: String,
    },
    /// Writing the audit log failed: the change was not made (fail closed).
    #[error("audit log write failed, no change made: {0}")]
    Audit(#[from] audit_log::AuditError),
    /// Microsoft identity platform or Graph refused or failed.
    #[error("{step}: {source}")]
    Entra {
        /// The workflow step that called Entra.
        step: String,
        /// The client error (with Graph request id).
        #[source]
        source: entra_client::EntraError,
    },
    /// Graph refused the admin's token with a Conditional Access claims challenge
    /// (`insufficient_claims`): the organisation's policy (MFA, a compliant device, a location,
    /// or a revoked session) wants a new sign-in that satisfies it. Not a lack of rights:
    /// granting roles or retrying does not help (gRPC: FAILED_PRECONDITION).
    #[error(
        "{step}: the organisation's Conditional Access policy requires the admin to sign in \
         again, satisfying the policy (e.g. multi-factor authentication or a compliant device); \
         retrying or granting roles will not help ({source})"
    )]
    ConditionalAccess {
        /// The workflow step that called Graph.
        step: String,
        /// The Graph error carrying the challenge.
        #[source]
        source: entra_client::EntraError,
    },
    /// The workflow store (sled) failed.
    #[error("workflow store: {0}")]
    Store(String),
    /// Sealing or opening a stored secret failed (wrong key or tampered record).
    #[error("sealed secret: {0}")]
    Crypto(String),
    /// The run was stopped: the engine is shutting down (`shutdown`), or a test hook simulated a
    /// crash. Nothing more is written; the run resumes at the next start.
    #[error("stopped at {0}")]
    Halted(String),
    /// The onboarding was cancelled while running.
    #[error("onboarding {0} was cancelled")]
    Cancelled(String),
}

impl ProvisionError {
    /// Wraps an Entra error with the step it happened in; a claims challenge becomes
    /// [`ProvisionError::ConditionalAccess`].
    pub fn entra(step: impl Into<String>, source: entra_client::EntraError) -> Self {
        let step = step.into();
        if source.is_claims_challenge() {
            return ProvisionError::ConditionalAccess { step, source };
        }
        ProvisionError::Entra { step, source }
    }

    /// True when Microsoft no longer accepts the admin's sign-in this error came from: the STS
    /// refused to renew it ([`EntraError::needs_new_sign_in`]), or Graph refused its access
    /// token (401). Every Graph call onboarding makes is the admin's, and a 401 is what is left
    /// once the token could not be renewed: it expired with no refresh token to renew it (a
    /// run release 0.1 left running), or the renewal itself failed. A claims
    /// challenge is [`ProvisionError::ConditionalAccess`].
    ///
    /// [`EntraError::needs_new_sign_in`]: entra_client::EntraError::needs_new_sign_in
    pub fn sign_in_refused(&self) -> bool {
        match self {
            ProvisionError::Entra { source, .. } => {
                source.needs_new_sign_in() || source.graph().is_some_and(|g| g.status == 401)
            }
            _ => false,
        }
    }

    /// What it takes to go on after this error, for the failure events.
    pub fn cause(&self) -> crate::FailureCause {
        use crate::FailureCause as C;
        match self {
            ProvisionError::ConditionalAccess { .. }
            | ProvisionError::WrongUser { .. }
            | ProvisionError::WrongTenant { .. } => C::SignInAgain,
            ProvisionError::MissingRights { .. } => C::MissingRights,
            e @ ProvisionError::Entra { .. } if e.sign_in_refused() => C::SignInAgain,
            e @ ProvisionError::Entra { .. } if e.is_authorization_denied() => C::MissingRights,
            // The tenant's app management policy refused the secret: Provision again fails the
            // same way until the policy changes.
            ProvisionError::Entra { source, .. } if source.is_app_policy_refusal() => C::Tenant,
            ProvisionError::Entra { .. } => C::Microsoft,
            ProvisionError::UnknownPermission { .. } | ProvisionError::MissingResource(_) => {
                C::Tenant
            }
            ProvisionError::Audit(_)
            | ProvisionError::Store(_)
            | ProvisionError::Crypto(_)
            | ProvisionError::Profile(_) => C::Service,
            ProvisionError::InvalidName { .. }
            | ProvisionError::NameTaken { .. }
            | ProvisionError::NotFound(_)
            | ProvisionError::InvalidState { .. }
            | ProvisionError::Halted(_)
            | ProvisionError::Cancelled(_) => C::Unspecified,
        }
    }

    /// True when Entra refused for lack of rights (403), so callers can say PERMISSION_DENIED.
    pub fn is_authorization_denied(&self) -> bool {
        matches!(self, ProvisionError::Entra { source, .. } if source.is_authorization_denied())
    }
}

impl From<onboard_core::CoreError> for ProvisionError {
    fn from(e: onboard_core::CoreError) -> Self {
        use onboard_core::CoreError as C;
        match e {
            C::Profile(m) => ProvisionError::Profile(m),
            C::Crypto(m) => ProvisionError::Crypto(m),
            C::Audit(a) => ProvisionError::Audit(a),
            C::UnknownPermission {
                resource,
                permission,
            } => ProvisionError::UnknownPermission {
                resource,
                permission,
            },
            C::Entra { operation, source } => ProvisionError::entra(operation, source),
            C::Store(m) => ProvisionError::Store(m),
            e @ C::MissingResource { .. } => ProvisionError::MissingResource(e),
            e @ C::Entry { .. } => ProvisionError::Store(e.to_string()),
        }
    }
}

impl From<sled::Error> for ProvisionError {
    fn from(e: sled::Error) -> Self {
        ProvisionError::Store(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureCause as C;
    use entra_client::{ClaimsChallenge, EntraError, GraphError, StsError};

    /// The STS's 400 answer `error` with AADSTS `code`, as Microsoft's body has it.
    fn sts(error: &str, code: u32) -> EntraError {
        let body = format!(
            r#"{{"error":"{error}","error_description":"AADSTS{code}: text","error_codes":[{code}]}}"#
        );
        let parsed = StsError::from_body(400, body.as_bytes()).expect("an STS error body");
        EntraError::Sts(Box::new(parsed))
    }

    fn graph(status: u16, challenge: bool) -> EntraError {
        EntraError::Graph(Box::new(GraphError {
            claims_challenge: challenge.then(|| ClaimsChallenge {
                claims: Some("e30=".into()),
                description: None,
            }),
            ..GraphError::new(
                status,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        }))
    }

    /// Each cause from the error that calls for it: a claims challenge, a refused refresh
    /// (AADSTS50173: the sessions were revoked) and MFA now required ask for a new sign-in; a
    /// 403 is missing rights; anything else from Microsoft is Microsoft's; our own store is ours.
    #[test]
    fn each_failure_names_what_it_takes_to_go_on() {
        let e = |source| ProvisionError::entra("client_secret", source);
        assert_eq!(e(graph(401, true)).cause(), C::SignInAgain);
        assert_eq!(e(sts("invalid_grant", 50173)).cause(), C::SignInAgain);
        assert_eq!(
            e(sts("interaction_required", 50076)).cause(),
            C::SignInAgain
        );
        // An access token Graph no longer takes (expired, nothing to renew it with).
        assert_eq!(e(graph(401, false)).cause(), C::SignInAgain);
        assert_eq!(e(graph(403, false)).cause(), C::MissingRights);
        assert_eq!(e(graph(400, false)).cause(), C::Microsoft);
        assert_eq!(e(sts("invalid_client", 7000215)).cause(), C::Microsoft);
        let missing = ProvisionError::MissingRights {
            missing: vec!["x".into()],
        };
        assert_eq!(missing.cause(), C::MissingRights);
        assert_eq!(ProvisionError::Store("disk".into()).cause(), C::Service);
        let unknown = ProvisionError::UnknownPermission {
            resource: "Microsoft Graph".into(),
            permission: "User.Reed.All".into(),
        };
        assert_eq!(unknown.cause(), C::Tenant);
    }
}
