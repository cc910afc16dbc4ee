//! Changes made outside Onboard, the way an admin in the Entra portal would make them, through
//! Graph with the admin's own token: hand-made registrations, removed roles, revoked or extra
//! permissions (drift).

use anyhow::{Context, Result};
use entra_client::graph::roles::template::TEAMS_ADMINISTRATOR;
use entra_client::graph::types::ApplicationSpec;
use entra_client::{GraphClient, MICROSOFT_GRAPH_APP_ID, OpContext, TEAMS_TENANT_ADMIN_API_APP_ID};
use secrecy::SecretString;

/// A registration made by hand.
pub struct HandMade {
    /// The application's client id (`appId`).
    pub client_id: String,
    /// The application's object id.
    pub object_id: String,
    /// Its service principal's object id.
    pub sp_id: String,
    /// Its one secret.
    pub secret: SecretString,
}

/// What [`hand_made`] grants.
pub struct Grants<'a> {
    /// Microsoft Graph application permissions, by value (`User.Read.All`).
    pub graph: &'a [&'a str],
    /// Whether the Teams Tenant Admin API's `application_access` is granted too.
    pub teams_api: bool,
    /// Directory roles assigned to the service principal, by template id.
    pub role_template_ids: &'a [&'a str],
}

impl Grants<'static> {
    /// Nothing granted: an app, its service principal and a secret.
    pub const NONE: Self = Self {
        graph: &[],
        teams_api: false,
        role_template_ids: &[],
    };
}

/// The direct-routing profile's grants, complete.
pub const DIRECT_ROUTING: Grants<'static> = Grants {
    graph: &["Organization.Read.All", "User.Read.All"],
    teams_api: true,
    role_template_ids: &[TEAMS_ADMINISTRATOR],
};

/// [`DIRECT_ROUTING`] plus `Application.ReadWrite.OwnedBy`: an app that may rotate its own
/// secrets (once it owns itself).
pub const OWNED_BY: Grants<'static> = Grants {
    graph: &[
        "Organization.Read.All",
        "User.Read.All",
        "Application.ReadWrite.OwnedBy",
    ],
    ..DIRECT_ROUTING
};

/// A registration as a customer would make it in the portal: a single-tenant app named `name`,
/// its service principal, a secret, and `grants` (with admin consent).
pub async fn hand_made(g: &GraphClient, name: &str, grants: &Grants<'_>) -> Result<HandMade> {
    let ctx = OpContext::new().after_create();
    let app = g
        .upsert_application(
            &format!("hand-{name}"),
            &ApplicationSpec {
                display_name: name.into(),
                sign_in_audience: Some("AzureADMyOrg".into()),
                required_resource_access: vec![],
                extra: Default::default(),
            },
            &ctx,
        )
        .await?
        .value
        .application;
    let sp = g.create_service_principal(&app.app_id, &ctx).await?.value;
    let pw = g
        .add_password(&app.id, Some("by hand"), None, &ctx)
        .await?
        .value;
    let mut resources = vec![(MICROSOFT_GRAPH_APP_ID, grants.graph.to_vec())];
    if grants.teams_api {
        resources.push((TEAMS_TENANT_ADMIN_API_APP_ID, vec!["application_access"]));
    }
    for (res, perms) in resources {
        let rsp = g.resource_service_principal(res, &ctx).await?.value;
        for p in perms {
            let role = rsp.app_role(p).context("app role")?.id.clone();
            g.grant_app_role(&rsp.id, &sp.id, &role, &ctx).await?;
        }
    }
    for r in grants.role_template_ids {
        g.assign_directory_role(r, &sp.id, &ctx).await?;
    }
    Ok(HandMade {
        client_id: app.app_id,
        object_id: app.id,
        sp_id: sp.id,
        secret: pw.secret_text,
    })
}

/// Another secret on application `client_id`, made by hand in the portal (a customer's secret
/// for one more service, or one nobody told Onboard about): its key id and value.
pub async fn add_secret(g: &GraphClient, client_id: &str) -> Result<(String, SecretString)> {
    let ctx = OpContext::new();
    let app = g.get_application_by_app_id(client_id, &ctx).await?.value;
    let pw = g
        .add_password(&app.id, Some("by hand"), None, &ctx)
        .await?
        .value;
    Ok((pw.info.key_id, pw.secret_text))
}

/// Removes secret `key_id` from application `client_id`, as in the portal.
pub async fn remove_secret(g: &GraphClient, client_id: &str, key_id: &str) -> Result<()> {
    let ctx = OpContext::new();
    let app = g.get_application_by_app_id(client_id, &ctx).await?.value;
    g.remove_password(&app.id, key_id, &ctx).await?;
    Ok(())
}

/// A secret added to service principal `sp_id` itself (how an attacker with
/// `Application.ReadWrite.All` may sign in as an app without touching its registration): its
/// key id and value.
pub async fn add_principal_secret(g: &GraphClient, sp_id: &str) -> Result<(String, SecretString)> {
    let ctx = OpContext::new();
    let pw = g
        .add_service_principal_password(sp_id, Some("on the principal"), &ctx)
        .await?
        .value;
    Ok((pw.info.key_id, pw.secret_text))
}

/// Removes secret `key_id` from service principal `sp_id`.
pub async fn remove_principal_secret(g: &GraphClient, sp_id: &str, key_id: &str) -> Result<()> {
    g.remove_service_principal_password(sp_id, key_id, &OpContext::new())
        .await?;
    Ok(())
}

/// Uploads a certificate credential named `subject` to application `client_id` (the portal's
/// "Certificates" tab: `PATCH keyCredentials`); its key id. An empty `subject` removes every
/// certificate instead (`keyCredentials: []`) and returns an empty id.
pub async fn set_certificate(g: &GraphClient, client_id: &str, subject: &str) -> Result<String> {
    let ctx = OpContext::new();
    let app = g.get_application_by_app_id(client_id, &ctx).await?.value;
    let (key_id, creds) = if subject.is_empty() {
        (String::new(), serde_json::json!([]))
    } else {
        // A fresh UUID-shaped id (the portal's upload gets one from Graph).
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let key_id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            n >> 48,
            n & 0xffff_ffff_ffff
        );
        let creds = serde_json::json!([{
            "keyId": key_id,
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "displayName": subject,
            "key": "MIIBfake",
        }]);
        (key_id, creds)
    };
    g.update_application(
        &app.id,
        &serde_json::json!({ "keyCredentials": creds }),
        &ctx,
    )
    .await?;
    Ok(key_id)
}

/// Removes the service principal's assignment of directory role `template_id`.
pub async fn remove_role(g: &GraphClient, sp_id: &str, template_id: &str) -> Result<()> {
    let ctx = OpContext::new();
    let all = g.list_directory_role_assignments(sp_id, &ctx).await?.value;
    let a = all
        .iter()
        .find(|a| a.role_definition_id == template_id)
        .with_context(|| format!("no assignment of {template_id}"))?;
    g.remove_directory_role_assignment(&a.id, &ctx).await?;
    Ok(())
}

/// Assigns directory role `template_id` to the service principal.
pub async fn assign_role(g: &GraphClient, sp_id: &str, template_id: &str) -> Result<()> {
    g.assign_directory_role(template_id, sp_id, &OpContext::new())
        .await?;
    Ok(())
}

/// Microsoft Graph's service principal id and the id of its application permission `value`.
async fn graph_app_role(g: &GraphClient, value: &str) -> Result<(String, String)> {
    let ctx = OpContext::new();
    let graph_sp = g
        .resource_service_principal(MICROSOFT_GRAPH_APP_ID, &ctx)
        .await?
        .value;
    let role = graph_sp
        .app_role(value)
        .context("no such app role")?
        .id
        .clone();
    Ok((graph_sp.id, role))
}

/// Revokes the service principal's Microsoft Graph application permission `value`.
pub async fn revoke_permission(g: &GraphClient, sp_id: &str, value: &str) -> Result<()> {
    let (graph_sp, role) = graph_app_role(g, value).await?;
    let ctx = OpContext::new();
    let held = g.list_app_role_assignments(sp_id, &ctx).await?.value;
    let a = held
        .iter()
        .find(|a| a.app_role_id == role && a.resource_id == graph_sp)
        .context("grant not held")?;
    g.revoke_app_role(&graph_sp, &a.id, &ctx).await?;
    Ok(())
}

/// Grants the service principal Microsoft Graph application permission `value`.
pub async fn grant_permission(g: &GraphClient, sp_id: &str, value: &str) -> Result<()> {
    let (graph_sp, role) = graph_app_role(g, value).await?;
    g.grant_app_role(&graph_sp, sp_id, &role, &OpContext::new())
        .await?;
    Ok(())
}

/// Drift as the verification tests make it: Teams Administrator removed and Graph's
/// `User.Read.All` revoked.
pub async fn tamper(g: &GraphClient, sp_id: &str) -> Result<()> {
    remove_role(g, sp_id, TEAMS_ADMINISTRATOR).await?;
    revoke_permission(g, sp_id, "User.Read.All").await
}

/// A federated identity credential `name` added to application `client_id` (the portal's
/// "Certificates & secrets" > "Federated credentials": a token GitHub Actions gives one
/// repository's workflows signs in as the app, with no secret); its id. Raw Graph over the
/// emulator's HTTPS with the admin's `token`: Onboard's client makes no such credential.
pub async fn add_federated_credential(
    sim: &entra_sim::Sim,
    token: &SecretString,
    client_id: &str,
    name: &str,
) -> Result<String> {
    let body = serde_json::json!({
        "name": name,
        "issuer": "https://token.actions.githubusercontent.com",
        "subject": "repo:elsewhere/deploy:ref:refs/heads/main",
        "audiences": ["api://AzureADTokenExchange"],
    });
    let answer = federated(sim, token, client_id, reqwest::Method::POST, "", Some(body)).await?;
    let made: serde_json::Value = serde_json::from_str(&answer)?;
    Ok(made["id"].as_str().context("no id")?.to_owned())
}

/// Removes federated identity credential `id` from application `client_id`.
pub async fn remove_federated_credential(
    sim: &entra_sim::Sim,
    token: &SecretString,
    client_id: &str,
    id: &str,
) -> Result<()> {
    let item = format!("/{id}");
    federated(sim, token, client_id, reqwest::Method::DELETE, &item, None).await?;
    Ok(())
}

/// `METHOD /applications(appId='client_id')/federatedIdentityCredentials{item}`: the body of a
/// 2xx answer.
async fn federated(
    sim: &entra_sim::Sim,
    token: &SecretString,
    client_id: &str,
    method: reqwest::Method,
    item: &str,
    body: Option<serde_json::Value>,
) -> Result<String> {
    use secrecy::ExposeSecret;
    let http = reqwest::Client::builder()
        .tls_certs_only([crate::wire::Wire::ca(sim)])
        .build()?;
    let url = format!(
        "{}/v1.0/applications(appId='{client_id}')/federatedIdentityCredentials{item}",
        sim.base_url()
    );
    let mut rb = http
        .request(method, &url)
        .bearer_auth(token.expose_secret());
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let answer = rb.send().await?;
    let status = answer.status();
    let text = answer.text().await?;
    anyhow::ensure!(status.is_success(), "{url}: {status} {text}");
    Ok(text)
}
