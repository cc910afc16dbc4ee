//! The audit log away from its data directory, for the tiles API and publication tests: a log
//! filled by concurrent appenders, the tiles API served on loopback, fetched tiles as a
//! [`TileReader`], and a real S3 server ([`Moto`]) on loopback.
//!
//! Why moto for S3: it installs from PyPI with pip (`python3 -m pip install 'moto[server]'`,
//! a registry CI reaches), starts in well under a second, needs no credentials or disk set-up,
//! and implements the S3 REST API that `object_store` speaks (signature V4, PutObject with
//! metadata, GetObject, 404 NoSuchKey). `.ci/run` installs it; without it the S3 tests FAIL
//! (they never skip) and say how to install it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::{Context, Result, bail};
use audit_http::{Access, HttpConfig, HttpError};
use audit_log::{AuditLog, TileReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::audit::sample_fields;

/// Appends `n` more entries to `log` ([`append_many`] from its current size).
pub async fn append_more(log: &AuditLog, n: u64) -> Result<()> {
    let size = log.size();
    append_many(log, size, size + n).await
}

/// Appends entries `from..to` (each [`sample_fields`]) with 32 concurrent appenders, so
/// commits batch as they do under load.
pub async fn append_many(log: &AuditLog, from: u64, to: u64) -> Result<()> {
    const TASKS: u64 = 32;
    let tasks: Vec<JoinHandle<Result<()>>> = (0..TASKS)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut i = from + t;
                while i < to {
                    log.append_fields(&sample_fields(i)).await?;
                    i += TASKS;
                }
                Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Asserts that every tile of a checkpoint of `size` (each path of
/// [`tiles_of_size`](audit_log::tile_id::tiles_of_size), the checkpoint not included) holds
/// the same bytes in directory `a` as in directory `b`: a copy or a publication equal to an
/// export, byte for byte. Panics naming the tile that differs, or the file that cannot be read.
#[track_caller]
pub fn assert_same_tiles(a: &Path, b: &Path, size: u64) {
    let read =
        |path: &Path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for id in audit_log::tile_id::tiles_of_size(size) {
        let p = id.path();
        assert_eq!(
            read(&a.join(&p)),
            read(&b.join(&p)),
            "{p} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// The tiles API of a log, served on `127.0.0.1:0` until [`TilesApi::stop`].
pub struct TilesApi {
    /// `http://127.0.0.1:PORT/` (or `https://` when served with TLS).
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), HttpError>>,
}

impl TilesApi {
    /// Serves `log`'s tiles API with `config` on a fresh loopback port.
    pub async fn start(log: AuditLog, config: HttpConfig) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            audit_http::serve(listener, log, &config, async {
                stopped.await.ok();
            })
            .await
        });
        Ok(Self {
            url: format!("{scheme}://{addr}/"),
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// Serves `log` open to anyone over plain HTTP.
    pub async fn open(log: AuditLog) -> Result<Self> {
        Self::start(
            log,
            HttpConfig {
                access: Access::Open,
                tls: None,
                feed: None,
            },
        )
        .await
    }

    /// Stops serving and waits for the server to end.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await??;
        Ok(())
    }
}

/// Tiles fetched into memory, keyed by their path (`checkpoint`, `tile/0/000`, …), read back
/// by the verifier.
#[derive(Default, Clone)]
pub struct TileMap(pub HashMap<String, Vec<u8>>);

impl TileReader for TileMap {
    fn read(&self, path: &str) -> std::io::Result<Vec<u8>> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, path.to_owned()))
    }
}

/// Starts the server on port 0, prints the port it got, and runs until stdin closes.
const LAUNCHER: &str = r#"
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"#;

/// How to install what the S3 tests need.
pub const MOTO_INSTALL: &str = "python3 -m pip install 'moto[server]'";

/// A running moto S3 server on loopback (killed on drop).
pub struct Moto {
    /// The server process.
    child: Child,
    /// Held open: the launcher exits when it closes.
    _stdin: ChildStdin,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The port.
    port: u16,
}

impl Moto {
    /// Starts moto; the error says how to install it when it is missing.
    pub fn start() -> Result<Moto> {
        let mut child = Command::new("python3")
            .args(["-c", LAUNCHER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("the S3 tests need python3 and moto ({MOTO_INSTALL}); starting python3")
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("moto launcher: no pipes");
        };
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Ok(port) = line.trim().parse::<u16>() else {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the S3 tests need moto's S3 server ({MOTO_INSTALL}; .ci/run installs it), \
                 and it did not start:\n{err}"
            );
        };
        Ok(Moto {
            child,
            _stdin: stdin,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        })
    }

    /// Creates a bucket (moto does not check signatures, so a bare PUT does).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        if !resp.starts_with("HTTP/1.1 200") {
            bail!("create bucket {name}: {resp}");
        }
        Ok(())
    }

    /// The environment the AWS SDKs (and `object_store`'s `from_env`) read.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
    }

    /// The same as `object_store` configuration keys, for in-process targets.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint.clone()),
            ("aws_allow_http", "true".into()),
            ("aws_access_key_id", "testing".into()),
            ("aws_secret_access_key", "testing".into()),
            ("aws_region", "us-east-1".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tiles fetched from `base` (a tiles API URL ending in `/`) with `client`: the checkpoint
/// and every tile of its size, in a [`TileMap`], with the checkpoint's text.
pub async fn fetch_all(client: &reqwest::Client, base: &str) -> Result<(String, TileMap)> {
    let note = client
        .get(format!("{base}checkpoint"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let size = note
        .lines()
        .nth(1)
        .and_then(|l| l.parse::<u64>().ok())
        .context("checkpoint: no size line")?;
    let mut map = TileMap::default();
    for id in audit_log::tile_id::tiles_of_size(size) {
        let path = id.to_string();
        let bytes = client
            .get(format!("{base}{path}"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        map.0.insert(path, bytes.to_vec());
    }
    Ok((note, map))
}
