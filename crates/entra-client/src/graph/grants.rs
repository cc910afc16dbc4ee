//! Consent: app-role assignments (admin consent to application permissions) and
//! oauth2PermissionGrants (delegated consent).

use serde::Serialize;

use super::once::first_match;
use super::{GraphClient, Reply};
use crate::error::EntraError;
use crate::graph::types::{AppRoleAssignment, OAuth2PermissionGrant};
use crate::odata::id;
use crate::retry::OpContext;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppRoleAssignmentBody<'a> {
    /// Who gets the role (our SP).
    principal_id: &'a str,
    /// Resource SP offering the role.
    resource_id: &'a str,
    /// The role.
    app_role_id: &'a str,
}

impl GraphClient {
    /// Grants app role `app_role_id` of resource SP `resource_sp_id` to `principal_id`
    /// (`POST /servicePrincipals/{resource}/appRoleAssignedTo`, 201). For Microsoft Graph roles
    /// the signed-in admin must be Privileged Role Administrator or Global Administrator; an
    /// Application Administrator gets 403 ([`EntraError::is_authorization_denied`]). An
    /// unanswered attempt is looked for among the principal's grants before it is sent again.
    pub async fn grant_app_role(
        &self,
        resource_sp_id: &str,
        principal_id: &str,
        app_role_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<AppRoleAssignment>, EntraError> {
        let path = format!(
            "servicePrincipals/{}/appRoleAssignedTo",
            id(resource_sp_id)?
        );
        let body = AppRoleAssignmentBody {
            principal_id: id(principal_id)?,
            resource_id: resource_sp_id,
            app_role_id: id(app_role_id)?,
        };
        let (path, body) = (&path, &body);
        let reply = self
            .write_once(
                "grant_app_role",
                ctx,
                move || self.post_json("grant_app_role", path, body, ctx),
                move || self.find_app_role_grant(resource_sp_id, principal_id, app_role_id, ctx),
            )
            .await?;
        tracing::info!(
            resource_sp_id,
            principal_id,
            app_role_id,
            assignment_id = %reply.value.id,
            request_id = reply.meta.request_id_or_empty(),
            "app role granted"
        );
        Ok(reply)
    }

    /// `principal_id`'s grant of app role `app_role_id` of resource SP `resource_sp_id`, when its
    /// grants list it (ids compared without regard to case, as Graph compares GUIDs).
    pub async fn find_app_role_grant(
        &self,
        resource_sp_id: &str,
        principal_id: &str,
        app_role_id: &str,
        ctx: &OpContext,
    ) -> Result<Option<Reply<AppRoleAssignment>>, EntraError> {
        let held = self.list_app_role_assignments(principal_id, ctx).await?;
        Ok(first_match(held, |a| {
            a.resource_id.eq_ignore_ascii_case(resource_sp_id)
                && a.app_role_id.eq_ignore_ascii_case(app_role_id)
        }))
    }

    /// Everyone holding app roles of resource SP `resource_sp_id`.
    pub async fn list_app_role_assigned_to(
        &self,
        resource_sp_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<AppRoleAssignment>>, EntraError> {
        let op = "list_app_role_assigned_to";
        self.list_sp_assignments(op, resource_sp_id, "appRoleAssignedTo", ctx)
            .await
    }

    /// App roles held by principal SP `principal_sp_id` (our app's grants, across resources).
    pub async fn list_app_role_assignments(
        &self,
        principal_sp_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<AppRoleAssignment>>, EntraError> {
        let op = "list_app_role_assignments";
        self.list_sp_assignments(op, principal_sp_id, "appRoleAssignments", ctx)
            .await
    }

    /// Every app role assignment under `servicePrincipals/{sp_id}/{relation}`.
    async fn list_sp_assignments(
        &self,
        operation: &'static str,
        sp_id: &str,
        relation: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<AppRoleAssignment>>, EntraError> {
        let path = format!("servicePrincipals/{}/{relation}", id(sp_id)?);
        self.list_path(operation, &path, ctx).await
    }

    /// Revokes an app-role grant (`DELETE …/appRoleAssignedTo/{id}`, 204).
    pub async fn revoke_app_role(
        &self,
        resource_sp_id: &str,
        assignment_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let path = format!(
            "servicePrincipals/{}/appRoleAssignedTo/{}",
            id(resource_sp_id)?,
            id(assignment_id)?
        );
        self.delete_path("revoke_app_role", &path, ctx).await
    }

    /// Delegated grants held by client SP `client_sp_id`.
    pub async fn list_oauth2_permission_grants(
        &self,
        client_sp_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<OAuth2PermissionGrant>>, EntraError> {
        let op = "list_oauth2_permission_grants";
        let client_id = id(client_sp_id)?;
        self.list_where(
            op,
            "oauth2PermissionGrants",
            "clientId",
            client_id,
            None,
            ctx,
        )
        .await
    }

    /// `POST /oauth2PermissionGrants` (201); `grant.id` is ignored.
    pub async fn create_oauth2_permission_grant(
        &self,
        grant: &OAuth2PermissionGrant,
        ctx: &OpContext,
    ) -> Result<Reply<OAuth2PermissionGrant>, EntraError> {
        let body = OAuth2PermissionGrant {
            id: String::new(),
            ..grant.clone()
        };
        let path = "oauth2PermissionGrants";
        self.post_json("create_oauth2_permission_grant", path, &body, ctx)
            .await
    }

    /// `DELETE /oauth2PermissionGrants/{id}` (204).
    pub async fn delete_oauth2_permission_grant(
        &self,
        grant_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let path = format!("oauth2PermissionGrants/{}", id(grant_id)?);
        self.delete_path("delete_oauth2_permission_grant", &path, ctx)
            .await
    }
}
