//! Configuration: one TOML file, every key overridable by an environment variable
//! `ONBOARD_<SECTION>_<KEY>` (e.g. `ONBOARD_SERVER_LISTEN=0.0.0.0:8443`,
//! `ONBOARD_ENTRA_TOKEN_APP_CLIENT_ID=…`). An override's value is read as a TOML value when it
//! parses as one (numbers, booleans, arrays, inline tables such as
//! `ONBOARD_AUTH_TOKENS='[{sha256="…", identity="portal", role="operator"}]'`), else as a string.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::Role;
use crate::error::{Result, ServerError};

mod credentials;
mod located;

pub use credentials::CredentialsSection;

/// The prefix of environment overrides.
const ENV_PREFIX: &str = "ONBOARD_";

/// The sections the file has; an override for another section is ignored, not guessed at.
const SECTIONS: &[&str] = &[
    "server",
    "tls",
    "storage",
    "audit",
    "entra",
    "platform",
    "invitations",
    "auth",
    "verification",
    "credentials",
    "audit_http",
    "publish",
    "witnessing",
    "witness",
    "limits",
    "telemetry",
];

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen.
    pub server: ServerSection,
    /// TLS and mTLS material; absent means plaintext (local use with bearer tokens only).
    #[serde(default)]
    pub tls: TlsSection,
    /// Where state lives.
    pub storage: StorageSection,
    /// The audit log's identity and key.
    pub audit: AuditSection,
    /// Microsoft identity platform and Graph endpoints (the emulator's, in tests and the demo).
    #[serde(default)]
    pub entra: EntraSection,
    /// Who we are on the platform; names the temporary app and fills invitation defaults.
    pub platform: PlatformSection,
    /// Invitation links and lifetimes.
    pub invitations: InvitationsSection,
    /// Who may call what.
    #[serde(default)]
    pub auth: AuthSection,
    /// Day-two verification: secret horizon, scheduled drift runs, automatic repair.
    #[serde(default)]
    pub verification: VerificationSection,
    /// Day-two credential management (expiry report, automatic rotation).
    #[serde(default)]
    pub credentials: CredentialsSection,
    /// The live tlog-tiles read API on its own listener; absent: not served.
    #[serde(default)]
    pub audit_http: Option<audit_http::Settings>,
    /// Continuous publication of the log; absent: not published.
    #[serde(default)]
    pub publish: Option<crate::auditors::settings::PublishSection>,
    /// How checkpoints are offered to the `[[witness]]` list.
    #[serde(default)]
    pub witnessing: Option<crate::auditors::settings::WitnessingSection>,
    /// `[[witness]]`: the witnesses that cosign the log's checkpoints.
    #[serde(default, rename = "witness")]
    pub witnesses: Vec<witness::WitnessEndpointConfig>,
    /// Limits per caller, connection and server (`crate::limits`).
    #[serde(default)]
    pub limits: crate::limits::LimitsSection,
    /// Metrics listener and log format (`crate::telemetry`).
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetrySection,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The socket address to bind (e.g. `0.0.0.0:8443`).
    pub listen: SocketAddr,
    /// A plaintext listener serving only `grpc.health.v1` (e.g. `0.0.0.0:8081`), for probes
    /// that speak no TLS (Kubernetes' `grpc:` probe); off when absent.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
}

/// `[tls]`: all paths are PEM files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The server certificate chain; with `key`, turns TLS on.
    pub cert: Option<PathBuf>,
    /// The server private key; read at start-up, never logged.
    pub key: Option<PathBuf>,
    /// CA certificates that sign client certificates; turns on mTLS (a client certificate is
    /// then required for every connection).
    pub client_ca: Option<PathBuf>,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// The data directory: `audit/` holds the audit log's sled database, `state/` ours.
    pub data_dir: PathBuf,
    /// A file holding the 32-byte key (raw or hex) that seals client secrets and admin tokens
    /// in the onboarding store. When absent, a random key is generated once and kept in the
    /// state store (so a copy of the data directory alone can open them: set it in production).
    #[serde(default)]
    pub sealing_key: Option<PathBuf>,
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The Ed25519 signing key file (PKCS#8 PEM or Go `PRIVATE+KEY+…`); kept outside the data
    /// directory so a copy of the data cannot sign.
    pub signing_key: PathBuf,
    /// The log's origin, e.g. `onboard.example.net/audit`; the key's name must equal it.
    pub origin: String,
}

/// `[entra]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraSection {
    /// The identity platform's base URL; configurable so the emulator can stand in.
    #[serde(default = "default_authority")]
    pub authority_url: String,
    /// Microsoft Graph's base URL.
    #[serde(default = "default_graph")]
    pub graph_url: String,
    /// Extra CA certificates (PEM) to trust for those URLs, e.g. the emulator's CA.
    #[serde(default)]
    pub extra_trust_roots: Vec<PathBuf>,
    /// The provider-owned public client app used for the admin's device code sign-in.
    #[serde(default)]
    pub token_app_client_id: String,
}

impl Default for EntraSection {
    fn default() -> Self {
        Self {
            authority_url: default_authority(),
            graph_url: default_graph(),
            extra_trust_roots: Vec::new(),
            token_app_client_id: String::new(),
        }
    }
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}

fn default_graph() -> String {
    "https://graph.microsoft.com".into()
}

/// `[platform]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSection {
    /// The service provider's name (default for invitations; part of the temporary app's name).
    pub provider_name: String,
    /// The Live Platform server name (default for invitations; part of the temporary app's name).
    pub server_name: String,
    /// A TOML file of provisioning profiles (permission and role sets per platform version, the
    /// format of `crates/provision/profiles/default.toml`); unset means the shipped ones.
    #[serde(default)]
    pub profiles_path: Option<PathBuf>,
    /// The platform services' status endpoints, which verification probes.
    #[serde(default)]
    pub services: Vec<PlatformService>,
}

impl PlatformSection {
    /// The temporary enterprise app's display name (`<server>-<provider>-token`).
    pub fn token_app_name(&self) -> String {
        onboard_core::platform::token_app_name(&self.server_name, &self.provider_name)
    }
}

/// `[[platform.services]]`: where one Direct Routing service reports its status. Exactly one
/// of `grpc_health` and `http_probe`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformService {
    /// The service id (as in invitations); also the gRPC health service name asked for.
    pub id: String,
    /// A gRPC endpoint speaking `grpc.health.v1` (`https://host:port`; `http://` for local
    /// tests). An `https` endpoint needs `ca`.
    #[serde(default)]
    pub grpc_health: Option<String>,
    /// An HTTPS URL answering 200 with JSON `{"status": "OK"}` (`"SERVING"` is accepted too;
    /// anything else is a FAIL naming it).
    #[serde(default)]
    pub http_probe: Option<String>,
    /// Extra CA certificates (PEM) to trust for the endpoint.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Connect + answer budget in milliseconds.
    #[serde(default = "default_probe_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_probe_timeout_ms() -> u64 {
    5_000
}

/// `[verification]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationSection {
    /// Seconds between scheduled drift runs over every managed registration; unset turns
    /// scheduled verification off.
    #[serde(default)]
    pub interval_secs: Option<u64>,
    /// A secret expiring within this many days (or expired) is a FAIL; within
    /// `credentials.expiry_horizon_days`, the one definition of "expiring", a WARN.
    #[serde(default = "default_critical_days")]
    pub critical_days: u64,
    /// Profiles whose missing permissions and roles scheduled runs put back (audited), with
    /// the onboarding's stored admin session while it is valid.
    #[serde(default)]
    pub repair_profiles: Vec<String>,
}

impl Default for VerificationSection {
    fn default() -> Self {
        Self {
            interval_secs: None,
            critical_days: default_critical_days(),
            repair_profiles: Vec::new(),
        }
    }
}

fn default_critical_days() -> u64 {
    7
}

/// `[invitations]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvitationsSection {
    /// The wizard's URL; the activation link is this plus `#token=<token>` (a fragment, so the
    /// token never reaches web server logs or Referer headers).
    pub activation_base_url: String,
    /// The service's name in emails (e.g. "Live Platform Teams Direct Routing").
    #[serde(default = "default_service_name")]
    pub service_display_name: String,
    /// Validity when a request sets none, in seconds.
    #[serde(default = "default_valid_for")]
    pub default_valid_for_secs: u64,
    /// A file holding the 32-byte key that MACs invitation tokens (raw or hex). When absent, a
    /// random key is generated once and kept in the state store.
    #[serde(default)]
    pub token_key: Option<PathBuf>,
}

fn default_service_name() -> String {
    "Teams Direct Routing".into()
}

fn default_valid_for() -> u64 {
    7 * 24 * 3600
}

/// `[auth]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// mTLS callers: a client certificate name mapped to a role.
    #[serde(default)]
    pub callers: Vec<CallerRule>,
    /// Bearer tokens for local use without client certificates.
    #[serde(default)]
    pub tokens: Vec<TokenRule>,
    /// Match a client certificate that has no SAN by its subject CN (off: only URI and DNS
    /// SANs name a caller).
    #[serde(default)]
    pub cn_fallback: bool,
}

/// `[[auth.callers]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerRule {
    /// Matched against the client certificate's URI SANs, then its DNS SANs (the subject CN
    /// only for a certificate without SANs, with `auth.cn_fallback = true`).
    pub name: String,
    /// The role the caller gets.
    pub role: Role,
    /// The identity recorded as `actor` in audit entries; defaults to `name`.
    #[serde(default)]
    pub identity: Option<String>,
}

/// `[[auth.tokens]]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRule {
    /// Hex SHA-256 of the token; the token itself is never in the configuration.
    pub sha256: String,
    /// The identity recorded as `actor` in audit entries.
    pub identity: String,
    /// The role the caller gets.
    pub role: Role,
}

impl std::fmt::Debug for TokenRule {
    // The hash is not the token, but there is no reason to print it either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRule")
            .field("identity", &self.identity)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads the file and applies the process environment's overrides.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?;
        Self::from_toml_str(&text, std::env::vars())
    }

    /// Parses TOML text and applies overrides from `env` (name, value) pairs.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| ServerError::Config(format!("TOML: {e}")))?;
        let mut overridden = Vec::new();
        for (name, value) in env {
            if apply_override(&mut table, &name, &value)? {
                overridden.push(name);
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| ServerError::Config(located::describe(text, &overridden, &e)))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ServerError::Config(
                "tls.cert and tls.key must be set together".into(),
            ));
        }
        if self.tls.client_ca.is_some() && self.tls.cert.is_none() {
            return Err(ServerError::Config(
                "tls.client_ca needs tls.cert and tls.key (mTLS is TLS first)".into(),
            ));
        }
        for s in &self.platform.services {
            if s.grpc_health.is_some() == s.http_probe.is_some() {
                return Err(ServerError::Config(format!(
                    "platform.services {:?}: set exactly one of grpc_health and http_probe",
                    s.id
                )));
            }
        }
        // CreateInvitation applies it when a request sets no validity, under the same bounds
        // as a requested one: out of them, every such request would be refused on a field the
        // caller never sent.
        if !(1..=30 * 24 * 3600).contains(&self.invitations.default_valid_for_secs) {
            return Err(ServerError::Config(
                "invitations.default_valid_for_secs must be between 1 and 2592000 (30 days)".into(),
            ));
        }
        if self.credentials.check_interval_secs == 0 {
            return Err(ServerError::Config(
                "credentials.check_interval_secs must be at least 1".into(),
            ));
        }
        if self.verification.interval_secs == Some(0) {
            return Err(ServerError::Config(
                "verification.interval_secs must be at least 1 (leave it unset to turn scheduled runs off)".into(),
            ));
        }
        if self.verification.critical_days > u64::from(self.credentials.expiry_horizon_days) {
            return Err(ServerError::Config(
                "verification.critical_days must not exceed credentials.expiry_horizon_days".into(),
            ));
        }
        self.limits.check().map_err(ServerError::Config)?;
        crate::auth::check_identities(&self.auth)?;
        if self.audit.origin.trim().is_empty() {
            return Err(ServerError::Config("audit.origin is empty".into()));
        }
        crate::auditors::settings::check(self)
    }
}

/// Sets `table[section][key]` from `ONBOARD_SECTION_KEY=value` (the longest section name that
/// fits wins, so `ONBOARD_AUDIT_HTTP_LISTEN` is `[audit_http] listen`), or a whole section from
/// `ONBOARD_SECTION=value` (e.g. `ONBOARD_WITNESS='[{url="…", vkey="…"}]'` for `[[witness]]`).
/// Whether it applied (a variable naming no section is ignored).
fn apply_override(table: &mut toml::Table, name: &str, value: &str) -> Result<bool> {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return Ok(false);
    };
    let rest = rest.to_ascii_lowercase();
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    if let Some(section) = SECTIONS.iter().find(|s| **s == rest) {
        if !matches!(parsed, toml::Value::Table(_) | toml::Value::Array(_)) {
            return Err(ServerError::Config(format!(
                "{name} replaces the whole [{section}] section: give it a TOML inline table or array"
            )));
        }
        table.insert((*section).to_owned(), parsed);
        return Ok(true);
    }
    let Some((section, key)) = SECTIONS
        .iter()
        .filter_map(|s| Some((*s, rest.strip_prefix(s)?.strip_prefix('_')?)))
        .max_by_key(|(s, _)| s.len())
    else {
        return Ok(false);
    };
    if key.is_empty() {
        return Ok(false);
    }
    let entry = table
        .entry(section.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => {
            t.insert(key.to_owned(), parsed);
            Ok(true)
        }
        _ => Err(ServerError::Config(format!(
            "{section} is not a table, so {name} cannot override a key in it"
        ))),
    }
}

/// The smallest valid configuration, for the unit tests of what is built on it.
#[cfg(test)]
pub(crate) const TEST_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8443"
[storage]
data_dir = "/var/lib/onboard"
[audit]
signing_key = "/k"
origin = "example.net/audit"
[platform]
provider_name = "sp2"
server_name = "Sandbox1"
[invitations]
activation_base_url = "https://wizard.example.net/activate"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = super::TEST_CONFIG;

    #[test]
    fn env_overrides_every_kind_of_value() {
        let env = [
            ("ONBOARD_SERVER_LISTEN", "0.0.0.0:9000"),
            ("ONBOARD_ENTRA_TOKEN_APP_CLIENT_ID", "abc"),
            ("ONBOARD_INVITATIONS_DEFAULT_VALID_FOR_SECS", "60"),
            (
                "ONBOARD_AUTH_TOKENS",
                r#"[{sha256="00", identity="p", role="operator"}]"#,
            ),
            ("UNRELATED", "x"),
            ("ONBOARD_NOTASECTION_X", "y"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
        let c = Config::from_toml_str(BASE, env).expect("config");
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.entra.token_app_client_id, "abc");
        assert_eq!(c.invitations.default_valid_for_secs, 60);
        assert_eq!(c.auth.tokens[0].role, Role::Operator);
        assert_eq!(c.entra.graph_url, "https://graph.microsoft.com");
    }

    #[test]
    fn a_default_invitation_validity_out_of_bounds_is_a_configuration_error() {
        for (secs, ok) in [
            ("0", false),
            ("1", true),
            ("2592000", true),
            ("2592001", false),
        ] {
            let env = [("ONBOARD_INVITATIONS_DEFAULT_VALID_FOR_SECS", secs)]
                .map(|(a, b)| (a.to_owned(), b.to_owned()));
            match Config::from_toml_str(BASE, env) {
                Ok(_) => assert!(ok, "{secs} accepted"),
                Err(e) => {
                    assert!(!ok, "{secs}: {e}");
                    assert!(e.to_string().contains("default_valid_for_secs"), "{e}");
                }
            }
        }
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../../deploy/onboard.example.toml");
        let c = Config::from_toml_str(text, std::iter::empty()).expect("example config");
        assert!(c.tls.client_ca.is_some());
        assert_eq!(c.auth.callers.len(), 3);
        assert_eq!(c.auth.callers[0].role, Role::Operator);
        assert_eq!(c.verification.interval_secs, Some(3600));
        assert_eq!(c.platform.services.len(), 2);
        // Its commented `[telemetry]` parses once uncommented.
        let uncommented = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("[telemetry]")
                        || rest.starts_with("metrics_listen")
                        || rest.starts_with("log_") =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c =
            Config::from_toml_str(&uncommented, std::iter::empty()).expect("example [telemetry]");
        assert_eq!(c.telemetry.metrics_listen.map(|a| a.port()), Some(9090));
        assert_eq!(c.telemetry.log_format, crate::telemetry::LogFormat::Json);
    }

    #[test]
    fn telemetry_defaults_and_overrides() {
        let c = Config::from_toml_str(BASE, std::iter::empty()).expect("config");
        assert_eq!(c.telemetry.metrics_listen, None);
        assert_eq!(c.telemetry.log_format, crate::telemetry::LogFormat::Text);
        assert_eq!(c.telemetry.log_level, "info");
        let env = [
            ("ONBOARD_TELEMETRY_METRICS_LISTEN", "127.0.0.1:0"),
            ("ONBOARD_TELEMETRY_LOG_FORMAT", "json"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
        let c = Config::from_toml_str(BASE, env).expect("config");
        assert!(c.telemetry.metrics_listen.is_some());
        assert_eq!(c.telemetry.log_format, crate::telemetry::LogFormat::Json);
        let bad = format!("{BASE}[telemetry]\nlog_format = \"xml\"\n");
        assert!(Config::from_toml_str(&bad, std::iter::empty()).is_err());
        let typo = format!("{BASE}[telemetry]\nmetrics_listn = \"127.0.0.1:1\"\n");
        assert!(Config::from_toml_str(&typo, std::iter::empty()).is_err());
    }

    #[test]
    fn a_platform_service_needs_exactly_one_probe() {
        let both = format!(
            "{BASE}[[platform.services]]\nid = \"dr-1\"\ngrpc_health = \"http://a\"\nhttp_probe = \"https://b\"\n"
        );
        assert!(Config::from_toml_str(&both, std::iter::empty()).is_err());
        let c = Config::from_toml_str(BASE, std::iter::empty()).expect("config");
        assert_eq!(c.verification.interval_secs, None);
        assert_eq!(c.credentials.expiry_horizon_days, 30);
    }

    #[test]
    fn unknown_keys_and_half_tls_are_rejected() {
        let env = [("ONBOARD_SERVER_LISTN".to_owned(), "x".to_owned())];
        assert!(Config::from_toml_str(BASE, env).is_err());
        let env = [("ONBOARD_TLS_CERT".to_owned(), "/c.pem".to_owned())];
        assert!(Config::from_toml_str(BASE, env).is_err());
    }
}
