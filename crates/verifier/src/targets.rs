//! The seam between verification and whatever knows the managed registrations: the
//! credentials crate implements it over its registry (`credentials::targets::RegistryTargets`:
//! provisioned and attached registrations). Everything the verifier and drift repair need from
//! outside Entra comes through here.

use std::future::Future;
use std::pin::Pin;

use secrecy::SecretString;

use crate::error::Result;
use crate::input::{Target, VerifyInput};

/// A boxed, sendable future (keeps [`Targets`] usable as `dyn Targets`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where verification finds registrations and the authority to repair them.
pub trait Targets: Send + Sync {
    /// The registration `target` names, with its secret and what it should hold.
    /// Unknown ids are [`crate::VerifyError::NotFound`].
    fn resolve<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<VerifyInput>>;

    /// Every managed registration, for scheduled runs (one target per registration).
    fn all(&self) -> BoxFuture<'_, Result<Vec<Target>>>;

    /// A token that may grant app roles and assign directory roles to `input`'s service
    /// principal (an admin session: Privileged Role Administrator or Global Administrator), or
    /// `None` when there is none (repair then records that it needs an admin sign-in).
    fn writer_token<'a>(
        &'a self,
        input: &'a VerifyInput,
    ) -> BoxFuture<'a, Result<Option<SecretString>>>;
}
