//! App registrations: lookup, idempotent upsert by `uniqueName`, secrets.

use reqwest::Method;
use secrecy::SecretString;
use serde::Serialize;

use super::reply::found_or_none;
use super::{Call, GraphClient, Reply, decode, to_json};
use crate::error::EntraError;
use crate::graph::types::{
    Application, ApplicationSpec, DirectoryObject, FederatedIdentityCredential, NewPassword,
    PasswordCredentialInfo, RawNewPassword,
};
use crate::odata::{id, key};
use crate::retry::OpContext;

/// What every application read selects; `isFallbackPublicClient` and `publicClient` (in
/// `Application::extra`) are for the check of the provider's token app.
const APP_SELECT: &str = "id,appId,displayName,uniqueName,signInAudience,passwordCredentials,keyCredentials,requiredResourceAccess,isFallbackPublicClient,publicClient";

/// Result of an upsert.
#[derive(Debug, Clone)]
pub struct UpsertOutcome {
    /// True when Graph answered 201 (made now), false for 204 (it existed and was updated).
    pub created: bool,
    /// The application as Graph has it after the upsert.
    pub application: Application,
    /// True when the PATCH was sent more than once (an answer lost, throttled or failed): an
    /// earlier send may have created the app even when the answer that came is 204.
    pub retried: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AddPasswordBody<'a> {
    /// The requested credential's metadata.
    password_credential: PasswordCredentialRequest<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PasswordCredentialRequest<'a> {
    /// Label (the service the secret is for).
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    /// Expiry; Graph's default is two years.
    #[serde(skip_serializing_if = "Option::is_none")]
    end_date_time: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RemovePasswordBody<'a> {
    /// The secret to remove.
    key_id: &'a str,
}

impl GraphClient {
    /// `GET /applications/{id}`.
    pub async fn get_application(
        &self,
        object_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Application>, EntraError> {
        let path = format!("applications/{}", id(object_id)?);
        self.get_selected("get_application", &path, APP_SELECT, ctx)
            .await
    }

    /// Finds the application with client id `app_id`; `None` if there is none.
    pub async fn find_application_by_app_id(
        &self,
        app_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Option<Application>>, EntraError> {
        let op = "find_application_by_app_id";
        self.find_where(op, "applications", "appId", app_id, APP_SELECT, ctx)
            .await
    }

    /// Applications whose display name is exactly `name` (names are not unique in Entra; the
    /// wizard's uniqueness rule is checked with this).
    pub async fn find_applications_by_display_name(
        &self,
        name: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<Application>>, EntraError> {
        let (op, select) = ("find_applications_by_display_name", Some(APP_SELECT));
        self.list_where(op, "applications", "displayName", name, select, ctx)
            .await
    }

    /// `GET /applications(uniqueName='…')`; `None` when Graph says 404.
    pub async fn get_application_by_unique_name(
        &self,
        unique_name: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Option<Application>>, EntraError> {
        let path = format!("applications(uniqueName={})", key(unique_name));
        let read = self
            .get_selected::<Application>("get_application_by_unique_name", &path, APP_SELECT, ctx)
            .await;
        found_or_none(read, ctx)
    }

    /// Creates or updates the application keyed by `unique_name`
    /// (`PATCH /applications(uniqueName='…')` with `Prefer: create-if-missing`). A retried
    /// provisioning run therefore never makes a second app. On 204 the app is read back so the
    /// caller always gets ids. The returned meta is the PATCH's (201 or 204).
    pub async fn upsert_application(
        &self,
        unique_name: &str,
        spec: &ApplicationSpec,
        ctx: &OpContext,
    ) -> Result<Reply<UpsertOutcome>, EntraError> {
        let operation = "upsert_application";
        let url = self.url(
            &format!("applications(uniqueName={})", key(unique_name)),
            &[],
        )?;
        let call = Call {
            operation,
            method: Method::PATCH,
            url,
            body: Some(to_json(operation, spec)?),
            prefer: Some("create-if-missing"),
        };
        let (resp, meta) = self.send(call, ctx).await?;
        if resp.status.as_u16() == 201 {
            let application: Application = decode(operation, &resp, &meta)?;
            tracing::info!(unique_name, app_id = %application.app_id, request_id = meta.request_id_or_empty(), "application created");
            return Ok(Reply {
                value: UpsertOutcome {
                    created: true,
                    application,
                    retried: meta.attempts > 1,
                },
                meta,
            });
        }
        // 204: it existed. The read-back may hit a replica that has not seen our update, but
        // not one that lacks the app, so a 404 here is lag and is retried.
        let read_ctx = OpContext {
            after_create: true,
            ..ctx.clone()
        };
        let path = format!("applications(uniqueName={})", key(unique_name));
        let read: Reply<Application> = self
            .get_selected("upsert_application_read_back", &path, APP_SELECT, &read_ctx)
            .await?;
        tracing::info!(unique_name, app_id = %read.value.app_id, "application updated");
        Ok(Reply {
            value: UpsertOutcome {
                created: false,
                application: read.value,
                retried: meta.attempts > 1,
            },
            meta: super::CallMeta {
                attempts: meta.attempts + read.meta.attempts,
                ..meta
            },
        })
    }

    /// `PATCH /applications/{id}` with any JSON patch (204).
    pub async fn update_application(
        &self,
        object_id: &str,
        patch: &serde_json::Value,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let path = format!("applications/{}", id(object_id)?);
        self.write_path("update_application", Method::PATCH, &path, patch, ctx)
            .await
    }

    /// `DELETE /applications/{id}` (204; the app goes to the 30-day recycle bin).
    pub async fn delete_application(
        &self,
        object_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let path = format!("applications/{}", id(object_id)?);
        self.delete_path("delete_application", &path, ctx).await
    }

    /// `POST /applications/{id}/addPassword`: a new client secret. The value is returned only
    /// here, as a `SecretString`. Not retried on timeout (it could add two secrets).
    pub async fn add_password(
        &self,
        app_object_id: &str,
        display_name: Option<&str>,
        end_date_time: Option<&str>,
        ctx: &OpContext,
    ) -> Result<Reply<NewPassword>, EntraError> {
        let path = format!("applications/{}/addPassword", id(app_object_id)?);
        self.add_password_at("add_password", &path, display_name, end_date_time, ctx)
            .await
    }

    /// `POST /servicePrincipals/{id}/addPassword`: a secret on the service principal itself
    /// (it signs in as the app in this tenant). Onboard never makes one; verification reports
    /// any it finds. Not retried on timeout.
    pub async fn add_service_principal_password(
        &self,
        sp_object_id: &str,
        display_name: Option<&str>,
        ctx: &OpContext,
    ) -> Result<Reply<NewPassword>, EntraError> {
        let path = format!("servicePrincipals/{}/addPassword", id(sp_object_id)?);
        self.add_password_at(
            "add_service_principal_password",
            &path,
            display_name,
            None,
            ctx,
        )
        .await
    }

    /// The `addPassword` call at `path`.
    async fn add_password_at(
        &self,
        operation: &'static str,
        path: &str,
        display_name: Option<&str>,
        end_date_time: Option<&str>,
        ctx: &OpContext,
    ) -> Result<Reply<NewPassword>, EntraError> {
        let body = AddPasswordBody {
            password_credential: PasswordCredentialRequest {
                display_name,
                end_date_time,
            },
        };
        let reply: Reply<RawNewPassword> = self.post_json(operation, path, &body, ctx).await?;
        tracing::info!(
            key_id = %reply.value.info.key_id,
            request_id = reply.meta.request_id_or_empty(),
            "client secret added"
        );
        Ok(reply.map(|raw| NewPassword {
            info: raw.info,
            secret_text: SecretString::from(raw.secret_text),
        }))
    }

    /// `POST /applications/{id}/removePassword` (204). After an unanswered attempt the app is
    /// read: a key that is gone was removed.
    pub async fn remove_password(
        &self,
        app_object_id: &str,
        key_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let path = format!("applications/{}/removePassword", id(app_object_id)?);
        let listed = move || async move {
            let app = self.get_application(app_object_id, ctx).await?;
            Ok(app.map(|a| a.password_credentials))
        };
        self.remove_password_at("remove_password", &path, key_id, ctx, listed)
            .await
    }

    /// `POST /servicePrincipals/{id}/removePassword` (204). After an unanswered attempt the
    /// service principal is read: a key that is gone was removed.
    pub async fn remove_service_principal_password(
        &self,
        sp_object_id: &str,
        key_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let path = format!("servicePrincipals/{}/removePassword", id(sp_object_id)?);
        let listed = move || async move {
            let sp = self
                .get_service_principal_credentials(sp_object_id, ctx)
                .await?;
            Ok(sp.map(|s| s.password_credentials))
        };
        let op = "remove_service_principal_password";
        self.remove_password_at(op, &path, key_id, ctx, listed)
            .await
    }

    /// The `removePassword` call at `path`; `listed` reads the secrets there after an
    /// unanswered attempt (a key that is gone was removed).
    async fn remove_password_at<F, FF>(
        &self,
        operation: &'static str,
        path: &str,
        key_id: &str,
        ctx: &OpContext,
        listed: F,
    ) -> Result<Reply<()>, EntraError>
    where
        F: Fn() -> FF,
        FF: std::future::Future<Output = Result<Reply<Vec<PasswordCredentialInfo>>, EntraError>>,
    {
        let body = &RemovePasswordBody {
            key_id: id(key_id)?,
        };
        let listed = &listed;
        self.post_once(operation, path, body, ctx, move || async move {
            let now = listed().await?;
            let gone = !now
                .value
                .iter()
                .any(|p| p.key_id.eq_ignore_ascii_case(key_id));
            Ok(gone.then_some(Reply {
                value: (),
                meta: now.meta,
            }))
        })
        .await
    }

    /// `GET /applications(appId='…')`: by client id through the alternate key, which an app
    /// holding only `Application.ReadWrite.OwnedBy` may read for apps it owns (it may not list
    /// or `$filter` `/applications`).
    pub async fn get_application_by_app_id(
        &self,
        app_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Application>, EntraError> {
        let path = format!("applications(appId={})", key(id(app_id)?));
        self.get_selected("get_application_by_app_id", &path, APP_SELECT, ctx)
            .await
    }

    /// `GET /applications/{id}/owners`: the users and service principals that own the app
    /// (an owner may manage it without an admin role; an app with
    /// `Application.ReadWrite.OwnedBy` may manage the apps its service principal owns).
    pub async fn list_application_owners(
        &self,
        app_object_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<DirectoryObject>>, EntraError> {
        let path = format!("applications/{}/owners", id(app_object_id)?);
        self.list_path("list_application_owners", &path, ctx).await
    }

    /// `GET /applications/{id}/federatedIdentityCredentials`: the outside issuers whose tokens
    /// sign in as the app (workload identity federation); all pages.
    pub async fn list_federated_identity_credentials(
        &self,
        app_object_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<Vec<FederatedIdentityCredential>>, EntraError> {
        let path = format!(
            "applications/{}/federatedIdentityCredentials",
            id(app_object_id)?
        );
        let op = "list_federated_identity_credentials";
        self.list_path(op, &path, ctx).await
    }

    /// `POST /applications/{id}/owners/$ref` with `{"@odata.id": ".../directoryObjects/{id}"}`
    /// (204). Graph answers 400 "One or more added object references already exist" when
    /// `owner_id` already owns it: check [`GraphClient::list_application_owners`] first. An
    /// unanswered attempt is looked for among the owners before it is sent again.
    pub async fn add_application_owner(
        &self,
        app_object_id: &str,
        owner_id: &str,
        ctx: &OpContext,
    ) -> Result<Reply<()>, EntraError> {
        let path = &format!("applications/{}/owners/$ref", id(app_object_id)?);
        let reference = self.url(&format!("directoryObjects/{}", id(owner_id)?), &[])?;
        let body = &serde_json::json!({ "@odata.id": reference.as_str() });
        self.post_once(
            "add_application_owner",
            path,
            body,
            ctx,
            move || async move {
                let owners = self.list_application_owners(app_object_id, ctx).await?;
                let meta = owners.meta;
                let owns = owners
                    .value
                    .iter()
                    .any(|o| o.id.eq_ignore_ascii_case(owner_id));
                Ok(owns.then_some(Reply { value: (), meta }))
            },
        )
        .await
    }
}
