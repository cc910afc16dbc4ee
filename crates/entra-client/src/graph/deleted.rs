//! The directory's recycle bin (`/directory/deletedItems`). A deleted application stays there
//! for 30 days and keeps its `uniqueName` reserved meanwhile
//! (microsoftgraph/msgraph-bicep-types#137): restore it or delete it permanently to free it.

use super::reply::found_or_none;
use super::{GraphClient, Reply};
use crate::error::EntraError;
use crate::graph::types::Application;
use crate::odata::id;
use crate::retry::OpContext;

/// The properties read from deleted applications (`deletedDateTime` says when).
const DELETED_APP_SELECT: &str = "id,appId,displayName,uniqueName,deletedDateTime";

impl GraphClient {
    /// `GET /directory/deletedItems/microsoft.graph.application`: applications in the recycle
    /// bin (`deletedDateTime` is in [`Application::extra`]).
    pub async fn list_deleted_applications(
        &self,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<Application>>, EntraError> {
        let url = self.url(
            "directory/deletedItems/microsoft.graph.application",
            &[("$select", DELETED_APP_SELECT)],
        )?;
        self.list_all("list_deleted_applications", url, ctx).await
    }

    /// The deleted application holding `unique_name`, if any (compared case-insensitively, as
    /// Entra compares alternate keys). Lists the bin: `$filter` on deleted items is limited.
    pub async fn find_deleted_application_by_unique_name(
        &self,
        unique_name: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Option<Application>>, EntraError> {
        let reply = self.list_deleted_applications(ctx).await?;
        Ok(reply.map(|apps| {
            apps.into_iter().find(|a| {
                a.unique_name
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(unique_name))
            })
        }))
    }

    /// `GET /directory/deletedItems/{id}`: whether the recycle bin holds object `id` (a deleted
    /// application or service principal). Graph's 404 is the answer "no": the object was never
    /// deleted, was deleted for good, or the replica read has not seen its deletion yet.
    pub async fn is_in_recycle_bin(
        &self,
        object_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<bool>, EntraError> {
        let path = format!("directory/deletedItems/{}", id(object_id)?);
        let url = self.url(&path, &[("$select", "id")])?;
        let read = self
            .get_json::<serde_json::Value>("is_in_recycle_bin", url, ctx)
            .await;
        Ok(found_or_none(read, ctx)?.map(|held| held.is_some()))
    }

    /// `POST /directory/deletedItems/{id}/restore` (200): brings a deleted application back with
    /// its secrets, or a deleted service principal back without its grants.
    pub async fn restore_deleted_item(
        &self,
        object_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<serde_json::Value>, EntraError> {
        // "Do not supply a request body for this method" (directory-deleteditems-restore): an
        // empty one, so the POST still carries `Content-Length: 0`.
        let path = format!("directory/deletedItems/{}/restore", id(object_id)?);
        self.post_empty("restore_deleted_item", &path, ctx).await
    }

    /// `DELETE /directory/deletedItems/{id}` (204): permanent deletion; cannot be undone.
    pub async fn delete_deleted_item_permanently(
        &self,
        object_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let path = format!("directory/deletedItems/{}", id(object_id)?);
        self.delete_path("delete_deleted_item_permanently", &path, ctx)
            .await
    }
}
