//! The `app_credentials` check: the application holds no client secret Onboard does not hold,
//! no certificate and no federated identity credential (Onboard makes neither); its service
//! principal holds no credential at all. A credential added outside Onboard lets whoever holds
//! it (or, federated, whoever the outside issuer gives a token) sign in as the app, with every
//! permission and directory role it has: the check FAILs and names each one (a
//! [`Finding::ForeignCredential`] for drift detection); nothing is removed automatically.

use entra_client::OpContext;
use entra_client::graph::types::{
    Application, FederatedIdentityCredential, PasswordCredentialInfo, PrincipalCredentials,
};
use secrecy::SecretString;

use crate::checks::{READ_APPS_WITH, Verifier, describe};
use crate::input::{ManagedSecret, VerifyInput};
use crate::report::{Check, Finding, Status, names};

impl Verifier {
    /// The check, when `input` says which secrets Onboard holds (else `None`: not run).
    /// `reader` reads the application (an admin's token, or the app's own when it may read
    /// itself).
    pub(crate) async fn app_credentials(
        &self,
        input: &VerifyInput,
        reader: Option<SecretString>,
        findings: &mut Vec<Finding>,
    ) -> Option<Check> {
        let managed = input.managed_secrets.as_ref()?;
        let name = names::APP_CREDENTIALS;
        let cannot = |why: String| {
            Some(Check::new(
                name,
                Status::Warn,
                format!("could not read the app's secrets and certificates: {why}"),
            ))
        };
        let Some(token) = reader else {
            return cannot(format!(
                "no token; needs {READ_APPS_WITH} or an admin sign-in"
            ));
        };
        let graph = self.entra().graph(token);
        let ctx = OpContext::new();
        let app = match graph
            .get_application_by_app_id(&input.client_id, &ctx)
            .await
        {
            Ok(r) => r.value,
            Err(e) => return cannot(why_unread(&e)),
        };
        let mut foreign = foreign_credentials(&app, managed);
        // What else signs in as the app: Onboard makes none of it. A token that may read the
        // app but not the rest (an app that owns itself may not read its principal) still
        // reports what it read, and says what it could not.
        let mut unread = Vec::new();
        match graph
            .list_federated_identity_credentials(&app.id, &ctx)
            .await
        {
            Ok(r) => foreign.extend(federated_credentials(&r.value)),
            Err(e) => unread.push(format!(
                "its federated identity credentials could not be read: {}",
                why_unread(&e)
            )),
        }
        if !input.sp_id.is_empty() {
            match graph
                .get_service_principal_credentials(&input.sp_id, &ctx)
                .await
            {
                Ok(r) => foreign.extend(principal_credentials(&r.value)),
                Err(e) => unread.push(format!(
                    "its service principal's own credentials could not be read: {}",
                    why_unread(&e)
                )),
            }
        }
        if !foreign.is_empty() {
            let detail = foreign
                .iter()
                .map(Finding::detail)
                .collect::<Vec<_>>()
                .join("; ");
            findings.extend(foreign);
            return Some(Check::new(
                name,
                Status::Fail,
                format!(
                    "{detail}: whoever holds it signs in as the app; remove it unless it is yours"
                ),
            ));
        }
        let held = app.password_credentials.len();
        Some(if unread.is_empty() {
            Check::new(
                name,
                Status::Ok,
                format!(
                    "the app holds only secrets Onboard manages ({held}), no certificate and no \
                     federated identity credential, and its service principal no credential"
                ),
            )
        } else {
            Check::new(
                name,
                Status::Warn,
                format!(
                    "the app holds only secrets Onboard manages ({held}) and no certificate; {}",
                    unread.join("; ")
                ),
            )
        })
    }
}

/// Why a read failed, for the check's detail: the permission it needs when refused.
fn why_unread(e: &entra_client::EntraError) -> String {
    if e.is_authorization_denied() {
        format!("needs {READ_APPS_WITH}, or an admin sign-in")
    } else {
        describe(e)
    }
}

/// The application's credentials Onboard did not make: secrets matching no managed one (by
/// key id; by hint for a managed secret whose key id is unknown; by the unique display name
/// of a rotation's secret being added), and every certificate.
pub fn foreign_credentials(app: &Application, managed: &[ManagedSecret]) -> Vec<Finding> {
    let ours = |p: &PasswordCredentialInfo| {
        managed.iter().any(|m| match &m.marker {
            Some(marker) => p.display_name.as_deref() == Some(marker.as_str()),
            None if m.key_id.is_empty() => p.hint.as_deref() == Some(m.hint.as_str()),
            None => m.key_id.eq_ignore_ascii_case(&p.key_id),
        })
    };
    let secrets = app.password_credentials.iter().filter(|p| !ours(p));
    let secrets = secrets.map(|p| (&p.key_id, &p.display_name));
    let certificates = app
        .key_credentials
        .iter()
        .map(|k| (&k.key_id, &k.display_name));
    let mut found = foreign("secret", secrets);
    found.extend(foreign("certificate", certificates));
    found
}

/// Every secret and certificate on the service principal itself (Onboard makes none there).
pub fn principal_credentials(sp: &PrincipalCredentials) -> Vec<Finding> {
    let secrets = sp.password_credentials.iter();
    let certificates = sp.key_credentials.iter();
    let mut found = foreign(
        "service principal secret",
        secrets.map(|p| (&p.key_id, &p.display_name)),
    );
    found.extend(foreign(
        "service principal certificate",
        certificates.map(|k| (&k.key_id, &k.display_name)),
    ));
    found
}

/// Every federated identity credential on the application (Onboard makes none): named by its
/// name, issuer and subject, keyed by its id.
pub fn federated_credentials(held: &[FederatedIdentityCredential]) -> Vec<Finding> {
    let labels: Vec<(&String, Option<String>)> = held
        .iter()
        .map(|f| {
            let label = format!("{} (issuer {}, subject {})", f.name, f.issuer, f.subject);
            (&f.id, Some(label))
        })
        .collect();
    foreign(
        "federated identity credential",
        labels.iter().map(|(id, label)| (*id, label)),
    )
}

/// A finding of kind `credential` for each (key id, label).
fn foreign<'a>(
    credential: &'static str,
    found: impl Iterator<Item = (&'a String, &'a Option<String>)>,
) -> Vec<Finding> {
    found
        .map(|(key_id, display_name)| Finding::ForeignCredential {
            credential,
            key_id: key_id.clone(),
            display_name: display_name.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(json: serde_json::Value) -> Application {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn secrets_match_by_key_id_or_by_hint_when_the_key_id_is_unknown() {
        let a = app(serde_json::json!({
            "id": "o", "appId": "c",
            "passwordCredentials": [
                {"keyId": "AAAA-1", "hint": "abc", "displayName": "svc-1"},
                {"keyId": "bbbb-2", "hint": "xyz", "displayName": "svc-2"},
                {"keyId": "cccc-3", "hint": "def", "displayName": "by hand"}
            ],
            "keyCredentials": [
                {"keyId": "dddd-4", "displayName": "CN=backdoor", "type": "AsymmetricX509Cert", "usage": "Verify"}
            ]
        }));
        let managed = [
            ManagedSecret {
                key_id: "aaaa-1".into(),
                hint: "abc".into(),
                marker: None,
            },
            ManagedSecret {
                key_id: String::new(),
                hint: "xyz".into(),
                marker: None,
            },
        ];
        let found = foreign_credentials(&a, &managed);
        let keys: Vec<String> = found.iter().map(Finding::key).collect();
        assert_eq!(
            keys,
            ["credential/cccc-3/foreign", "credential/dddd-4/foreign"]
        );
        assert!(
            found[1].detail().contains("certificate \"CN=backdoor\""),
            "{}",
            found[1].detail()
        );
        assert!(!found[0].repairable());
        // Everything managed, no certificate: nothing foreign.
        let all = [
            ManagedSecret {
                key_id: "aaaa-1".into(),
                hint: "abc".into(),
                marker: None,
            },
            ManagedSecret {
                key_id: "BBBB-2".into(),
                hint: "xyz".into(),
                marker: None,
            },
            ManagedSecret {
                key_id: String::new(),
                hint: String::new(),
                marker: Some("by hand".into()),
            },
        ];
        let mut no_cert = a.clone();
        no_cert.key_credentials.clear();
        assert!(foreign_credentials(&no_cert, &all).is_empty());
    }
}
