//! Service principals: ours (created from the app), resource SPs (Graph, Teams admin API) and
//! the temporary `-token` enterprise app we remove.

use serde::Serialize;

use super::{GraphClient, Reply};
use crate::error::EntraError;
use crate::graph::types::{PrincipalCredentials, ServicePrincipal};
use crate::odata::{id, key};
use crate::retry::OpContext;

const SP_SELECT: &str = "id,appId,displayName,appRoles,oauth2PermissionScopes";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateSp<'a> {
    /// Client id of the application to instantiate.
    app_id: &'a str,
}

impl GraphClient {
    /// `POST /servicePrincipals {appId}` (201). Right after creating the app, mark `ctx` with
    /// [`OpContext::after_create`]: Graph then often says NoBackingApplicationObject for a while.
    /// An unanswered attempt is looked for by `appId` before it is sent again.
    pub async fn create_service_principal(
        &self,
        app_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<ServicePrincipal>, EntraError> {
        let body = &CreateSp { app_id };
        let reply = self
            .write_once(
                "create_service_principal",
                ctx,
                move || self.post_json("create_service_principal", "servicePrincipals", body, ctx),
                move || async move {
                    let found = self.find_service_principal_by_app_id(app_id, ctx).await?;
                    let meta = found.meta;
                    Ok(found.value.map(|value| Reply { value, meta }))
                },
            )
            .await?;
        tracing::info!(
            app_id,
            sp_id = %reply.value.id,
            request_id = reply.meta.request_id_or_empty(),
            "service principal created"
        );
        Ok(reply)
    }

    /// `GET /servicePrincipals/{id}`.
    pub async fn get_service_principal(
        &self,
        object_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<ServicePrincipal>, EntraError> {
        let path = format!("servicePrincipals/{}", id(object_id)?);
        self.get_selected("get_service_principal", &path, SP_SELECT, ctx)
            .await
    }

    /// `GET /servicePrincipals/{id}?$select=id,passwordCredentials,keyCredentials`: the
    /// secrets and certificates on the service principal itself (SAML signing certificates,
    /// or credentials added to sign in as the app).
    pub async fn get_service_principal_credentials(
        &self,
        object_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<PrincipalCredentials>, EntraError> {
        let path = format!("servicePrincipals/{}", id(object_id)?);
        let select = "id,passwordCredentials,keyCredentials";
        self.get_selected("get_service_principal_credentials", &path, select, ctx)
            .await
    }

    /// The service principal of client id `app_id` in this tenant; `None` if not instantiated.
    pub async fn find_service_principal_by_app_id(
        &self,
        app_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Option<ServicePrincipal>>, EntraError> {
        let op = "find_service_principal_by_app_id";
        self.find_where(op, "servicePrincipals", "appId", app_id, SP_SELECT, ctx)
            .await
    }

    /// Service principals named exactly `name` (how the temporary `-token` app is found).
    pub async fn find_service_principals_by_display_name(
        &self,
        name: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<ServicePrincipal>>, EntraError> {
        let (op, select) = ("find_service_principals_by_display_name", Some(SP_SELECT));
        self.list_where(op, "servicePrincipals", "displayName", name, select, ctx)
            .await
    }

    /// A resource's service principal with its app roles and scopes, by alternate key
    /// (`/servicePrincipals(appId='…')`). Role ids are read here at runtime rather than
    /// hard-coded: the reference found no authoritative id for the Teams admin API role.
    pub async fn resource_service_principal(
        &self,
        resource_app_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<ServicePrincipal>, EntraError> {
        let path = format!("servicePrincipals(appId={})", key(resource_app_id));
        self.get_selected("resource_service_principal", &path, SP_SELECT, ctx)
            .await
    }

    /// `DELETE /servicePrincipals/{id}` (204).
    pub async fn delete_service_principal(
        &self,
        object_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let path = format!("servicePrincipals/{}", id(object_id)?);
        let reply = self
            .delete_path("delete_service_principal", &path, ctx)
            .await?;
        tracing::info!(
            sp_id = object_id,
            request_id = reply.meta.request_id_or_empty(),
            "service principal deleted"
        );
        Ok(reply)
    }
}
