//! The engine as `onboard_core::provisioned::Provisioned`: completed onboardings handed to
//! day-two management (their registration, sealed secret and the admin sign-in they were made
//! with).

use onboard_core::provisioned::{AdminAccessToken, Provisioned, ProvisionedApp, ProvisionedSecret};
use onboard_core::{CoreError, Purpose};

use crate::engine::Engine;
use crate::error::ProvisionError;
use crate::store::Status;
use crate::view::ListFilter;

impl Provisioned for Engine {
    fn completed(&self) -> Result<Vec<ProvisionedApp>, CoreError> {
        let mut out = Vec::new();
        for rec in self.inner.store.all().map_err(store_err)? {
            if rec.status != Status::Completed {
                continue;
            }
            let (Some(client_id), Some(sp_id), Some(secret)) = (
                rec.client_id.clone(),
                rec.sp_id.clone(),
                rec.secret.as_ref(),
            ) else {
                continue;
            };
            let value = self
                .inner
                .key
                .open(&rec.id, Purpose::ClientSecret, &secret.sealed)?;
            out.push(ProvisionedApp {
                onboarding_id: rec.id.clone(),
                tenant_id: rec.tenant_id.clone(),
                service_id: rec.service_id.clone(),
                client_id,
                app_object_id: rec.app_object_id.clone(),
                sp_id,
                app_name: rec.app_name.clone(),
                profile: rec.profile.clone(),
                secret: ProvisionedSecret {
                    key_id: secret.key_id.clone(),
                    hint: secret.hint.clone().unwrap_or_default(),
                    end: secret.end_date_time.clone(),
                    value,
                },
                created_at: rec.created_at.clone(),
            });
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(out)
    }

    fn admin_access_token(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<AdminAccessToken>, CoreError> {
        let latest = self
            .list(&ListFilter {
                status: Some(Status::Completed),
                ..ListFilter::default()
            })
            .map_err(store_err)?
            .into_iter()
            .rev()
            .find(|o| o.tenant_id == tenant_id && o.client_id.as_deref() == Some(client_id));
        match latest {
            Some(o) => Ok(self
                .admin_session_with_expiry(&o.id)
                .map_err(store_err)?
                .map(|(token, expires_at)| AdminAccessToken { token, expires_at })),
            None => Ok(None),
        }
    }
}

fn store_err(e: ProvisionError) -> CoreError {
    CoreError::Store(e.to_string())
}
