//! What an attached registration holds, from its own app-only tokens or, when Microsoft
//! issues them opaque, from Graph; compared with the profile it must satisfy.

use entra_client::{OpContext, TokenSet};
use onboard_core::profiles::{PermissionRef, Resource};
use secrecy::SecretString;

use crate::Credentials;
use crate::error::CredentialsError;
use crate::grants::permission_name;
use crate::model::Registration;
use crate::session::OPAQUE_TOKEN;

impl Credentials {
    /// Gets the tokens and compares them with the profile: (missing lines, SP object id).
    pub(crate) async fn check_attach(
        &self,
        reg: &mut Registration,
        secret: &SecretString,
    ) -> Result<(Vec<String>, String), CredentialsError> {
        let graph_scope = "https://graph.microsoft.com/.default";
        let t = self
            .client_credentials(reg, secret, graph_scope, false)
            .await
            .map_err(|e| not_authenticated(reg, e))?;
        let held = match self.held_from_tokens(reg, secret, &t).await? {
            Some(h) => h,
            None => self.held_from_graph(reg, t).await?,
        };
        if let Some(n) = &held.display_name {
            reg.display_name = n.clone();
        }
        let mut missing = Vec::new();
        for p in &reg.profile.permissions {
            let name = permission_name(p);
            if !held
                .permissions
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&name))
            {
                missing.push(format!(
                    "application permission {} of {} (with admin consent)",
                    p.value,
                    p.resource.display_name()
                ));
            }
        }
        for r in &reg.profile.directory_roles {
            if !held
                .role_ids
                .iter()
                .any(|w| w.eq_ignore_ascii_case(&r.template_id))
            {
                missing.push(format!(
                    "directory role {} assigned to the service principal",
                    r.name
                ));
            }
        }
        Ok((missing, held.sp_id))
    }

    /// What the registration holds, from the claims of its app-only tokens (`graph`, and one
    /// per other API of the profile): `None` when one is not a readable JWT, which Microsoft
    /// allows ("access tokens must be treated as opaque strings"), so Graph must be asked.
    async fn held_from_tokens(
        &self,
        reg: &Registration,
        secret: &SecretString,
        graph: &TokenSet,
    ) -> Result<Option<Held>, CredentialsError> {
        let Ok(c) = graph.access_token_claims() else {
            return Ok(None);
        };
        // No `wids` at all: the app is not configured to emit them (the manifest's
        // `groupMembershipClaims`, Learn access-token-claims-reference), which says nothing of
        // its directory roles; Entra's app-only tokens otherwise carry at least its default
        // value. Graph is asked instead, as for an opaque token.
        if c.wids.is_empty() && !reg.profile.directory_roles.is_empty() {
            return Ok(None);
        }
        let mut permissions: Vec<String> = c
            .roles
            .iter()
            .map(|r| name_of(Resource::Graph, r))
            .collect();
        let others: Vec<Resource> = reg
            .profile
            .permissions
            .iter()
            .map(|p| p.resource)
            .filter(|r| *r != Resource::Graph)
            .collect();
        let mut asked = Vec::new();
        for res in others {
            if asked.contains(&res) {
                continue;
            }
            asked.push(res);
            let scope = format!("{}/.default", res.app_id());
            // A token refused for an API (no consent there): nothing held of it. An outage is
            // not a refusal: it is the answer.
            match self.client_credentials(reg, secret, &scope, false).await {
                Ok(t) => {
                    let Ok(theirs) = t.access_token_claims() else {
                        return Ok(None);
                    };
                    permissions.extend(theirs.roles.iter().map(|v| name_of(res, v)));
                }
                Err(e) if e.is_entra_outage() => return Err(e),
                Err(_) => {}
            }
        }
        Ok(Some(Held {
            permissions,
            role_ids: c.wids,
            sp_id: c.oid.unwrap_or_default(),
            display_name: c.app_displayname,
        }))
    }

    /// What the registration holds, read from Graph: with the tenant's admin session if there
    /// is one, else with the registration's own Graph token `own`. When Graph refuses the reads,
    /// FAILED_PRECONDITION says the grants cannot be checked and how they can; an outage keeps
    /// its own status.
    async fn held_from_graph(
        &self,
        reg: &Registration,
        own: TokenSet,
    ) -> Result<Held, CredentialsError> {
        tracing::info!(
            client_id = %reg.client_id,
            "the app-only access token is not a readable JWT; reading its grants from Graph"
        );
        let graph = self
            .reader_graph(reg, &self.inner.entra.graph(own.access_token))
            .await;
        let cannot = |e: CredentialsError| {
            if e.is_entra_outage() {
                return e;
            }
            CredentialsError::FailedPrecondition(format!(
                "what registration {} holds cannot be checked: Microsoft issued its access \
                 token {OPAQUE_TOKEN}, and Graph did not answer the reads ({e}); sign an admin \
                 in for tenant {} and attach again",
                reg.client_id, reg.tenant_id
            ))
        };
        let sp = graph
            .find_service_principal_by_app_id(&reg.client_id, &OpContext::new())
            .await
            .map_err(|e| {
                cannot(CredentialsError::entra(
                    "find_service_principal_by_app_id",
                    e,
                ))
            })?
            .value
            .ok_or_else(|| {
                cannot(CredentialsError::FailedPrecondition(
                    "no service principal has the registration's client id".into(),
                ))
            })?;
        let with_sp = Registration {
            sp_id: sp.id.clone(),
            ..reg.clone()
        };
        let (permissions, role_ids) = self
            .held_via_graph(&graph, &with_sp)
            .await
            .map_err(cannot)?;
        Ok(Held {
            permissions,
            role_ids,
            sp_id: sp.id,
            display_name: sp.display_name,
        })
    }
}

/// Why the registration's own sign-in failed, as the caller can act on it. Microsoft unreachable
/// or throttling is an outage and keeps its own status (UNAVAILABLE), never "a wrong secret".
/// What Microsoft answered about the request: a tenant it does not know is the request's
/// `registration.tenant_id` (AADSTS90002); a client id it does not find there is NOT_FOUND
/// (700016); anything else (a wrong or expired secret) means the registration does not
/// authenticate with the secret given. A secret or registration made minutes ago may not be
/// known to the sign-in service yet (Microsoft's propagation), which the message says for 700016
/// and 7000215 (a wrong secret); there is no automatic retry, so a typo is answered at once.
fn not_authenticated(reg: &Registration, e: CredentialsError) -> CredentialsError {
    if e.is_entra_outage() {
        return e;
    }
    let code = match &e {
        CredentialsError::Entra { source, .. } => source.aadsts(),
        _ => None,
    };
    const FRESH: &str = " (a secret or registration made in the last few minutes may not be \
                         known to Microsoft's sign-in service yet: if it was copied correctly, \
                         try again in a minute)";
    match code {
        Some(90_002) => unknown_tenant(&reg.tenant_id),
        Some(700_016) => CredentialsError::NotFound(format!(
            "Microsoft finds no application with client id {} in tenant {} (AADSTS700016){FRESH}",
            reg.client_id, reg.tenant_id
        )),
        _ => {
            let hint = if code == Some(7_000_215) { FRESH } else { "" };
            CredentialsError::FailedPrecondition(format!(
                "the registration does not authenticate with the secret given: {e}{hint}"
            ))
        }
    }
}

/// A tenant Microsoft does not know (AADSTS90002): INVALID_ARGUMENT on
/// `registration.tenant_id`.
pub(crate) fn unknown_tenant(tenant: &str) -> CredentialsError {
    CredentialsError::InvalidArgument {
        field: "registration.tenant_id",
        reason: format!(
            "Microsoft knows no tenant {tenant} (AADSTS90002): the tenant's id or a domain of it"
        ),
    }
}

/// What a registration holds: its application permissions by name (as [`permission_name`]
/// writes them), its directory roles' template ids, its service principal and display name.
struct Held {
    /// Permission names.
    permissions: Vec<String>,
    /// Directory role template ids (`wids`, or the role assignments' definitions).
    role_ids: Vec<String>,
    /// The service principal's object id.
    sp_id: String,
    /// The app's display name, when known.
    display_name: Option<String>,
}

/// The name of permission `value` of `resource`.
fn name_of(resource: Resource, value: &str) -> String {
    permission_name(&PermissionRef {
        resource,
        value: value.to_owned(),
    })
}
