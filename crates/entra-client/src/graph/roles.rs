//! Entra directory roles: assignments to our service principal, and the built-in template ids.

use serde::Serialize;

use super::once::first_match;
use super::{GraphClient, Reply};
use crate::error::EntraError;
use crate::graph::types::{UnifiedRoleAssignment, UnifiedRoleDefinition};
use crate::odata::{id, literal};
use crate::retry::OpContext;

/// Built-in role template ids (Microsoft's permissions reference); the same in every tenant and
/// usable directly as `roleDefinitionId`.
pub mod template {
    /// Global Administrator.
    pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
    /// Application Administrator.
    pub const APPLICATION_ADMINISTRATOR: &str = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3";
    /// Cloud Application Administrator.
    pub const CLOUD_APPLICATION_ADMINISTRATOR: &str = "158c047a-c907-4556-b7ef-446551a6b5f7";
    /// Privileged Role Administrator: needed to grant Graph app roles and assign directory roles.
    pub const PRIVILEGED_ROLE_ADMINISTRATOR: &str = "e8611ab8-c189-46e8-94e1-60213ab1f814";
    /// User Administrator.
    pub const USER_ADMINISTRATOR: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
    /// Domain Name Administrator.
    pub const DOMAIN_NAME_ADMINISTRATOR: &str = "8329153b-31d0-4727-b945-745eb3bc5f31";
    /// Teams Administrator.
    pub const TEAMS_ADMINISTRATOR: &str = "69091246-20e8-4a56-aa4d-066075b2a7a8";
    /// Teams Communications Administrator.
    pub const TEAMS_COMMUNICATIONS_ADMINISTRATOR: &str = "baf37b3a-610e-45da-9e62-d9d1e5e8914b";
    /// Skype for Business Administrator.
    pub const SKYPE_FOR_BUSINESS_ADMINISTRATOR: &str = "75941009-915a-4869-abe7-691bff18279e";
}

/// The collection of directory role assignments.
const ROLE_ASSIGNMENTS: &str = "roleManagement/directory/roleAssignments";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoleAssignmentBody<'a> {
    /// Graph's documented body carries the type annotation.
    #[serde(rename = "@odata.type")]
    odata_type: &'static str,
    /// Role (template id for built-ins).
    role_definition_id: &'a str,
    /// Who gets it.
    principal_id: &'a str,
    /// `/` = tenant-wide.
    directory_scope_id: &'a str,
}

impl GraphClient {
    /// Assigns directory role `role_definition_id` (a template id works for built-ins) to
    /// `principal_id` tenant-wide (`POST /roleManagement/directory/roleAssignments`, 201).
    /// Needs Privileged Role Administrator; others get 403. An unanswered attempt is looked for
    /// among the principal's assignments before it is sent again.
    pub async fn assign_directory_role(
        &self,
        role_definition_id: &str,
        principal_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<UnifiedRoleAssignment>, EntraError> {
        let body = RoleAssignmentBody {
            odata_type: "#microsoft.graph.unifiedRoleAssignment",
            role_definition_id: id(role_definition_id)?,
            principal_id: id(principal_id)?,
            directory_scope_id: "/",
        };
        let body = &body;
        let reply = self
            .write_once(
                "assign_directory_role",
                ctx,
                move || self.post_json("assign_directory_role", ROLE_ASSIGNMENTS, body, ctx),
                move || self.find_directory_role_assignment(role_definition_id, principal_id, ctx),
            )
            .await?;
        tracing::info!(
            role_definition_id,
            principal_id,
            assignment_id = %reply.value.id,
            request_id = reply.meta.request_id_or_empty(),
            "directory role assigned"
        );
        Ok(reply)
    }

    /// `principal_id`'s tenant-wide assignment of directory role `role_definition_id`, when its
    /// assignments list it.
    pub async fn find_directory_role_assignment(
        &self,
        role_definition_id: &str,
        principal_id: &str,
        ctx: &OpContext,
    ) -> Result<Option<Reply<UnifiedRoleAssignment>>, EntraError> {
        let held = self
            .list_directory_role_assignments(principal_id, ctx)
            .await?;
        Ok(first_match(held, |a| {
            a.role_definition_id
                .eq_ignore_ascii_case(role_definition_id)
                && a.directory_scope_id.as_deref().unwrap_or("/") == "/"
        }))
    }

    /// Directory role assignments of `principal_id`. Graph refuses `$top` on this collection,
    /// so the client's page size is not sent here.
    pub async fn list_directory_role_assignments(
        &self,
        principal_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<UnifiedRoleAssignment>>, EntraError> {
        let filter = format!("principalId eq {}", literal(id(principal_id)?));
        let url = self.url(ROLE_ASSIGNMENTS, &[("$filter", &filter)])?;
        let top_allowed = false;
        self.list_pages("list_directory_role_assignments", url, top_allowed, ctx)
            .await
    }

    /// [`GraphClient::list_directory_role_assignments`], or `None` when the signed-in user may
    /// not read them (403): Learn names Directory Readers, Global Reader and Privileged Role
    /// Administrator as the least roles for this read (rbacapplication-list-roleassignments),
    /// and an Application Administrator holds none of them, though it may do everything else
    /// an onboarding asks of it.
    pub async fn readable_directory_role_assignments(
        &self,
        principal_id: &str,
        ctx: &OpContext,
    ) -> Result<Option<Vec<UnifiedRoleAssignment>>, EntraError> {
        match self
            .list_directory_role_assignments(principal_id, ctx)
            .await
        {
            Ok(r) => Ok(Some(r.value)),
            Err(e) if e.is_authorization_denied() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /roleManagement/directory/roleAssignments/{id}` (204).
    pub async fn remove_directory_role_assignment(
        &self,
        assignment_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let path = format!("{ROLE_ASSIGNMENTS}/{}", id(assignment_id)?);
        self.delete_path("remove_directory_role_assignment", &path, ctx)
            .await
    }

    /// Directory role definitions (built-in and custom).
    pub async fn list_directory_role_definitions(
        &self,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<UnifiedRoleDefinition>>, EntraError> {
        let path = "roleManagement/directory/roleDefinitions";
        self.list_path("list_directory_role_definitions", path, ctx)
            .await
    }
}
