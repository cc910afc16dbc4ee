//! [`Action`]: every kind of audit entry Onboard writes, with the fields of its own each may
//! carry. `docs/audit-entries.md` describes each one for auditors; the schema
//! (`docs/audit-entries.schema.json`) and a test keep the three in step.

macro_rules! actions {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $name:literal, details: [$($detail:literal),* $(,)?];
    )*) => {
        /// What an audit entry records. The dotted name is written as `action`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Action {
            /// Every action, in documentation order.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            /// The dotted name written as `action`.
            pub fn as_str(self) -> &'static str {
                match self { $(Action::$variant => $name,)* }
            }

            /// The fields of its own an entry of this action may carry beside the common ones.
            pub fn details(self) -> &'static [&'static str] {
                match self { $(Action::$variant => &[$($detail),*],)* }
            }

            /// The action a dotted name names.
            pub fn from_name(name: &str) -> Option<Action> {
                match name { $($name => Some(Action::$variant),)* _ => None }
            }
        }
    };
}

actions! {
    // Invitations (operators; the customer redeems one by signing in).
    /// An operator creates an invitation (intent, then outcome).
    InvitationCreate = "invitation.create", details: ["invitation"];
    /// An operator revokes an invitation.
    InvitationRevoke = "invitation.revoke", details: ["reason"];
    /// The customer's sign-in uses up an invitation.
    InvitationRedeem = "invitation.redeem", details: [];

    // The Onboarding service: one entry per RPC (changes: intent, then outcome).
    /// A sign-in for an invitation, by device code or browser (intent when it starts, outcome
    /// when it ends).
    OnboardingSignIn = "onboarding.sign_in",
        details: ["invitation_id", "admin_upn", "method", "roles_held"];
    /// A plan was shown (no change).
    OnboardingPlan = "onboarding.plan", details: ["app_name", "profile", "blocked"];
    /// Provision was called.
    OnboardingProvision = "onboarding.provision", details: ["app_name", "profile"];
    /// Watch was called (or a repeated Provision followed the run).
    OnboardingWatch = "onboarding.watch", details: ["from_event"];
    /// GetOnboarding was called.
    OnboardingGet = "onboarding.get", details: [];
    /// ListOnboardings was called.
    OnboardingList = "onboarding.list", details: ["filter", "count"];
    /// CancelOnboarding was called.
    OnboardingCancelRequest = "onboarding.cancel_request", details: ["reason"];

    // The onboarding workflow.
    /// Provisioning starts: the plan it will carry out.
    OnboardingStart = "onboarding.start", details: [];
    /// Provisioning finished: every step is confirmed.
    OnboardingFinish = "onboarding.finish", details: [];
    /// An onboarding is cancelled: what it made is removed.
    OnboardingCancel = "onboarding.cancel", details: [];
    /// The signed-in admin did what they may; the rest waits for a privileged admin (intent),
    /// who finished it (succeeded), or nobody did and it is undone or cancelled (failed).
    OnboardingHandOff = "onboarding.hand_off",
        details: ["roles", "left", "expires_at", "admin_consent_url"];
    /// Grants a tenant admin made on Microsoft's admin-consent page for a waiting onboarding's
    /// app, seen by Onboard (observed, not made by it: the actor is `entra:admin-consent`).
    AdminConsentObserved = "admin_consent.observed", details: ["granted"];
    /// An app registration is created or updated (the `uniqueName` upsert).
    AppRegistrationCreate = "app_registration.create", details: [];
    /// An app registration's property is changed (the admin-consent reply address removed).
    AppRegistrationUpdate = "app_registration.update", details: [];
    /// An app registration is deleted (cancel, undo).
    AppRegistrationDelete = "app_registration.delete", details: [];
    /// A service principal is created for the app.
    ServicePrincipalCreate = "service_principal.create", details: [];
    /// A service principal is deleted (cancel, undo).
    ServicePrincipalDelete = "service_principal.delete", details: [];
    /// The onboarding's first client secret is added (Graph `addPassword`).
    ClientSecretAdd = "client_secret.add", details: [];
    /// A client secret left by a crash before it was recorded is removed (`removePassword`).
    ClientSecretRemove = "client_secret.remove", details: [];
    /// An application permission is granted with admin consent (`appRoleAssignedTo`).
    AppRoleAssignmentCreate = "app_role_assignment.create", details: [];
    /// An application permission is revoked.
    AppRoleAssignmentDelete = "app_role_assignment.delete", details: [];
    /// A directory role is assigned to the app's service principal.
    DirectoryRoleAssignmentCreate = "directory_role_assignment.create", details: [];
    /// A directory role assignment is removed.
    DirectoryRoleAssignmentDelete = "directory_role_assignment.delete", details: [];
    /// The app's service principal becomes an owner of the app (self-rotating profiles).
    AppOwnerAdd = "app_owner.add", details: [];
    /// The temporary `<server>-<provider>-token` enterprise app is deleted.
    TemporaryAppDelete = "temporary_app.delete", details: [];
    /// A secret is proven to work: a client-credentials token is obtained with it.
    AuthenticationVerify = "authentication.verify", details: [];

    // Day two (the Credentials service and its background work).
    /// A day-two client secret is added for a service (Graph `addPassword`).
    PasswordCredentialCreate = "password_credential.create", details: [];
    /// A day-two client secret is removed (Graph `removePassword`).
    PasswordCredentialDelete = "password_credential.delete", details: [];
    /// A secret rotation starts, is refused, or ends.
    SecretRotate = "secret.rotate", details: [];
    /// A secret's value is put in an answer to a caller (ClaimSecret, an operator's Provision
    /// stream, AddServiceSecret, each RotateSecret call that gets the new secret; `delivery`:
    /// `clear` or `sealed`), or a rotation's new secret becomes the service's current one (no
    /// `delivery`).
    SecretHandOver = "secret.hand_over", details: ["delivery"];
    /// A hand-made registration is attached (checked, then managed).
    RegistrationAttach = "registration.attach", details: [];
    /// ListSecrets was called.
    CredentialsListSecrets = "credentials.list_secrets", details: [];
    /// ListGrants was called.
    CredentialsListGrants = "credentials.list_grants", details: [];
    /// ListExpiring was called.
    CredentialsListExpiring = "credentials.list_expiring", details: [];

    // Verification and drift.
    /// A verification report (on demand or scheduled).
    VerificationReport = "verification.report",
        details: ["trigger", "profile", "overall", "checks", "checked_at"];
    /// Scheduled verification found a difference from the profile.
    DriftDetected = "drift.detected",
        details: ["profile", "kind", "key", "detail", "finding", "report_seq"];
    /// A drift item no longer shows (or was repaired).
    DriftResolved = "drift.resolved",
        details: ["profile", "kind", "key", "reason", "detected_seq", "evidence_seq"];
    /// A drift repair (intent, outcome, or skipped with the reason).
    DriftRepair = "drift.repair",
        details: ["profile", "key", "change", "reason", "intent_seq", "assignment_id"];
    /// ListDrift was called.
    DriftList = "drift.list", details: ["count"];

    // The audit log itself.
    /// An auditor read the log (every Audit RPC).
    AuditRead = "audit.read", details: ["rpc", "request"];
    /// The log's signing key was rotated (this entry's checkpoint is signed by both keys).
    SigningKeyRotate = "signing_key.rotate", details: [];

    // The state store beside the log.
    /// State records written before record MACs (release 0.1) are given one, once.
    StoreMigrate = "store.migrate", details: ["records"];
    /// A key the server had generated into the state store was removed from it at start-up,
    /// the configuration now naming a file with the key (`onboard keys export` wrote it).
    StoreMoveKey = "store.move_key", details: ["key", "file"];
    /// An operator accepted an audit log shorter than (or different from) the one the state
    /// store had recorded (`onboard audit reanchor`), after its loss.
    StoreReanchor = "store.reanchor",
        details: ["reason", "recorded_size", "recorded_root", "size", "root"];
    /// An admin took a backup of the running server (`onboard backup`): intent before the
    /// snapshot (so the archive holds it), outcome with what the archive holds.
    StoreBackup = "store.backup",
        details: ["reason", "size", "root", "archive_sha256", "archive_bytes"];
    /// A data directory was restored from a backup (`onboard restore`); `forced` when it was
    /// older than (or different from) the latest checkpoint known, with the operator's reason.
    StoreRestore = "store.restore",
        details: [
            "reason", "forced", "archive_sha256", "size", "root", "known_size", "known_root",
            "known_from", "created_at"
        ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_dotted_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for a in Action::ALL {
            assert!(seen.insert(a.as_str()), "{} twice", a.as_str());
            assert_eq!(Action::from_name(a.as_str()), Some(*a));
            let (noun, verb) = a.as_str().split_once('.').expect("dotted");
            assert!(!noun.is_empty() && !verb.is_empty());
            for d in a.details() {
                assert!(
                    !super::super::entry::COMMON_FIELDS.contains(d),
                    "{} declares common field {d}",
                    a.as_str()
                );
            }
        }
    }
}
