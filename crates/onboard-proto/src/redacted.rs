// Included by build.rs and by the crate (for `redact.rs`'s test): one list for both.

/// Messages that carry a secret (an invitation token, a client secret or a link holding a
/// token): their derived `Debug` is left out and `src/redact.rs` writes one that hides it.
/// `redact.rs`'s test fails on a message with a token or secret field that is not here.
pub(crate) const REDACTED: &[&str] = &[
    ".onboard.v1.CreateInvitationResponse",
    ".onboard.v1.RenderedEmail",
    ".onboard.v1.GetInvitationRequest",
    ".onboard.v1.SignInRequest",
    ".onboard.v1.WatchRequest",
    ".onboard.v1.PlanRequest",
    ".onboard.v1.ProvisionRequest",
    ".onboard.v1.GetOnboardingRequest",
    ".onboard.v1.CancelOnboardingRequest",
    ".onboard.v1.Completed",
    ".onboard.v1.ClaimedSecret",
    ".onboard.v1.NewSecret",
    ".onboard.v1.AttachRegistrationRequest",
    ".onboard.v1.IssueHandOffLinkRequest",
    ".onboard.v1.HandOffLink",
];
