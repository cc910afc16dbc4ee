//! The checks, in the order of [`crate::report::names`].

use std::collections::BTreeSet;
use std::time::Duration;

use entra_client::graph::roles::template;
use entra_client::{EntraClient, EntraError, OpContext, TokenSet, access_token_claims};
use secrecy::SecretString;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::input::VerifyInput;
use crate::platform;
use crate::report::{Api, Check, Finding, Report, Status, names};

/// The scope of the Graph client-credentials token.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The scope of the Skype and Teams Tenant Admin API token.
pub const TENANT_ADMIN_SCOPE: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239/.default";

/// Application permissions that let an app-only token read directory role assignments.
const READ_ROLES_WITH: &str = "RoleManagement.Read.Directory (or Directory.Read.All)";
/// Application permissions that let an app-only token read service principals.
pub(crate) const READ_APPS_WITH: &str = "Application.Read.All (or Directory.Read.All)";

/// Runs the checks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The only way to Microsoft (or the emulator).
    entra: EntraClient,
}

/// A display name for a role template id, when it is one we know.
pub fn role_name(template_id: &str) -> String {
    let known = [
        (template::GLOBAL_ADMINISTRATOR, "Global Administrator"),
        (
            template::APPLICATION_ADMINISTRATOR,
            "Application Administrator",
        ),
        (
            template::CLOUD_APPLICATION_ADMINISTRATOR,
            "Cloud Application Administrator",
        ),
        (
            template::PRIVILEGED_ROLE_ADMINISTRATOR,
            "Privileged Role Administrator",
        ),
        (template::USER_ADMINISTRATOR, "User Administrator"),
        (
            template::DOMAIN_NAME_ADMINISTRATOR,
            "Domain Name Administrator",
        ),
        (template::TEAMS_ADMINISTRATOR, "Teams Administrator"),
        (
            template::TEAMS_COMMUNICATIONS_ADMINISTRATOR,
            "Teams Communications Administrator",
        ),
        (
            template::SKYPE_FOR_BUSINESS_ADMINISTRATOR,
            "Skype for Business Administrator",
        ),
    ];
    known
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(template_id))
        .map(|(_, n)| format!("{n} ({template_id})"))
        .unwrap_or_else(|| template_id.to_owned())
}

/// `lack A, B; extra: C` between two sets, or `None` when equal.
fn set_diff(expected: &BTreeSet<String>, actual: &BTreeSet<String>) -> Option<String> {
    let missing: Vec<&str> = expected.difference(actual).map(String::as_str).collect();
    let extra: Vec<&str> = actual.difference(expected).map(String::as_str).collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("lack {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        parts.push(format!("extra: {}", extra.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// An STS or Graph error for a detail: the error's own text (codes and ids, never tokens).
pub(crate) fn describe(e: &EntraError) -> String {
    e.root().to_string()
}

/// Whether the STS rejected the credential itself (not a transport or service problem).
fn credential_rejected(e: &EntraError) -> bool {
    matches!(e.root(), EntraError::Sts(s) if s.error == "invalid_client" || s.error == "unauthorized_client")
}

/// A token check Microsoft's sign-in service did not answer (unreachable, 5xx, throttled past
/// the retries): not checked, so WARN saying why, never a FAIL of the registration (nothing
/// says its secret is wrong) and never a finding to repair.
fn unanswered(name: &str, e: &EntraError) -> Check {
    Check::new(
        name,
        Status::Warn,
        format!(
            "could not be checked: Microsoft's sign-in service did not answer ({}); the next run \
             checks again",
            describe(e)
        ),
    )
}

impl Verifier {
    /// A verifier talking through `entra`.
    pub fn new(entra: EntraClient) -> Self {
        Self { entra }
    }

    /// The Entra client (repair uses it too).
    pub fn entra(&self) -> &EntraClient {
        &self.entra
    }

    async fn app_token(&self, input: &VerifyInput, scope: &str) -> Result<TokenSet, EntraError> {
        // A fresh token every run (no cache): its `roles` are the grants as of now.
        self.entra
            .sts()
            .client_credentials(
                &input.tenant_id,
                &input.client_id,
                &input.secret,
                scope,
                &OpContext::new(),
            )
            .await
    }

    /// Runs every check and returns the report (not yet recorded; see [`Report::record`]).
    pub async fn verify(&self, input: &VerifyInput) -> Report {
        let mut checks = Vec::new();
        let mut findings = Vec::new();
        checks.push(platform::check(&input.platform, input.service_id.as_deref()).await);

        let graph = self.app_token(input, GRAPH_SCOPE).await;
        checks.push(match &graph {
            Ok(_) => Check::new(
                names::CLIENT_CREDENTIALS,
                Status::Ok,
                format!(
                    "the stored secret{} gets a Microsoft Graph token",
                    key_note(input)
                ),
            ),
            Err(e) if e.is_outage() => unanswered(names::CLIENT_CREDENTIALS, e),
            Err(e) => {
                if credential_rejected(e) {
                    findings.push(Finding::SecretRejected { error: describe(e) });
                }
                Check::new(
                    names::CLIENT_CREDENTIALS,
                    Status::Fail,
                    format!(
                        "the stored secret{} gets no Microsoft Graph token: {}",
                        key_note(input),
                        describe(e)
                    ),
                )
            }
        });

        let admin_api = if input.tenant_admin_permissions.is_empty() {
            None
        } else {
            let t = self.app_token(input, TENANT_ADMIN_SCOPE).await;
            checks.push(match &t {
                Ok(_) => Check::new(
                    names::TENANT_ADMIN_API_TOKEN,
                    Status::Ok,
                    "the stored secret gets a Skype and Teams Tenant Admin API token",
                ),
                Err(e) if e.is_outage() => unanswered(names::TENANT_ADMIN_API_TOKEN, e),
                Err(e) => Check::new(
                    names::TENANT_ADMIN_API_TOKEN,
                    Status::Fail,
                    format!("no Skype and Teams Tenant Admin API token: {}", describe(e)),
                ),
            });
            Some(t)
        };

        checks.push(token_roles(
            input,
            &graph,
            admin_api.as_ref(),
            &mut findings,
        ));

        let app_graph = graph.as_ref().ok().map(|t| t.access_token.clone());
        let reader = input.reader_token.clone().or(app_graph);
        checks.push(
            self.directory_roles(input, reader.clone(), &mut findings)
                .await,
        );
        checks.push(secret_expiry(input, &mut findings));
        checks.push(self.temporary_app(input, reader.clone()).await);
        checks.extend(self.app_credentials(input, reader, &mut findings).await);

        Report {
            tenant_id: input.tenant_id.clone(),
            client_id: input.client_id.clone(),
            app_object_id: input.app_object_id.clone(),
            service_id: input.service_id.clone(),
            checks,
            findings,
            checked_at: OffsetDateTime::now_utc(),
        }
    }

    async fn directory_roles(
        &self,
        input: &VerifyInput,
        reader: Option<SecretString>,
        findings: &mut Vec<Finding>,
    ) -> Check {
        let name = names::DIRECTORY_ROLES;
        let Some(token) = reader else {
            return Check::new(
                name,
                Status::Warn,
                format!(
                    "could not read: no token (the app did not authenticate and no reader token was given); needs {READ_ROLES_WITH} or an admin sign-in"
                ),
            );
        };
        let graph = self.entra.graph(token);
        let assigned = match graph
            .list_directory_role_assignments(&input.sp_id, &OpContext::new())
            .await
        {
            Ok(r) => r.value,
            Err(e) if e.is_authorization_denied() => {
                let who = reader_name(input);
                return Check::new(
                    name,
                    Status::Warn,
                    format!(
                        "could not read the service principal's directory role assignments with {who}: needs {READ_ROLES_WITH}, or an admin sign-in"
                    ),
                );
            }
            Err(e) => {
                return Check::new(
                    name,
                    Status::Warn,
                    format!(
                        "could not read directory role assignments: {}",
                        describe(&e)
                    ),
                );
            }
        };
        let actual: BTreeSet<String> = assigned
            .iter()
            .map(|a| a.role_definition_id.to_ascii_lowercase())
            .collect();
        let expected: BTreeSet<String> = input
            .directory_roles
            .iter()
            .map(|r| r.template_id.to_ascii_lowercase())
            .collect();
        for r in &input.directory_roles {
            if !actual.contains(&r.template_id.to_ascii_lowercase()) {
                findings.push(Finding::MissingRole {
                    name: r.name.clone(),
                    template_id: r.template_id.clone(),
                });
            }
        }
        for id in actual.difference(&expected) {
            findings.push(Finding::ExtraRole {
                role_definition_id: id.clone(),
            });
        }
        let show =
            |s: &BTreeSet<String>| -> BTreeSet<String> { s.iter().map(|i| role_name(i)).collect() };
        match set_diff(&show(&expected), &show(&actual)) {
            None => Check::new(
                name,
                Status::Ok,
                format!(
                    "the service principal holds exactly: {}",
                    list_or_none(&show(&actual))
                ),
            ),
            Some(d) => Check::new(
                name,
                Status::Fail,
                format!("the service principal's roles {d}"),
            ),
        }
    }

    async fn temporary_app(&self, input: &VerifyInput, reader: Option<SecretString>) -> Check {
        let name = names::TEMPORARY_APP_REMOVED;
        let app = &input.temporary_app_name;
        let client_id = input.temporary_app_client_id.trim();
        if client_id.is_empty() {
            return Check::new(
                name,
                Status::Warn,
                format!("could not look for {app}: no token app client id is configured"),
            );
        }
        let Some(token) = reader else {
            return Check::new(
                name,
                Status::Warn,
                format!(
                    "could not look for {app}: no token; needs {READ_APPS_WITH} or an admin sign-in"
                ),
            );
        };
        // By appId: the consented service principal carries the provider app's own name.
        match self
            .entra
            .graph(token)
            .find_service_principal_by_app_id(client_id, &OpContext::new())
            .await
        {
            Ok(r) => match r.value {
                None => Check::new(
                    name,
                    Status::Ok,
                    format!("no enterprise app of the token app (appId {client_id})"),
                ),
                Some(sp) => Check::new(
                    name,
                    Status::Fail,
                    format!(
                        "the temporary enterprise app {} is still present (service principal {}, appId {client_id})",
                        sp.display_name.as_deref().unwrap_or(app),
                        sp.id
                    ),
                ),
            },
            Err(e) if e.is_authorization_denied() => {
                let who = reader_name(input);
                Check::new(
                    name,
                    Status::Warn,
                    format!(
                        "could not look for {app} with {who}: needs {READ_APPS_WITH}, or an admin sign-in"
                    ),
                )
            }
            Err(e) => Check::new(
                name,
                Status::Warn,
                format!("could not look for {app}: {}", describe(&e)),
            ),
        }
    }
}

fn key_note(input: &VerifyInput) -> String {
    input
        .secret_key_id
        .as_deref()
        .map(|k| format!(" (key {k})"))
        .unwrap_or_default()
}

/// Which token read Graph, for the detail of a refused read: the reader token given, else
/// the app's own (see [`Verifier::verify`]).
fn reader_name(input: &VerifyInput) -> &'static str {
    if input.reader_token.is_some() {
        "the reader token"
    } else {
        "the app's own token"
    }
}

fn list_or_none(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Compares each token's `roles` claim with the profile's permissions for its API.
fn token_roles(
    input: &VerifyInput,
    graph: &Result<TokenSet, EntraError>,
    admin_api: Option<&Result<TokenSet, EntraError>>,
    findings: &mut Vec<Finding>,
) -> Check {
    let name = names::TOKEN_ROLES;
    let mut apis = vec![(Api::Graph, "Graph", graph, &input.graph_permissions)];
    if let Some(t) = admin_api {
        apis.push((
            Api::TenantAdmin,
            "Tenant Admin API",
            t,
            &input.tenant_admin_permissions,
        ));
    }
    let mut problems = Vec::new();
    let mut unread = Vec::new();
    let mut fine = Vec::new();
    for (api, label, token, wanted) in apis {
        let Ok(token) = token else {
            unread.push(format!("{label}: no token to read"));
            continue;
        };
        // Microsoft: "access tokens must be treated as opaque strings … might not always be a
        // JWT that can be decoded". Such a token says nothing here: not determinable, not a
        // failure.
        let Ok(claims) = access_token_claims(&token.access_token) else {
            unread.push(format!(
                "{label}: its access token is not a readable JWT (Microsoft may issue opaque \
                 access tokens), so its roles cannot be compared with the profile"
            ));
            continue;
        };
        let actual: BTreeSet<String> = claims.roles.into_iter().collect();
        let expected: BTreeSet<String> = wanted.iter().cloned().collect();
        for v in expected.difference(&actual) {
            findings.push(Finding::MissingPermission {
                api,
                value: v.clone(),
            });
        }
        for v in actual.difference(&expected) {
            findings.push(Finding::ExtraPermission {
                api,
                value: v.clone(),
            });
        }
        match set_diff(&expected, &actual) {
            Some(d) => problems.push(format!("{label} token roles {d}")),
            None => fine.push(format!("{label}: {}", list_or_none(&actual))),
        }
    }
    if !problems.is_empty() {
        let mut all = problems;
        all.extend(unread);
        return Check::new(name, Status::Fail, all.join("; "));
    }
    if !unread.is_empty() {
        return Check::new(
            name,
            Status::Warn,
            format!("not checked: {} (see the token checks)", unread.join("; ")),
        );
    }
    Check::new(
        name,
        Status::Ok,
        format!("token roles equal the profile ({})", fine.join("; ")),
    )
}

fn secret_expiry(input: &VerifyInput, findings: &mut Vec<Finding>) -> Check {
    let name = names::SECRET_EXPIRY;
    let Some(expires) = input.secret_expires else {
        return Check::new(name, Status::Warn, "the secret's expiry is not recorded");
    };
    let at = expires.format(&Rfc3339).unwrap_or_default();
    let left = expires - OffsetDateTime::now_utc();
    let days = |d: Duration| d.as_secs() / 86_400;
    // A secret that has expired or soon will: a finding, and the check says how soon.
    let mut expiring = |status: Status, detail: String| {
        findings.push(Finding::SecretExpiring {
            expires: at.clone(),
        });
        Check::new(name, status, detail)
    };
    if left <= time::Duration::ZERO {
        return expiring(Status::Fail, format!("the secret expired at {at}"));
    }
    let left_std = Duration::from_secs(left.whole_seconds().max(0).unsigned_abs());
    let left_days = days(left_std);
    if left_std <= input.critical {
        return expiring(
            Status::Fail,
            format!(
                "the secret expires at {at}, in {left_days} days (within {} days): rotate it now",
                days(input.critical)
            ),
        );
    }
    if left_std <= input.horizon {
        return expiring(
            Status::Warn,
            format!(
                "the secret expires at {at}, in {left_days} days (within the {}-day horizon)",
                days(input.horizon)
            ),
        );
    }
    Check::new(
        name,
        Status::Ok,
        format!("the secret expires at {at}, in {left_days} days"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_diff_names_both_sides() {
        let e: BTreeSet<String> = ["User.Read.All", "Organization.Read.All"]
            .map(String::from)
            .into();
        let a: BTreeSet<String> = ["Organization.Read.All", "Directory.Read.All"]
            .map(String::from)
            .into();
        assert_eq!(
            set_diff(&e, &a).as_deref(),
            Some("lack User.Read.All; extra: Directory.Read.All")
        );
        assert_eq!(set_diff(&e, &e), None);
    }

    #[test]
    fn role_names_are_shown_with_ids() {
        assert_eq!(
            role_name(template::TEAMS_ADMINISTRATOR),
            format!("Teams Administrator ({})", template::TEAMS_ADMINISTRATOR)
        );
        assert_eq!(role_name("x"), "x");
    }
}
