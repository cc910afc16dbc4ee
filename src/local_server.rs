//! The server configuration that `onboard demo` and `onboard selftest --live` write for a server
//! of their own (loopback, plaintext, bearer tokens made for the run): one place that renders it
//! as TOML and parses it back through the server's own checks.

use std::path::{Path, PathBuf};

use onboard_server::{Config, Role, token_sha256_hex};
use toml::{Table, Value};

/// One `[[auth.tokens]]` rule.
pub(crate) struct TokenRule<'a> {
    /// The bearer token; only its SHA-256 is written.
    pub token: &'a str,
    /// The identity recorded as `actor` in audit entries.
    pub identity: &'a str,
    /// What the holder may do.
    pub role: Role,
}

/// What differs between the configurations the demo and the selftest write.
pub(crate) struct LocalServer<'a> {
    /// `[server] listen`: a loopback address (port 0: any free one).
    pub listen: &'a str,
    /// `[storage] data_dir`.
    pub data_dir: &'a Path,
    /// `[audit] signing_key`: the key file.
    pub signing_key: &'a Path,
    /// `[audit] origin`.
    pub origin: &'a str,
    /// `[entra] authority_url`.
    pub authority_url: &'a str,
    /// `[entra] graph_url`.
    pub graph_url: &'a str,
    /// `[entra] extra_trust_roots`: CA files trusted besides the system's.
    pub trust_roots: &'a [PathBuf],
    /// `[entra] token_app_client_id`.
    pub token_app_client_id: &'a str,
    /// `[platform] provider_name`.
    pub provider_name: &'a str,
    /// `[platform] server_name`.
    pub server_name: &'a str,
    /// `[invitations] activation_base_url`.
    pub activation_base_url: &'a str,
    /// `[[auth.tokens]]`.
    pub tokens: &'a [TokenRule<'a>],
}

/// A TOML string.
fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// A path as a TOML string.
fn p(path: &Path) -> Value {
    Value::String(path.display().to_string())
}

/// A table from its keys.
fn table<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Table {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

impl LocalServer<'_> {
    /// The configuration as TOML text, listening on `127.0.0.1:0`.
    pub fn to_toml(&self) -> String {
        let tokens = self.tokens.iter().map(|t| {
            Value::Table(table([
                ("sha256", s(&token_sha256_hex(t.token))),
                ("identity", s(t.identity)),
                ("role", s(t.role.as_str())),
            ]))
        });
        let trust = self.trust_roots.iter().map(|r| p(r)).collect();
        let keys = [
            ("server", "listen", s(self.listen)),
            ("storage", "data_dir", p(self.data_dir)),
            ("audit", "signing_key", p(self.signing_key)),
            ("audit", "origin", s(self.origin)),
            ("entra", "authority_url", s(self.authority_url)),
            ("entra", "graph_url", s(self.graph_url)),
            ("entra", "extra_trust_roots", Value::Array(trust)),
            ("entra", "token_app_client_id", s(self.token_app_client_id)),
            ("platform", "provider_name", s(self.provider_name)),
            ("platform", "server_name", s(self.server_name)),
            (
                "invitations",
                "activation_base_url",
                s(self.activation_base_url),
            ),
            ("auth", "tokens", Value::Array(tokens.collect())),
        ];
        let mut t = Table::new();
        for (section, key, value) in keys {
            if let Value::Table(section) = t
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()))
            {
                section.insert(key.into(), value);
            }
        }
        t.to_string()
    }

    /// The configuration, parsed exactly as the server parses it (no environment overrides), so
    /// a bad value fails here, named.
    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::from_toml_str(&self.to_toml(), std::iter::empty())?)
    }
}
