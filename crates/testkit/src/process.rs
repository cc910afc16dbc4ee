//! `onboard serve` as a child process (so it can be SIGKILLed, restarted on the same data
//! directory and its memory measured), `onboard …` runs with their exit code and output, the
//! auditor's export + `onboard audit verify`, and the kill tests' replayable plan.
//!
//! The kit cannot know where Cargo put the binary; a test in the root package names it with
//! [`onboard_binary!`](crate::onboard_binary), which reads `CARGO_BIN_EXE_onboard` there.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::Sim;
use prost::Message;
use prost_reflect::DescriptorPool;
use tonic::transport::Channel;

use crate::config::{Edit, ServerConfigBuilder};

mod interactive;
pub use interactive::Interactive;

/// The `onboard` binary of the package whose test or bench expands this (an [`Onboard`]).
#[macro_export]
macro_rules! onboard_binary {
    () => {
        $crate::process::Onboard::new(env!("CARGO_BIN_EXE_onboard"))
    };
}

/// The `onboard` binary.
#[derive(Clone, Debug)]
pub struct Onboard {
    /// Its path.
    path: PathBuf,
}

/// What one `onboard …` run did.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Onboard {
    /// The binary at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Starts `onboard serve --config FILES.config` (logging at `warn`) and waits for its
    /// `onboard serving on ADDR` line. Its log is appended to `files.log`.
    pub async fn serve(&self, files: &ServerFiles) -> Result<ServerProc> {
        self.serve_logging(files, Some("warn")).await
    }

    /// A server with the default test set-up on the emulator `sim` ([`ServerFiles::new`]),
    /// started with [`Onboard::serve`]: its files and the running process.
    pub async fn start(&self, sim: &Sim) -> Result<(ServerFiles, ServerProc)> {
        let files = ServerFiles::new(sim)?;
        let server = self.serve(&files).await?;
        Ok((files, server))
    }

    /// [`Onboard::serve`] with `RUST_LOG=rust_log`, or without `RUST_LOG` (the configuration's
    /// `[telemetry]` then decides). With `[telemetry] metrics_listen`, the
    /// `onboard metrics on ADDR` line before it gives [`ServerProc::metrics`].
    pub async fn serve_logging(
        &self,
        files: &ServerFiles,
        rust_log: Option<&str>,
    ) -> Result<ServerProc> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&files.log)?;
        let mut cmd = Command::new(&self.path);
        cmd.args(["serve", "--config"]).arg(&files.config);
        match rust_log {
            Some(level) => cmd.env("RUST_LOG", level),
            None => cmd.env_remove("RUST_LOG"),
        };
        cmd.stderr(log_file);
        let (mut child, lines) = spawn_until(cmd, "onboard serve", "onboard serving on ").await?;
        let after = |prefix: &str| {
            lines
                .iter()
                .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
        };
        let (Some(addr), metrics, health) = (
            after("onboard serving on "),
            after("onboard metrics on "),
            after("onboard health on "),
        ) else {
            let _ = child.kill();
            bail!(
                "unexpected start-up lines {lines:?}\n{}",
                log_tail(&files.log)
            );
        };
        Ok(ServerProc {
            child,
            addr: addr.parse()?,
            metrics: metrics.map(|m| m.parse()).transpose()?,
            health: health.map(|h| h.parse()).transpose()?,
            log: files.log.clone(),
        })
    }

    /// `onboard ARGS` with `env` (the test's own `ONBOARD_*` removed, and `HOME` the empty
    /// directory `home`, so no user `ctl.toml` is read); standard error piped.
    fn command(&self, args: &[&str], env: &[(&str, &str)], home: &Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.path);
        c.args(args)
            .env("HOME", home)
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        set_env(&mut c, env);
        c
    }

    /// Waits for `child` (180 s at the most) and collects what it printed.
    async fn finish(child: tokio::process::Child) -> Result<Run> {
        let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
            .await
            .context("onboard did not finish within 180 s")??;
        Ok(Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs `onboard ARGS` with `env` (the test's own `ONBOARD_*` removed, and `HOME` an empty
    /// directory so no user `ctl.toml` is read), feeding `stdin`.
    pub async fn run(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> Result<Run> {
        let home = tempfile::tempdir()?;
        let mut c = self.command(args, env, home.path());
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.stdout(Stdio::piped()).spawn()?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use tokio::io::AsyncWriteExt;
            pipe.write_all(text.as_bytes()).await?;
        }
        Self::finish(child).await
    }

    /// Runs `onboard ARGS` with `env` writing its standard output into a pipe whose reader
    /// has already gone (`onboard … | head` once `head` has exited): every write to it fails
    /// with EPIPE. `Run::stdout` is empty.
    pub async fn run_reader_gone(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Run> {
        let home = tempfile::tempdir()?;
        let (reader, writer) = std::io::pipe()?;
        drop(reader);
        let child = self
            .command(args, env, home.path())
            .stdout(writer)
            .spawn()?;
        Self::finish(child).await
    }

    /// `onboard ctl ARGS` against `server` with `token` (through `ONBOARD_ADDR` and
    /// `ONBOARD_TOKEN`).
    pub async fn ctl(&self, server: &ServerProc, token: &str, args: &[&str]) -> Result<Run> {
        let mut all = vec!["ctl"];
        all.extend_from_slice(args);
        let url = server.url();
        self.run(
            &all,
            &[("ONBOARD_ADDR", &url), ("ONBOARD_TOKEN", token)],
            None,
        )
        .await
    }

    /// Exports the (stopped) server's log with `onboard audit export` and verifies the export
    /// with `onboard audit verify --vkey`, as an auditor would.
    pub fn export_and_verify(&self, files: &ServerFiles) -> Result<()> {
        let export = files.dir.path().join("export").display().to_string();
        let audit = files.data_dir().join("audit").display().to_string();
        let run = |args: &[&str]| Command::new(&self.path).args(args).output();
        let out = run(&["audit", "export", "--data-dir", &audit, "--out", &export])?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success(), "export: {err}");
        let out = run(&["audit", "verify", &export, "--vkey", &files.vkey])?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && !text.contains("INVALID"),
            "verify:\n{text}"
        );
        Ok(())
    }
}

/// Gives `c` the variables `env`, and none of the test's own `ONBOARD_*`.
fn set_env(c: &mut tokio::process::Command, env: &[(&str, &str)]) {
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ONBOARD_")) {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
}

/// `onboard witness` running as a child process; killed when dropped.
pub struct WitnessProc {
    /// The process.
    child: Child,
    /// Where it listens (read from its `listening on` line).
    pub addr: SocketAddr,
    /// Its cosigner verifier key (`name+id+base64`), as `--witness` and `[[witness]] vkey`
    /// take it.
    pub vkey: String,
}

impl WitnessProc {
    /// `http://ADDR`, its submission prefix.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Onboard {
    /// `onboard witness keygen --name NAME` into `dir`, then `onboard witness` on
    /// `127.0.0.1:0` with its state in `dir`, trusting the log `origin` signed by `log_vkey`;
    /// waits for its `listening on` line.
    pub async fn witness(
        &self,
        dir: &Path,
        name: &str,
        origin: &str,
        log_vkey: &str,
    ) -> Result<WitnessProc> {
        std::fs::create_dir_all(dir)?;
        let key = dir.join("witness.key");
        let out = output_ok(
            Command::new(&self.path)
                .args(["witness", "keygen", "--name", name, "--out"])
                .arg(&key),
            "witness keygen",
        )?;
        let vkey = String::from_utf8(out.stdout)?.trim().to_owned();
        let mut cmd = Command::new(&self.path);
        cmd.args(["witness", "--listen", "127.0.0.1:0", "--key"])
            .arg(&key)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--log")
            .arg(format!("{origin}={log_vkey}"))
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null());
        let (mut child, lines) = spawn_until(cmd, "onboard witness", "listening on").await?;
        let line = lines.last().cloned().unwrap_or_default();
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            bail!("onboard witness exited before listening ({line:?})");
        };
        Ok(WitnessProc {
            addr: addr.parse()?,
            child,
            vkey,
        })
    }
}

/// Runs `cmd`, the program `what`, to completion and checks that it succeeded (the error holds
/// its standard error).
pub fn output_ok(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// Spawns `cmd`, the program `what` (standard input closed, standard output piped), and reads
/// its standard output within 60 s up to the first line starting with `marker` (or to its end);
/// the rest is drained on a thread, so the child never writes into a closed pipe. The child and
/// the lines read, the marker line last.
async fn spawn_until(
    mut cmd: Command,
    what: &str,
    marker: &'static str,
) -> Result<(Child, Vec<String>)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let lines = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 {
                    break;
                }
                let found = line.starts_with(marker);
                lines.push(line);
                if found {
                    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
                    break;
                }
            }
            Ok::<_, std::io::Error>(lines)
        }),
    )
    .await
    .with_context(|| format!("{what} did not report its address within 60 s"))???;
    Ok((child, lines))
}

/// A data directory, keys and a configuration file for `onboard serve` pointed at the
/// emulator, all in one temporary directory.
pub struct ServerFiles {
    /// Holds everything until the test ends.
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub config: PathBuf,
    /// The audit log's verifier key (`name+id+base64`).
    pub vkey: String,
    /// The server's log (stderr), appended by every start.
    pub log: PathBuf,
}

impl ServerFiles {
    /// The local set-up pointed at `sim`.
    pub fn new(sim: &Sim) -> Result<Self> {
        Self::with(sim, Ok)
    }

    /// The local set-up pointed at `sim`, changed by `edit` (e.g. `[tls]`).
    pub fn with(sim: &Sim, edit: impl Edit) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let builder = edit(ServerConfigBuilder::new(dir.path())?.entra_sim(sim)?)?;
        let vkey = builder
            .vkey()
            .context("the builder wrote no signing key")?
            .to_owned();
        let config = builder.write(&dir.path().join("onboard.toml"))?;
        let log = dir.path().join("server.log");
        Ok(Self {
            dir,
            config,
            vkey,
            log,
        })
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// `onboard serve` running as a child process; killed when dropped.
pub struct ServerProc {
    /// The process.
    child: Child,
    /// Where it listens (read from its start-up line).
    pub addr: SocketAddr,
    /// Where `/metrics` is served, with `[telemetry] metrics_listen` (its start-up line).
    pub metrics: Option<SocketAddr>,
    /// Where plaintext `grpc.health.v1` is served, with `[server] health_listen` (its start-up
    /// line).
    pub health: Option<SocketAddr>,
    /// Its log file.
    pub log: PathBuf,
}

impl ServerProc {
    /// The process id (for /proc readings).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs, as in a power cut of the process.
    pub fn kill9(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait for the graceful exit; fails if the exit is not clean or takes more
    /// than a minute (a hang is a failure with the log's tail, not a stuck test).
    pub fn terminate(self) -> Result<()> {
        self.terminate_within(Duration::from_secs(60)).map(drop)
    }

    /// SIGTERM and wait at most `limit` for the graceful exit; fails if the exit is not clean
    /// or does not come in time (then SIGKILL). Returns how long the exit took.
    pub fn terminate_within(mut self, limit: Duration) -> Result<Duration> {
        catches_sigterm(self.child.id())?;
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM failed");
        let sent = std::time::Instant::now();
        let exit = loop {
            if let Some(exit) = self.child.try_wait()? {
                break exit;
            }
            if sent.elapsed() > limit {
                self.child.kill()?;
                self.child.wait()?;
                bail!(
                    "onboard serve still running {limit:?} after SIGTERM; its log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        ensure!(
            exit.success(),
            "onboard serve exited with {exit}; its log:\n{}",
            self.log_tail()
        );
        Ok(sent.elapsed())
    }

    /// `http://ADDR`, as `--addr` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Result<Channel> {
        crate::server::connect(&self.url(), None).await
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 40 lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Parses protobuf canonical JSON (as `--output json` writes it) into `M`, independently of
/// the CLI's code: prost-reflect over the descriptor set the server serves.
pub fn parse_json<M: Message + Default>(text: &str, full_name: &str) -> Result<M> {
    let pool = DescriptorPool::decode(onboard_proto::FILE_DESCRIPTOR_SET)?;
    let desc = pool
        .get_message_by_name(full_name)
        .with_context(|| full_name.to_owned())?;
    let mut de = serde_json::Deserializer::from_str(text);
    let dynamic = prost_reflect::DynamicMessage::deserialize(desc, &mut de)?;
    de.end()?;
    Ok(dynamic.transcode_to::<M>()?)
}

/// Peak resident set size of process `pid` (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    proc_status_kib(pid, "VmHWM")
}

/// Current resident set size of process `pid` (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    proc_status_kib(pid, "VmRSS")
}

/// The value of `field` (a size in KiB) in `/proc/PID/status`.
fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field}"))?;
    Ok(value
        .split_whitespace()
        .next()
        .with_context(|| format!("{field} value"))?
        .parse()?)
}

/// Waits until process `pid` catches SIGTERM. `onboard serve` installs its handlers before it
/// prints its start-up line; this guards a test against a build where that order regressed
/// (a SIGTERM before the handler ends the process by the signal's default action instead of
/// the graceful exit, and the test would fail only on a loaded machine).
fn catches_sigterm(pid: u32) -> Result<()> {
    const SIGTERM_BIT: u64 = 1 << (15 - 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .context("no SigCgt line in /proc/<pid>/status")?;
        if caught & SIGTERM_BIT != 0 {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "onboard serve did not install its SIGTERM handler within 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
