//! The typed server configuration: [`ServerConfigBuilder`] makes `onboard_server::Config`
//! through the server's own parser (so every rule of `Config::from_toml_str` applies), and
//! writes the same settings as a TOML file for process tests. No test writes server TOML by
//! hand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use entra_sim::Sim;
use onboard_server::{Config, Role, token_sha256_hex};
use toml::{Table, Value};

use crate::keys::{ORIGIN, write_signing_key};

/// The operator's bearer token (identity [`OPERATOR_IDENTITY`]).
pub const OPERATOR: &str = "operator-token-1";
/// The auditor's bearer token (identity [`AUDITOR_IDENTITY`]).
pub const AUDITOR: &str = "auditor-token-1";
/// The admin's bearer token (identity [`ADMIN_IDENTITY`]).
pub const ADMIN: &str = "admin-token-1";
/// The operator's identity, the `actor` of its audit entries.
pub const OPERATOR_IDENTITY: &str = "portal";
/// The auditor's identity.
pub const AUDITOR_IDENTITY: &str = "auditor-1";
/// The admin's identity.
pub const ADMIN_IDENTITY: &str = "admin-1";

/// The wizard URL invitations link to.
pub const ACTIVATION_URL: &str = "https://wizard.example.net/activate";

/// A `[[platform.services]]` entry.
#[derive(Clone, Debug)]
pub struct PlatformService {
    /// The service id (also the gRPC health service name).
    pub id: String,
    /// `grpc_health` URL.
    pub grpc_health: Option<String>,
    /// `http_probe` URL.
    pub http_probe: Option<String>,
    /// `ca` file for an https endpoint.
    pub ca: Option<PathBuf>,
    /// `timeout_ms`, when not the default.
    pub timeout_ms: Option<u64>,
}

impl PlatformService {
    /// A service probed by gRPC health at `url`, with a 3 s budget.
    pub fn grpc(id: &str, url: &str) -> Self {
        Self {
            id: id.into(),
            grpc_health: Some(url.into()),
            http_probe: None,
            ca: None,
            timeout_ms: Some(3000),
        }
    }
}

/// `[credentials]` with automatic rotation on.
#[derive(Clone, Copy, Debug)]
pub struct AutoRotate {
    /// `check_interval_secs`.
    pub check_interval_secs: u64,
    /// `expiry_horizon_days`.
    pub expiry_horizon_days: u32,
    /// `auto_rotate_overlap_secs`.
    pub overlap_secs: u64,
    /// `secret_lifetime_days`.
    pub secret_lifetime_days: u32,
}

/// A change to a server configuration under construction (as `TestServer::start_with`,
/// `SimServer::start_with` and `ServerFiles::with` take it).
pub trait Edit: FnOnce(ServerConfigBuilder) -> Result<ServerConfigBuilder> {}

impl<F: FnOnce(ServerConfigBuilder) -> Result<ServerConfigBuilder>> Edit for F {}

/// Setters of one key each: `name(arg: type) => "section"."key" = TOML value of arg`.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident($arg:ident: $ty:ty) => $section:literal . $key:literal = $value:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $arg: $ty) -> Self {
                self.set($section, $key, $value);
                self
            }
        )*
    };
}

/// A server configuration under construction. Starts from a working local set-up (listen on
/// `127.0.0.1:0`, data and a fresh signing key in the given directory, server `Sandbox1`,
/// provider `sp2`, the three bearer tokens) that each method changes.
#[derive(Clone, Debug)]
pub struct ServerConfigBuilder {
    /// Where the builder writes files it needs (signing key, emulator CA).
    dir: PathBuf,
    /// The configuration as TOML values, one table per section.
    table: Table,
    /// The verifier key of the signing key the builder wrote.
    vkey: Option<String>,
}

/// A TOML string value.
fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

/// A TOML integer.
fn int(v: u64) -> Value {
    Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

/// A path as a TOML string.
fn p(path: &Path) -> Value {
    s(path.to_string_lossy())
}

impl ServerConfigBuilder {
    /// The local set-up in `dir`: writes `dir/signing.key`; data in `dir/data`.
    pub fn new(dir: &Path) -> Result<Self> {
        let key = dir.join("signing.key");
        let vkey = write_signing_key(&key)?;
        let mut b = Self {
            dir: dir.to_path_buf(),
            table: Table::new(),
            vkey: Some(vkey),
        };
        b.set("server", "listen", s("127.0.0.1:0"));
        b.set("storage", "data_dir", p(&dir.join("data")));
        b.set("audit", "signing_key", p(&key));
        b.set("audit", "origin", s(ORIGIN));
        b.set("platform", "provider_name", s("sp2"));
        b.set("platform", "server_name", s("Sandbox1"));
        b.set("invitations", "activation_base_url", s(ACTIVATION_URL));
        b.set(
            "invitations",
            "service_display_name",
            s("Teams Direct Routing"),
        );
        Ok(b.token(OPERATOR, OPERATOR_IDENTITY, Role::Operator)
            .token(AUDITOR, AUDITOR_IDENTITY, Role::Auditor)
            .token(ADMIN, ADMIN_IDENTITY, Role::Admin))
    }

    /// The table `[section]`, made when missing.
    fn section(&mut self, section: &str) -> &mut Table {
        let t = self
            .table
            .entry(section)
            .or_insert_with(|| Value::Table(Table::new()));
        if !t.is_table() {
            *t = Value::Table(Table::new());
        }
        match t {
            Value::Table(t) => t,
            _ => unreachable!("made a table above"),
        }
    }

    /// Sets `[section] key = value`.
    fn set(&mut self, section: &str, key: &str, value: Value) {
        self.section(section).insert(key.into(), value);
    }

    /// Removes `[section] key`.
    fn unset(&mut self, section: &str, key: &str) {
        if let Some(Value::Table(t)) = self.table.get_mut(section) {
            t.remove(key);
        }
    }

    /// Appends a table to the array `[[section.key]]`.
    fn push(&mut self, section: &str, key: &str, item: Table) {
        let list = self
            .section(section)
            .entry(key)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = list {
            a.push(Value::Table(item));
        }
    }

    /// Points `[entra]` at the emulator: its URL for both hosts, its CA (written to
    /// `dir/sim-ca.pem`) and its token app.
    pub fn entra_sim(mut self, sim: &Sim) -> Result<Self> {
        let ca = self.dir.join("sim-ca.pem");
        std::fs::write(&ca, sim.ca_pem())?;
        self.set("entra", "authority_url", s(sim.base_url()));
        self.set("entra", "graph_url", s(sim.base_url()));
        self.set("entra", "extra_trust_roots", Value::Array(vec![p(&ca)]));
        self.set(
            "entra",
            "token_app_client_id",
            s(sim.info().token_app_client_id),
        );
        Ok(self)
    }

    setters! {
        /// `[entra] token_app_client_id`.
        token_app(client_id: &str) => "entra"."token_app_client_id" = s(client_id);
        /// `[entra] graph_url`.
        graph_url(url: &str) => "entra"."graph_url" = s(url);
        /// `[server] listen`.
        listen(addr: SocketAddr) => "server"."listen" = s(addr.to_string());
        /// `[storage] data_dir`.
        data_dir(dir: &Path) => "storage"."data_dir" = p(dir);
        /// `[platform] profiles_path`.
        profiles_path(path: &Path) => "platform"."profiles_path" = p(path);
        /// `[invitations] activation_base_url`.
        activation_base_url(url: &str) => "invitations"."activation_base_url" = s(url);
        /// `[invitations] token_key`.
        token_key(path: &Path) => "invitations"."token_key" = p(path);
        /// `[telemetry] otlp_endpoint`: traces to an OTLP/gRPC collector.
        otlp_endpoint(url: &str) => "telemetry"."otlp_endpoint" = s(url);
        /// `[verification] interval_secs`: scheduled drift runs.
        verification_interval(secs: u64) => "verification"."interval_secs" = int(secs);
    }

    /// `[storage] sealing_key` (`None`: unset, a key kept in the state store).
    pub fn sealing_key(mut self, key: Option<&Path>) -> Self {
        match key {
            Some(k) => self.set("storage", "sealing_key", p(k)),
            None => self.unset("storage", "sealing_key"),
        }
        self
    }

    /// Both keys the server would otherwise keep in its state store, as files in the set-up's
    /// directory (`sealing.key`, `token.key`: 32 fixed bytes each), as backups require.
    pub fn key_files(self) -> Result<Self> {
        let (sealing, token) = (self.dir.join("sealing.key"), self.dir.join("token.key"));
        crate::keys::write_key_file(&sealing, &[11u8; 32])?;
        crate::keys::write_key_file(&token, &[12u8; 32])?;
        Ok(self.sealing_key(Some(&sealing)).token_key(&token))
    }

    /// `[audit] signing_key` (a key file made elsewhere; [`ServerConfigBuilder::vkey`] is then
    /// unknown).
    pub fn signing_key(mut self, key: &Path) -> Self {
        self.set("audit", "signing_key", p(key));
        self.vkey = None;
        self
    }

    /// `[tls] cert` and `key`; with `client_ca`, mTLS.
    pub fn tls(mut self, cert: &Path, key: &Path, client_ca: Option<&Path>) -> Self {
        self.set("tls", "cert", p(cert));
        self.set("tls", "key", p(key));
        if let Some(ca) = client_ca {
            self.set("tls", "client_ca", p(ca));
        }
        self
    }

    /// A `[[auth.callers]]` rule: a client certificate `name` gets `role`, recorded as
    /// `identity` (default: the name).
    pub fn caller(mut self, name: &str, role: Role, identity: Option<&str>) -> Self {
        let mut t = Table::new();
        t.insert("name".into(), s(name));
        t.insert("role".into(), s(role.as_str()));
        if let Some(i) = identity {
            t.insert("identity".into(), s(i));
        }
        self.push("auth", "callers", t);
        self
    }

    /// No `[[auth.callers]]` at all.
    pub fn without_callers(mut self) -> Self {
        self.unset("auth", "callers");
        self
    }

    /// A `[[auth.tokens]]` rule for bearer `token` (its SHA-256 is configured).
    pub fn token(mut self, token: &str, identity: &str, role: Role) -> Self {
        let mut t = Table::new();
        t.insert("sha256".into(), s(token_sha256_hex(token)));
        t.insert("identity".into(), s(identity));
        t.insert("role".into(), s(role.as_str()));
        self.push("auth", "tokens", t);
        self
    }

    /// No `[[auth.tokens]]` at all.
    pub fn without_tokens(mut self) -> Self {
        self.unset("auth", "tokens");
        self
    }

    /// A `[[platform.services]]` entry.
    pub fn platform_service(mut self, svc: PlatformService) -> Self {
        let mut t = Table::new();
        t.insert("id".into(), s(svc.id));
        for (k, v) in [
            ("grpc_health", svc.grpc_health),
            ("http_probe", svc.http_probe),
        ] {
            if let Some(v) = v {
                t.insert(k.into(), s(v));
            }
        }
        if let Some(ca) = svc.ca {
            t.insert("ca".into(), p(&ca));
        }
        if let Some(ms) = svc.timeout_ms {
            t.insert("timeout_ms".into(), int(ms));
        }
        self.push("platform", "services", t);
        self
    }

    /// `[verification] repair_profiles`.
    pub fn repair_profiles(mut self, profiles: &[&str]) -> Self {
        let list = profiles.iter().map(|x| s(*x)).collect();
        self.set("verification", "repair_profiles", Value::Array(list));
        self
    }

    /// `[credentials]` with automatic rotation.
    pub fn auto_rotate(mut self, a: AutoRotate) -> Self {
        self.set("credentials", "auto_rotate", Value::Boolean(true));
        let ints = [
            ("check_interval_secs", a.check_interval_secs),
            ("expiry_horizon_days", u64::from(a.expiry_horizon_days)),
            ("auto_rotate_overlap_secs", a.overlap_secs),
            ("secret_lifetime_days", u64::from(a.secret_lifetime_days)),
        ];
        for (k, v) in ints {
            self.set("credentials", k, int(v));
        }
        self
    }

    /// `[auth] cn_fallback`: a client certificate without SANs is named by its CN.
    pub fn cn_fallback(mut self, on: bool) -> Self {
        self.set("auth", "cn_fallback", Value::Boolean(on));
        self
    }

    /// `[limits] key = value` (see `onboard_server::limits::LimitsSection`).
    pub fn limit(mut self, key: &str, value: u64) -> Self {
        self.set(
            "limits",
            key,
            Value::Integer(i64::try_from(value).unwrap_or(i64::MAX)),
        );
        self
    }

    /// `[section] key = value` for a key the typed methods do not have, such as a misspelt
    /// one in a test of the configuration checks.
    pub fn raw(mut self, section: &str, key: &str, value: Value) -> Self {
        self.set(section, key, value);
        self
    }

    /// `[audit_http]`: the live tiles API on `listen`, open to anyone over plain HTTP.
    pub fn audit_http_open(mut self, listen: &str) -> Self {
        self.set("audit_http", "listen", s(listen));
        self.set("audit_http", "access", s("open"));
        self
    }

    /// `[telemetry]`: `/metrics` on `127.0.0.1:0` (the server prints where) and the log format
    /// (`text` or `json`).
    pub fn telemetry(mut self, log_format: &str) -> Self {
        self.set("telemetry", "metrics_listen", s("127.0.0.1:0"));
        self.set("telemetry", "log_format", s(log_format));
        self
    }

    /// `[publish] target`: continuous publication to `target` (a URL or directory).
    pub fn publish(mut self, target: &str) -> Self {
        self.set("publish", "target", s(target));
        self
    }

    /// `[witnessing]`: the cosignature store, the shortest time between rounds and the
    /// quorum; add witnesses with [`ServerConfigBuilder::witness`].
    pub fn witnessing(mut self, store: &Path, min_interval_ms: u64, quorum: u64) -> Self {
        self.set("witnessing", "store", p(store));
        self.set("witnessing", "min_interval_ms", int(min_interval_ms));
        self.set("witnessing", "quorum", int(quorum));
        self
    }

    /// One `[[witness]]`: its submission URL, cosigner verifier key and request timeout.
    pub fn witness(mut self, url: &str, vkey: &str, timeout_ms: u64) -> Self {
        let mut w = Table::new();
        w.insert("url".into(), s(url));
        w.insert("vkey".into(), s(vkey));
        w.insert("timeout_ms".into(), int(timeout_ms));
        let list = self
            .table
            .entry("witness")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = list {
            a.push(Value::Table(w));
        }
        self
    }

    /// The directory the builder writes its files into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `[storage] data_dir`.
    pub fn data_path(&self) -> Result<PathBuf> {
        self.table
            .get("storage")
            .and_then(|t| t.get("data_dir"))
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .context("storage.data_dir")
    }

    /// The audit log's verifier key (`name+id+base64`) when the builder wrote the signing key.
    pub fn vkey(&self) -> Option<&str> {
        self.vkey.as_deref()
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> String {
        self.table.to_string()
    }

    /// Writes [`ServerConfigBuilder::to_toml`] to `path`.
    pub fn write(&self, path: &Path) -> Result<PathBuf> {
        std::fs::write(path, self.to_toml())?;
        Ok(path.to_path_buf())
    }

    /// The server's configuration, through the server's own parser and checks (no
    /// environment overrides).
    pub fn build(&self) -> Result<Config> {
        Ok(Config::from_toml_str(&self.to_toml(), std::iter::empty())?)
    }
}
