//! The selftest's own `onboard serve`: a configuration in the run directory (loopback,
//! plaintext, on a free port fixed beforehand for a browser sign-in; one operator and one
//! auditor bearer token made for this run; Entra at the URLs given), a fresh audit signing
//! key, and the server as a child process of this binary, stopped with SIGTERM at the end.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use audit_log::NoteSigner;
use onboard_server::Role;

use super::{SelftestArgs, SignInWith};
use crate::audit_cli;
use crate::local_server::{LocalServer, TokenRule};

/// The audit log's origin for selftest runs.
const ORIGIN: &str = "onboard.selftest.invalid/audit";

/// Bearer tokens made for one run (the server listens on loopback only).
pub struct Tokens {
    /// The operator's (invitations, onboardings, credentials, verification).
    pub operator: String,
    /// The auditor's (audit entries).
    pub auditor: String,
}

/// A random token: 32 bytes from the OS, hex.
fn random_token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random bytes: {e}"))?;
    Ok(hex::encode(b))
}

/// Writes the key and `onboard.toml` into `dir`; returns the config path and the tokens.
pub fn write_config(dir: &Path, args: &SelftestArgs) -> anyhow::Result<(PathBuf, Tokens)> {
    let key = dir.join("audit.key");
    let signer = NoteSigner::generate(ORIGIN)?;
    audit_cli::write_private(&key, signer.to_go_private_key().as_bytes())?;
    std::fs::write(dir.join("audit.vkey"), format!("{}\n", signer.verifier()))?;
    let tokens = Tokens {
        operator: random_token()?,
        auditor: random_token()?,
    };
    // A browser sign-in comes back to the wizard on this server, so it needs a port known
    // before it starts and an http loopback origin (Microsoft's localhost exceptions).
    let (listen, activation_base_url) = match args.sign_in {
        SignInWith::DeviceCode => (
            "127.0.0.1:0".to_owned(),
            "https://wizard.selftest.invalid/activate".to_owned(),
        ),
        SignInWith::Browser => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .context("finding a free loopback port")?
                .port();
            (
                format!("127.0.0.1:{port}"),
                format!("http://127.0.0.1:{port}/activate"),
            )
        }
    };
    let config = LocalServer {
        listen: &listen,
        data_dir: &dir.join("data"),
        signing_key: &key,
        origin: ORIGIN,
        authority_url: &args.authority_url,
        graph_url: &args.graph_url,
        trust_roots: args.trust_root.as_slice(),
        token_app_client_id: &args.token_app_client_id,
        provider_name: &args.provider_name,
        server_name: &args.server_name,
        activation_base_url: &activation_base_url,
        tokens: &[
            TokenRule {
                token: &tokens.operator,
                identity: "selftest-operator",
                role: Role::Operator,
            },
            TokenRule {
                token: &tokens.auditor,
                identity: "selftest-auditor",
                role: Role::Auditor,
            },
        ],
    };
    // Parsed exactly as the server will parse it, so a bad value fails here, named.
    config.config()?;
    let text = format!(
        "# Written by `onboard selftest --live`; used once.\n{}",
        config.to_toml()
    );
    let path = dir.join("onboard.toml");
    std::fs::write(&path, text)?;
    Ok((path, tokens))
}

/// `onboard serve` as a child process; SIGTERMed when stopped, killed when dropped.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Server {
    /// Starts `<this binary> serve --config CONFIG` without the caller's `ONBOARD_*`
    /// overrides, its log in `dir/server.log`, and waits for `onboard serving on ADDR`.
    pub async fn start(dir: &Path, config: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the onboard binary")?;
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ONBOARD_")) {
            cmd.env_remove(k);
        }
        let mut child = cmd.spawn().context("starting onboard serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            }),
        )
        .await;
        let line = match line {
            Ok(Ok(Ok(l))) => l,
            _ => {
                let _ = child.kill();
                bail!("onboard serve did not start; see {}", log.display());
            }
        };
        let Some(addr) = line.trim().strip_prefix("onboard serving on ") else {
            let _ = child.kill();
            bail!(
                "onboard serve did not start ({:?}); see {}",
                line.trim(),
                log.display()
            );
        };
        Ok(Self {
            addr: addr.parse()?,
            child,
            log,
        })
    }

    /// SIGTERM, then waits up to 30 s for the graceful exit (SIGKILL after that).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            self.child.kill()?;
        }
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("onboard serve exited with {status}");
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.child.kill()?;
        bail!("onboard serve did not stop within 30 s of SIGTERM; killed")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
