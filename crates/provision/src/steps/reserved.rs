//! A deleted application keeps its `uniqueName` for the 30 days it sits in the recycle bin
//! (microsoftgraph/msgraph-bicep-types#137). Every onboarding has its own key, so this only
//! bites when the app of *this* onboarding was deleted in Entra (by someone else) and the
//! onboarding is then retried: say exactly that, instead of Graph's bare 400.

use entra_client::OpContext;

use super::{Run, ids};
use crate::error::ProvisionError;

impl Run {
    /// Turns Graph's "Another object with the same value for property uniqueName already
    /// exists" answer to this onboarding's upsert into a precise error naming the deleted app
    /// and what the admin can do; any other error is returned unchanged.
    pub(crate) async fn explain_unique_name_taken(&self, err: ProvisionError) -> ProvisionError {
        let ProvisionError::Entra { source, .. } = &err else {
            return err;
        };
        if !source.is_unique_name_taken() {
            return err;
        }
        let rec = self.snapshot().await;
        let found = self
            .graph
            .find_deleted_application_by_unique_name(&rec.unique_name, &OpContext::new())
            .await;
        let Ok(Some(app)) = found.map(|r| r.value) else {
            return err;
        };
        let deleted = app
            .extra
            .get("deletedDateTime")
            .and_then(|v| v.as_str())
            .unwrap_or("recently");
        ProvisionError::InvalidState {
            id: rec.id.clone(),
            state: rec.status.as_str().to_owned(),
            what: format!(
                "step {}: its app registration {} (client id {}) was deleted in Entra ({deleted}) \
                 and, while it stays in the tenant's deleted items (30 days), it keeps this \
                 onboarding's uniqueName {}; restore it (Entra admin center > App registrations > \
                 Deleted applications) and retry, or cancel this onboarding and start a new one",
                ids::APP,
                app.id,
                app.app_id,
                rec.unique_name
            ),
        }
    }
}
