//! Who is calling, and may they? Callers are identified by their mTLS client certificate or,
//! without one, by an `authorization: Bearer <token>` header whose SHA-256 is listed in
//! `[[auth.tokens]]`.
//!
//! A certificate is matched against `[[auth.callers]]` by its URI SANs (SPIFFE ids) first, then
//! its DNS SANs; the subject CN only when the certificate has no SAN at all and
//! `auth.cn_fallback = true` (off by default: a CN is free text any CA may put in, while SANs
//! are what name a holder). A certificate with an extended key usage extension must list
//! clientAuth (rustls checks this at the handshake too; this is the second lock).
//!
//! Every RPC checks its caller with [`Authenticator::authorize`] and nothing else, so the rules
//! live in one place. The identity it returns is the `actor` of audit entries.
//!
//! Hook for the wizard: the customer admin has no certificate or token of ours; the Onboarding
//! service will accept an invitation token as a capability for that one onboarding, checked by
//! [`crate::invitations::Invitations::verify_token`] / `redeem`, not by this module.

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::Request;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::AuthSection;
use crate::error::{Result, ServerError};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Platform services: invitations, onboarding, credentials, verification.
    Operator,
    /// Read-only access to the audit log.
    Auditor,
    /// Keys and configuration; may also read the audit log.
    Admin,
}

impl Role {
    /// The lowercase name, as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity recorded as `actor` in audit entries (never a secret).
    pub identity: String,
    /// The role it was granted.
    pub role: Role,
}

/// The configured callers, indexed for lookups.
pub struct Authenticator {
    /// Certificate name → caller, for mTLS.
    callers: HashMap<String, Caller>,
    /// SHA-256 of a bearer token → caller; only hashes are held, so a memory dump holds no token.
    tokens: HashMap<[u8; 32], Caller>,
    /// Match a certificate without SANs by its subject CN.
    cn_fallback: bool,
    /// mTLS is configured (`tls.client_ca`): callers must present a client certificate, and a
    /// bearer token without one is refused. The handshake itself lets clients without one in,
    /// because the customer's browser (the wizard, on the same listener) has none; it acts
    /// only through its invitation token, which this module does not handle.
    certificates_required: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("callers", &self.callers.len())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl Authenticator {
    /// Builds the lookup tables; a malformed token hash is a configuration error. `mtls`: the
    /// listener asks for client certificates (`tls.client_ca`), so callers must present one.
    pub fn new(auth: &AuthSection, mtls: bool) -> Result<Self> {
        let mut callers = HashMap::new();
        for c in &auth.callers {
            let identity = c.identity.clone().unwrap_or_else(|| c.name.clone());
            callers.insert(
                c.name.clone(),
                Caller {
                    identity,
                    role: c.role,
                },
            );
        }
        let mut tokens = HashMap::new();
        for t in &auth.tokens {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(t.sha256.trim(), &mut hash).map_err(|_| {
                ServerError::Config(format!(
                    "auth.tokens for {:?}: sha256 must be 64 hex digits",
                    t.identity
                ))
            })?;
            tokens.insert(
                hash,
                Caller {
                    identity: t.identity.clone(),
                    role: t.role,
                },
            );
        }
        Ok(Self {
            callers,
            tokens,
            cn_fallback: auth.cn_fallback,
            certificates_required: mtls,
        })
    }

    /// Identifies the caller and checks that its role is one of `allowed`.
    pub fn authorize<T>(&self, req: &Request<T>, allowed: &[Role]) -> Result<Caller> {
        let caller = self.authenticate(req)?;
        crate::telemetry::note_caller(req, &caller.identity);
        if !allowed.contains(&caller.role) {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            return Err(ServerError::PermissionDenied(format!(
                "caller {:?} has role {}; this call needs one of: {}",
                caller.identity,
                caller.role.as_str(),
                names.join(", ")
            )));
        }
        Ok(caller)
    }

    /// Identifies the caller: a client certificate wins; otherwise a bearer token, unless mTLS
    /// is configured.
    pub fn authenticate<T>(&self, req: &Request<T>) -> Result<Caller> {
        if let Some(certs) = req.peer_certs()
            && let Some(leaf) = certs.first()
        {
            return self.by_certificate(leaf.as_ref());
        }
        if self.certificates_required {
            return Err(ServerError::Unauthenticated(
                "this server requires a client certificate (mTLS) for this call; none was \
                 presented (a bearer token is not accepted without one)"
                    .into(),
            ));
        }
        self.by_bearer(req)
    }

    fn by_certificate(&self, der: &[u8]) -> Result<Caller> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|_| {
            ServerError::Unauthenticated("the client certificate could not be parsed".into())
        })?;
        if !has_client_auth_eku(&cert) {
            return Err(ServerError::Unauthenticated(
                "the client certificate's extended key usage does not include clientAuth".into(),
            ));
        }
        let names = certificate_names(&cert, self.cn_fallback);
        names
            .iter()
            .find_map(|n| self.callers.get(n).cloned())
            .ok_or_else(|| {
                ServerError::Unauthenticated(format!(
                    "no configured caller matches the client certificate (names: {})",
                    names.join(", ")
                ))
            })
    }

    fn by_bearer<T>(&self, req: &Request<T>) -> Result<Caller> {
        let Some(value) = req.metadata().get("authorization") else {
            return Err(ServerError::Unauthenticated(
                "no client certificate and no authorization header".into(),
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(bearer_token)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ServerError::Unauthenticated("authorization must be `Bearer <token>`".into())
            })?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // The error never echoes the token.
        self.tokens
            .get(&hash)
            .cloned()
            .ok_or_else(|| ServerError::Unauthenticated("unknown bearer token".into()))
    }
}

/// The credentials of `Bearer <token>`: the scheme is compared without case (RFC 9110
/// §11.1: "It uses a case-insensitive token to identify the authentication scheme"), then
/// one or more spaces.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest)
}

/// Whether the certificate may authenticate a client: no EKU extension, or one listing
/// clientAuth (or anyExtendedKeyUsage).
fn has_client_auth_eku(cert: &X509Certificate<'_>) -> bool {
    match cert.extended_key_usage() {
        Ok(None) => true,
        Ok(Some(eku)) => eku.value.client_auth || eku.value.any,
        Err(_) => false,
    }
}

/// The names a certificate can be matched by, most specific first: URI SANs (SPIFFE ids),
/// DNS SANs; subject common names only when there is no SAN and `cn_fallback` is on.
fn certificate_names(cert: &X509Certificate<'_>, cn_fallback: bool) -> Vec<String> {
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::URI(u) => uris.push((*u).to_owned()),
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                _ => {}
            }
        }
    }
    if uris.is_empty() && dns.is_empty() && cn_fallback {
        return cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect();
    }
    uris.into_iter().chain(dns).collect()
}

/// The `actor` forms the server writes for itself and for customers (docs/audit-entries.md):
/// `system`, and these prefixes. A configured caller's identity may not take one, or an
/// auditor could not tell its changes from the server's own or a customer's.
const RESERVED_ACTOR_PREFIXES: &[&str] =
    &["system:", "onboard:", "invitation:", "entra:", "admin:"];

/// Refuses a caller identity an auditor would read as another kind of actor: empty, `system`,
/// or one starting with one of [`RESERVED_ACTOR_PREFIXES`].
pub(crate) fn check_identities(auth: &AuthSection) -> Result<()> {
    let named = auth
        .callers
        .iter()
        .map(|c| ("auth.callers", c.identity.as_deref().unwrap_or(&c.name)))
        .chain(
            auth.tokens
                .iter()
                .map(|t| ("auth.tokens", t.identity.as_str())),
        );
    for (key, identity) in named {
        let reserved = identity == "system"
            || RESERVED_ACTOR_PREFIXES
                .iter()
                .any(|p| identity.starts_with(p));
        if identity.trim().is_empty() || reserved {
            return Err(ServerError::Config(format!(
                "{key}: identity {identity:?} is empty or reserved for the server's own audit \
                 actors (system, system:*, onboard:*, invitation:*, entra:*, admin:*)"
            )));
        }
    }
    Ok(())
}

/// The SHA-256 of a token in hex, as `[[auth.tokens]] sha256` expects.
pub fn token_sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn a_caller_may_not_take_a_servers_actor_name() {
        for (identity, ok) in [
            ("platform-portal", true),
            ("spiffe://platform/portal", true),
            ("systems-team", true),
            ("system", false),
            ("system:auto-rotate", false),
            ("onboard:drift-monitor", false),
            ("invitation:inv-1", false),
            ("entra:admin-consent", false),
            ("admin:cli", false),
            (" ", false),
        ] {
            let text = format!(
                "[[tokens]]\nsha256 = \"{}\"\nidentity = \"{identity}\"\nrole = \"operator\"\n",
                "0".repeat(64)
            );
            let auth: crate::config::AuthSection = toml::from_str(&text).expect("parses");
            let checked = super::check_identities(&auth);
            assert_eq!(checked.is_ok(), ok, "{identity:?}: {checked:?}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_read_without_case() {
        for (value, want) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("Bearer  abc", Some(" abc")),
            ("Basic abc", None),
            ("Bearerabc", None),
            ("Bearer", None),
        ] {
            assert_eq!(bearer_token(value), want, "{value:?}");
        }
    }
}
