//! `Debug` for the messages that carry secrets (see `REDACTED` in build.rs): every field but
//! the secret ones, so a stray `{:?}` in a log line never prints a token or a client secret.

use std::fmt;

use crate::v1::*;

/// Stands in for a secret value; says only whether one is present.
const HIDDEN: &str = "<redacted>";

fn hidden(s: &str) -> &'static str {
    if s.is_empty() { "" } else { HIDDEN }
}

impl fmt::Debug for CreateInvitationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateInvitationResponse")
            .field("invitation", &self.invitation)
            .field("token", &hidden(&self.token))
            .field("activation_url", &hidden(&self.activation_url))
            .field("email", &self.email)
            .finish()
    }
}

impl fmt::Debug for RenderedEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedEmail")
            .field("subject", &self.subject)
            .field("text", &hidden(&self.text))
            .field("html", &hidden(&self.html))
            .finish()
    }
}

impl fmt::Debug for GetInvitationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetInvitationRequest")
            .field("key", &self.key)
            .finish()
    }
}

impl fmt::Debug for get_invitation_request::Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => f.debug_tuple("Id").field(id).finish(),
            Self::Token(t) => f.debug_tuple("Token").field(&hidden(t)).finish(),
        }
    }
}

impl fmt::Debug for SignInRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInRequest")
            .field("invitation_token", &hidden(&self.invitation_token))
            .field("admin_upn", &self.admin_upn)
            .field("method", &self.method)
            .finish()
    }
}

impl fmt::Debug for WatchRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchRequest")
            .field("onboarding_id", &self.onboarding_id)
            .field("from_event", &self.from_event)
            .field("invitation_token", &hidden(&self.invitation_token))
            .finish()
    }
}

impl fmt::Debug for PlanRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanRequest")
            .field("onboarding_id", &self.onboarding_id)
            .field("app_name", &self.app_name)
            .field("profile", &self.profile)
            .field("invitation_token", &hidden(&self.invitation_token))
            .finish()
    }
}

impl fmt::Debug for ProvisionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisionRequest")
            .field("onboarding_id", &self.onboarding_id)
            .field("app_name", &self.app_name)
            .field("idempotency_key", &self.idempotency_key)
            .field("invitation_token", &hidden(&self.invitation_token))
            .field("seal_to", &self.seal_to)
            .finish()
    }
}

impl fmt::Debug for GetOnboardingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetOnboardingRequest")
            .field("onboarding_id", &self.onboarding_id)
            .field("invitation_token", &hidden(&self.invitation_token))
            .finish()
    }
}

impl fmt::Debug for CancelOnboardingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelOnboardingRequest")
            .field("onboarding_id", &self.onboarding_id)
            .field("reason", &self.reason)
            .field("invitation_token", &hidden(&self.invitation_token))
            .finish()
    }
}

impl fmt::Debug for Completed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completed")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("key_id", &self.key_id)
            .field("expires_at", &self.expires_at)
            .field("secret", &hidden(&self.secret))
            .field("sealed", &self.sealed.is_some())
            .finish()
    }
}

impl fmt::Debug for ClaimedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimedSecret")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("service_id", &self.service_id)
            .field("key_id", &self.key_id)
            .field("expires_at", &self.expires_at)
            .field("secret", &hidden(&self.secret))
            .field("audit_seq", &self.audit_seq)
            .field("sealed", &self.sealed.is_some())
            .finish()
    }
}

impl fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSecret")
            .field("info", &self.info)
            .field("secret", &hidden(&self.secret))
            .field("audit_seq", &self.audit_seq)
            .field("sealed", &self.sealed.is_some())
            .finish()
    }
}

impl fmt::Debug for AttachRegistrationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachRegistrationRequest")
            .field("registration", &self.registration)
            .field("profile", &self.profile)
            .field("service_ids", &self.service_ids)
            .field("client_secret", &hidden(&self.client_secret))
            .field("platform_version", &self.platform_version)
            .finish()
    }
}

impl fmt::Debug for IssueHandOffLinkRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssueHandOffLinkRequest")
            .field("onboarding_id", &self.onboarding_id)
            .field("invitation_token", &hidden(&self.invitation_token))
            .finish()
    }
}

impl fmt::Debug for HandOffLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandOffLink")
            .field("activation_url", &hidden(&self.activation_url))
            .field("invitation_token", &hidden(&self.invitation_token))
            .field("invitation_id", &self.invitation_id)
            .field("expires_at", &self.expires_at)
            .field("roles", &self.roles)
            .field("admin_consent_url", &self.admin_consent_url)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_debug_output() {
        let token = "tok-SECRET-123";
        let secret = "cs-SECRET-456";
        let outputs = [
            format!(
                "{:?}",
                CreateInvitationResponse {
                    token: token.into(),
                    activation_url: format!("https://x#token={token}"),
                    email: Some(RenderedEmail {
                        subject: "s".into(),
                        text: token.into(),
                        html: token.into(),
                    }),
                    invitation: None,
                }
            ),
            format!(
                "{:?}",
                GetInvitationRequest {
                    key: Some(get_invitation_request::Key::Token(token.into()))
                }
            ),
            format!(
                "{:?}",
                SignInRequest {
                    invitation_token: token.into(),
                    admin_upn: "a@b".into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                WatchRequest {
                    invitation_token: token.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                PlanRequest {
                    invitation_token: token.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                ProvisionRequest {
                    invitation_token: token.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                GetOnboardingRequest {
                    invitation_token: token.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                CancelOnboardingRequest {
                    invitation_token: token.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                Completed {
                    secret: secret.into(),
                    key_id: "k1".into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                NewSecret {
                    secret: secret.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                AttachRegistrationRequest {
                    client_secret: secret.into(),
                    profile: "direct-routing".into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                IssueHandOffLinkRequest {
                    onboarding_id: "onb-1".into(),
                    invitation_token: token.into(),
                }
            ),
            format!(
                "{:?}",
                HandOffLink {
                    activation_url: format!("https://x#token={token}"),
                    invitation_token: token.into(),
                    ..Default::default()
                }
            ),
        ];
        for o in &outputs {
            assert!(!o.contains("SECRET"), "{o}");
        }
        assert!(outputs[8].contains("k1") && outputs[8].contains(HIDDEN));
    }

    /// A field that holds a credential by its name (`token`, `*_token`, `secret`, `*_secret`,
    /// `activation_url`; not a page token) in a message off the `REDACTED` list would print
    /// it with the derived `Debug`: a new message of that kind fails here until it is listed
    /// and given a `Debug` above.
    #[test]
    fn every_message_with_a_credential_field_is_redacted() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("the build's descriptor set");
        let credential = |name: &str| {
            !name.ends_with("page_token")
                && (name == "token"
                    || name.ends_with("_token")
                    || name == "secret"
                    || name.ends_with("_secret")
                    || name == "activation_url")
        };
        // Every message, nested ones too, by its full name.
        let mut messages: Vec<(String, &prost_types::DescriptorProto)> = set
            .file
            .iter()
            .filter(|f| f.package() == "onboard.v1")
            .flat_map(|f| &f.message_type)
            .map(|m| (format!(".onboard.v1.{}", m.name()), m))
            .collect();
        let mut unlisted = Vec::new();
        while let Some((full, m)) = messages.pop() {
            for n in &m.nested_type {
                messages.push((format!("{full}.{}", n.name()), n));
            }
            let holds = m.field.iter().any(|f| {
                credential(f.name())
                    && f.r#type() == prost_types::field_descriptor_proto::Type::String
            });
            if holds && !crate::redacted::REDACTED.contains(&full.as_str()) {
                unlisted.push(full);
            }
        }
        assert!(unlisted.is_empty(), "not in REDACTED: {unlisted:?}");
    }
}
