//! The narrow seam between the onboarding workflow and day-two management: what a completed
//! onboarding hands over, without the day-two side knowing the workflow engine.

use secrecy::SecretString;

use crate::error::CoreError;
use crate::profiles::ResolvedProfile;

/// A registration a completed onboarding made, as day-two management takes it over.
#[derive(Debug, Clone)]
pub struct ProvisionedApp {
    /// The onboarding id (the managed registration keeps it as its id).
    pub onboarding_id: String,
    /// Customer tenant.
    pub tenant_id: String,
    /// The Direct Routing service the first secret is for.
    pub service_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// The application's object id.
    pub app_object_id: Option<String>,
    /// The service principal's object id.
    pub sp_id: String,
    /// The app's display name.
    pub app_name: String,
    /// What the registration was made with.
    pub profile: ResolvedProfile,
    /// The first secret.
    pub secret: ProvisionedSecret,
    /// When the onboarding was created (the one time format).
    pub created_at: String,
}

/// The secret an onboarding made. `Debug` hides the value.
#[derive(Debug, Clone)]
pub struct ProvisionedSecret {
    /// Graph's `keyId`.
    pub key_id: String,
    /// The first characters Graph shows.
    pub hint: String,
    /// Expiry (RFC 3339) when known.
    pub end: Option<String>,
    /// The value, opened from the onboarding's sealed record.
    pub value: SecretString,
}

/// An admin's delegated access token kept with an onboarding. `Debug` hides the token.
#[derive(Clone)]
pub struct AdminAccessToken {
    /// The token; never log it.
    pub token: SecretString,
    /// When it expires (seconds since the Unix epoch), from the token response's `expires_in`:
    /// Microsoft's access tokens are opaque to clients, so their `exp` claim is not read.
    /// `None` for tokens kept before the expiry was recorded.
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for AdminAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccessToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Whatever knows completed onboardings (the onboarding engine).
pub trait Provisioned: Send + Sync {
    /// Every completed onboarding that made a registration with a secret.
    fn completed(&self) -> Result<Vec<ProvisionedApp>, CoreError>;

    /// The signed-in admin's delegated access token kept with the latest completed onboarding
    /// that made `client_id` in `tenant_id`, if any. It may have expired (about an hour after
    /// sign-in); callers check its `expires_at`. Never log it.
    fn admin_access_token(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<AdminAccessToken>, CoreError>;
}
