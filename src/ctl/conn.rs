//! Where the server is and who we are: the same settings for every `onboard ctl` command.
//!
//! Each setting comes from, in this order: the flag, the environment variable
//! (`ONBOARD_ADDR`, `ONBOARD_CA`, `ONBOARD_CERT`, `ONBOARD_KEY`, `ONBOARD_TOKEN`), the client
//! config file (`--ctl-config`, `ONBOARD_CTL_CONFIG`, else `$XDG_CONFIG_HOME/onboard/ctl.toml` or
//! `~/.config/onboard/ctl.toml` when it exists). Relative paths in the file are relative to
//! the file. A file that holds a token must not be readable by group or others.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use zeroize::Zeroizing;

use super::exit::{CtlError, chain};

/// A bearer token: never printed (`Debug` hides it), zeroed when dropped.
#[derive(Clone)]
pub struct BearerToken(Zeroizing<String>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

impl BearerToken {
    /// `Bearer …` as a header value marked sensitive (never logged); an error names the rule.
    pub fn header(&self) -> Result<AsciiMetadataValue, &'static str> {
        let mut v: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {}", *self.0))
            .map_err(|_| "the token is not a valid header value")?;
        v.set_sensitive(true);
        Ok(v)
    }
}

impl std::str::FromStr for BearerToken {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Self(Zeroizing::new(s.trim().to_owned())))
    }
}

/// The connection flags, accepted before or after the subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// The server: `https://host:port`, `host:port` (https) or `http://host:port` (a local
    /// plaintext server with bearer tokens).
    #[arg(long, env = "ONBOARD_ADDR", global = true)]
    pub addr: Option<String>,
    /// CA certificate(s) (PEM) that sign the server's certificate; needed for https.
    #[arg(long, env = "ONBOARD_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS; needs --key.
    #[arg(long, env = "ONBOARD_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS; needs --cert.
    #[arg(long, env = "ONBOARD_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Bearer token (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "ONBOARD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<BearerToken>,
    /// The client config file (TOML: addr, ca, cert, key, token or token_file).
    #[arg(long, env = "ONBOARD_CTL_CONFIG", global = true)]
    pub ctl_config: Option<PathBuf>,
    /// Connect timeout in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    pub connect_timeout_secs: u64,
}

/// `ctl.toml`: the same settings as the flags.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    /// The server address.
    addr: Option<String>,
    /// CA file.
    ca: Option<PathBuf>,
    /// Client certificate file.
    cert: Option<PathBuf>,
    /// Client key file.
    key: Option<PathBuf>,
    /// The bearer token itself (the file must then be mode 0600 or stricter).
    token: Option<String>,
    /// A file holding the bearer token.
    token_file: Option<PathBuf>,
}

/// The resolved settings.
#[derive(Debug)]
pub struct Settings {
    /// The endpoint URL (with scheme).
    pub url: String,
    /// CA file.
    pub ca: Option<PathBuf>,
    /// Client certificate and key files.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Bearer token.
    pub token: Option<BearerToken>,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// The default client config file, if it exists.
fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let p = base.join("onboard").join("ctl.toml");
    p.exists().then_some(p)
}

/// A `ctl.toml` that does not parse, said by line and toml's reason only: toml's own `Display`
/// quotes the offending line, and that line may hold the bearer token.
fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let line = e
        .span()
        .and_then(|at| text.get(..at.start))
        .map(|before| format!(" line {}", before.matches('\n').count() + 1))
        .unwrap_or_default();
    anyhow::anyhow!(
        "client config {}{line}: {}",
        path.display(),
        e.message().trim_end()
    )
}

/// Reads `ctl.toml`, resolving its relative paths against its directory.
fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the client config {}", path.display()))?;
    let mut s: FileSettings = toml::from_str(&text).map_err(|e| parse_error(path, &text, &e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for p in [&mut s.ca, &mut s.cert, &mut s.key, &mut s.token_file]
        .into_iter()
        .flatten()
    {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
    if s.token.is_some() {
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} holds a token but is readable by group or others (mode {:04o}); fix: chmod 600 {}",
                path.display(),
                mode & 0o7777,
                path.display()
            );
        }
    }
    Ok(s)
}

impl ConnArgs {
    /// Flags and environment first, then the config file.
    pub fn resolve(&self) -> Result<Settings, CtlError> {
        let file_path = self.ctl_config.clone().or_else(default_config_path);
        let file = match &file_path {
            Some(p) => read_file(p)?,
            None => FileSettings::default(),
        };
        let addr = self.addr.clone().or(file.addr).ok_or_else(|| {
            CtlError::usage(
                "no server address: give --addr, set ONBOARD_ADDR, or put addr in ~/.config/onboard/ctl.toml",
            )
        })?;
        let url = if addr.contains("://") {
            addr
        } else {
            format!("https://{addr}")
        };
        let cert = self.cert.clone().or(file.cert);
        let key = self.key.clone().or(file.key);
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(CtlError::usage(
                    "a client certificate needs both --cert and --key",
                ));
            }
        };
        // An empty token (e.g. `ONBOARD_TOKEN=`) is no token.
        let flag_token = self.token.clone().filter(|t| !t.0.is_empty());
        let token = match (&flag_token, file.token, file.token_file) {
            (Some(t), _, _) => Some(t.clone()),
            (None, Some(t), _) => Some(BearerToken(Zeroizing::new(t.trim().to_owned()))),
            (None, None, Some(f)) => {
                let t = Zeroizing::new(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("reading the token file {}", f.display()))?,
                );
                Some(BearerToken(Zeroizing::new(t.trim().to_owned())))
            }
            (None, None, None) => None,
        };
        Ok(Settings {
            url,
            ca: self.ca.clone().or(file.ca),
            identity,
            token,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
        })
    }
}

/// Adds `authorization: Bearer …` to every call when a token is set.
#[derive(Clone)]
pub struct Auth {
    /// The header value, marked sensitive so it is never logged.
    header: Option<AsciiMetadataValue>,
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

/// A client's TLS settings: trusting the CA certificate(s) in `ca` (PEM) when given, and
/// presenting the client certificate and key of `identity` (PEM files) when given.
pub(crate) fn client_tls(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<ClientTlsConfig> {
    // tonic and the rest of the binary use rustls with aws-lc; choose it once.
    onboard_core::tls::install_crypto_provider();
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = identity {
        let c = read(cert)?;
        let k = Zeroizing::new(read(key)?);
        tls = tls.identity(Identity::from_pem(c, k.as_slice()));
    }
    Ok(tls)
}

/// A connected channel with the caller's credentials, ready for any generated client.
pub type AuthChannel = InterceptedService<Channel, Auth>;

impl Settings {
    /// Connects (eagerly, so an unreachable server is exit 3 before anything else happens).
    pub async fn connect(&self) -> Result<AuthChannel, CtlError> {
        let mut ep = Endpoint::from_shared(self.url.clone())
            .map_err(|e| CtlError::usage(format!("server address {}: {e}", self.url)))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if self.url.starts_with("https://") {
            let ca = self.ca.as_ref().ok_or_else(|| {
                CtlError::usage("https needs the server's CA: give --ca or set ONBOARD_CA")
            })?;
            let identity = self
                .identity
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path()));
            let tls = client_tls(Some(ca), identity)?;
            ep = ep
                .tls_config(tls)
                .map_err(|e| CtlError::usage(format!("TLS set-up: {e}")))?;
        } else if self.identity.is_some() {
            return Err(CtlError::usage(
                "--cert/--key need an https:// server address",
            ));
        }
        let channel = ep.connect().await.map_err(|e| {
            CtlError::unreachable(format!("cannot reach {}: {}", self.url, chain(&e)))
        })?;
        let header = self
            .token
            .as_ref()
            .map(BearerToken::header)
            .transpose()
            .map_err(CtlError::usage)?;
        Ok(InterceptedService::new(channel, Auth { header }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConnArgs {
        ConnArgs {
            addr: None,
            ca: None,
            cert: None,
            key: None,
            token: None,
            ctl_config: None,
            connect_timeout_secs: 1,
        }
    }

    #[test]
    fn flags_win_over_the_file_and_file_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("ctl.toml");
        std::fs::write(
            &file,
            "addr = \"onboard.example.net:8443\"\nca = \"ca.pem\"\ntoken = \"from-file\"\n",
        )
        .expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut a = args();
        a.ctl_config = Some(file.clone());
        let s = a.resolve().expect("settings");
        assert_eq!(s.url, "https://onboard.example.net:8443");
        assert_eq!(s.ca, Some(dir.path().join("ca.pem")));
        assert_eq!(s.token.as_ref().map(|t| t.0.as_str()), Some("from-file"));
        a.addr = Some("http://127.0.0.1:1".into());
        a.token = Some("flag".parse().expect("token"));
        let s = a.resolve().expect("settings");
        assert_eq!(s.url, "http://127.0.0.1:1");
        assert_eq!(s.token.as_ref().map(|t| t.0.as_str()), Some("flag"));
        assert_eq!(format!("{:?}", s.token), "Some(BearerToken(***))");
    }

    #[test]
    fn a_readable_file_with_a_token_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("ctl.toml");
        std::fs::write(&file, "addr = \"h:1\"\ntoken = \"t\"\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut a = args();
        a.ctl_config = Some(file.clone());
        let e = a.resolve().expect_err("refused");
        assert!(
            e.message.contains(&format!("chmod 600 {}", file.display())),
            "{e}"
        );
        // A file that does not parse is said by line and reason, never by its text (toml's
        // message quotes the line, here the token's).
        for bad in [
            "addr = \"h:1\"\ntokn = \"tok-SECRET\"\n",
            "addr = \"h:1\"\ntoken = \"tok-SECRET\n",
            "addr = \"h:1\"\ntoken = \"tok-SECRET\"\ntoken = \"tok-SECRET\"\n",
        ] {
            std::fs::write(&file, bad).expect("write");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let mut a = args();
            a.ctl_config = Some(file.clone());
            let e = a.resolve().expect_err("refused");
            let text = format!("{e} {e:?}");
            assert!(
                !text.contains("SECRET") && text.contains(" line "),
                "{text}"
            );
        }
        let mut a = args();
        a.ctl_config = Some(dir.path().join("missing.toml"));
        assert!(a.resolve().is_err());
        assert!(args().resolve().is_err() || default_config_path().is_some());
    }
}
