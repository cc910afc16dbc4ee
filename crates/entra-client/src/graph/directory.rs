//! The signed-in user, their directory roles, and the tenant.

use super::{GraphClient, Reply};
use crate::error::EntraError;
use crate::graph::types::{DirectoryObject, DirectoryRole, Organization, User};
use crate::retry::OpContext;

const DIRECTORY_ROLE_TYPE: &str = "#microsoft.graph.directoryRole";

/// The least delegated permission that lets a token read directory role objects
/// (directoryrole-list-members), so that `/me/transitiveMemberOf` shows their template ids.
pub const ROLE_READ_PERMISSION: &str = "RoleManagement.Read.Directory";

impl GraphClient {
    /// `GET /me`: who signed in (delegated tokens only).
    pub async fn me(&self, ctx: &OpContext) -> Result<Reply<User>, EntraError> {
        let url = self.url(
            "me",
            &[("$select", "id,userPrincipalName,displayName,userType,mail")],
        )?;
        self.get_json("me", url, ctx).await
    }

    /// The signed-in user's activated directory roles, including those held through groups.
    /// Reads `/me/transitiveMemberOf` (the reference's authoritative check) and keeps the
    /// `directoryRole` entries client-side: the type-cast URL segment would need advanced-query
    /// headers on the real service.
    ///
    /// With User.Read alone Graph still lists every membership, but a directory role comes back
    /// with only `@odata.type` and `id`, its `roleTemplateId` missing or null: the token may not
    /// read role objects. That is an [`EntraError::InsufficientScope`] naming the permission to
    /// add, never an empty list (which would read as "this admin holds no roles").
    pub async fn my_directory_roles(
        &self,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<DirectoryRole>>, EntraError> {
        let reply: Reply<Vec<DirectoryObject>> = self
            .list_path("my_directory_roles", "me/transitiveMemberOf", ctx)
            .await?;
        let roles: Vec<DirectoryObject> = reply
            .value
            .into_iter()
            .filter(|o| o.odata_type.as_deref() == Some(DIRECTORY_ROLE_TYPE))
            .collect();
        let stripped = roles
            .iter()
            .filter(|o| o.role_template_id.is_none())
            .count();
        if stripped > 0 {
            return Err(EntraError::InsufficientScope {
                operation: "my_directory_roles",
                needed: format!(
                    "{ROLE_READ_PERMISSION} (or RoleManagement.ReadWrite.Directory, \
                     Directory.Read.All, Directory.ReadWrite.All)"
                ),
                detail: format!(
                    "{stripped} of {} directory roles in /me/transitiveMemberOf came back \
                     without roleTemplateId (request-id {})",
                    roles.len(),
                    reply.meta.request_id.as_deref().unwrap_or("-")
                ),
            });
        }
        let value = roles
            .into_iter()
            .filter_map(|o| {
                Some(DirectoryRole {
                    role_template_id: o.role_template_id?,
                    id: o.id,
                    display_name: o.display_name,
                })
            })
            .collect();
        Ok(Reply {
            value,
            meta: reply.meta,
        })
    }

    /// `GET /organization`: the tenant the token is for.
    pub async fn organization(&self, ctx: &OpContext) -> Result<Reply<Organization>, EntraError> {
        let url = self.url(
            "organization",
            &[("$select", "id,displayName,verifiedDomains")],
        )?;
        let reply: Reply<Vec<Organization>> = self.list_all("organization", url, ctx).await?;
        let meta = reply.meta.clone();
        match reply.value.into_iter().next() {
            Some(org) => Ok(Reply { value: org, meta }),
            None => Err(EntraError::Decode {
                operation: "organization",
                status: meta.status,
                message: "no organization in the answer".into(),
                request_id: meta.request_id,
            }),
        }
    }
}
