//! Completed onboardings become managed registrations (once; lazily on lookup).

use std::collections::BTreeMap;

use onboard_core::provisioned::Provisioned;

use crate::error::CredentialsError;
use crate::model::{AuthMode, Registration, Source, StoredSecret};
use crate::store::registration_key;
use crate::{Credentials, RegistrationRef, check_ref};

impl Credentials {
    /// Makes every completed onboarding `source` knows a managed registration (once; later
    /// calls skip those already managed). Returns how many were imported.
    pub async fn import_provisioned(
        &self,
        source: &dyn Provisioned,
    ) -> Result<usize, CredentialsError> {
        let mut n = 0;
        for o in source.completed()? {
            let key = registration_key(&o.tenant_id, &o.client_id);
            if self.inner.store.get::<Registration>(&key)?.is_some() {
                continue;
            }
            let secret = StoredSecret {
                key_id: o.secret.key_id.clone(),
                hint: o.secret.hint.clone(),
                service_id: o.service_id.clone(),
                start: o.created_at.clone(),
                end: o.secret.end.clone().unwrap_or_default(),
                sealed: self.seal(&o.onboarding_id, &o.secret.value)?,
            };
            let skey = Registration::secret_key(&secret);
            let mut reg = Registration {
                id: o.onboarding_id.clone(),
                tenant_id: o.tenant_id.clone(),
                client_id: o.client_id.clone(),
                app_object_id: o.app_object_id.clone(),
                sp_id: o.sp_id.clone(),
                display_name: o.app_name.clone(),
                profile: o.profile.clone(),
                source: Source::Provisioned,
                auth_mode: AuthMode::AdminSession,
                secrets: BTreeMap::from([(skey.clone(), secret)]),
                current: BTreeMap::from([(o.service_id.clone(), skey)]),
                attached_at: onboard_core::time::now(),
                rotations: BTreeMap::new(),
                attachments: BTreeMap::new(),
                attachment_secrets: BTreeMap::new(),
            };
            // A completed run of a self-rotating profile granted Application.ReadWrite.OwnedBy
            // and made the service principal an owner (its `app_owner` step): trusted, since
            // the grant can take minutes to reach the app's tokens (changes wait for it,
            // bounded). Otherwise the customer may have made the app able to rotate itself
            // (best effort: any failure leaves the admin-session mode).
            if o.profile.self_rotation || self.detect_self_rotation(&reg).await {
                reg.auth_mode = AuthMode::SelfRotation;
            }
            self.save(&reg).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Whether the registration named by `r` is managed, importing completed onboardings first
    /// when it is not (lazy import on lookup).
    pub async fn ensure_imported(
        &self,
        source: &dyn Provisioned,
        r: &RegistrationRef,
    ) -> Result<bool, CredentialsError> {
        check_ref(r)?;
        let key = registration_key(&r.tenant_id, &r.client_id);
        if self.inner.store.get::<Registration>(&key)?.is_some() {
            return Ok(true);
        }
        self.import_provisioned(source).await?;
        Ok(self.inner.store.get::<Registration>(&key)?.is_some())
    }
}
