//! `onboard …` read line by line while it runs ([`Interactive`], from [`Onboard::spawn`]).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Onboard, Run};

/// `onboard …` running with its standard output read line by line, for commands that print
/// something a test must act on before they end (a device code to complete in the emulator).
pub struct Interactive {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Onboard {
    /// Starts `onboard ARGS` with `env` (the test's own `ONBOARD_*` removed), stdout piped.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Interactive> {
        let mut c = tokio::process::Command::new(&self.path);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        super::set_env(&mut c, env);
        let mut child = c.spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        use tokio::io::AsyncBufReadExt;
        Ok(Interactive {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            seen: Vec::new(),
        })
    }
}

impl Interactive {
    /// Reads lines until one starts with `prefix` (within `within`); returns the rest of it.
    pub async fn after(&mut self, prefix: &str, within: Duration) -> Result<String> {
        let found = tokio::time::timeout(within, async {
            while let Some(line) = self.lines.next_line().await? {
                self.seen.push(line.clone());
                if let Some(rest) = line.trim_start().strip_prefix(prefix) {
                    return Ok(rest.trim().to_owned());
                }
            }
            bail!("output ended without a line starting with {prefix:?}")
        })
        .await;
        match found {
            Ok(r) => r.with_context(|| format!("output so far:\n{}", self.seen.join("\n"))),
            Err(_) => bail!(
                "no line starting with {prefix:?} within {within:?}; output so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Reads the rest of the output and waits for the exit (within `within`).
    pub async fn finish(mut self, within: Duration) -> Result<Run> {
        let done = tokio::time::timeout(within, async {
            while let Some(line) = self.lines.next_line().await? {
                self.seen.push(line);
            }
            let out = self.child.wait_with_output().await?;
            anyhow::Ok(out)
        })
        .await
        .context("onboard did not finish in time")??;
        let mut stdout = self.seen.join("\n");
        stdout.push('\n');
        Ok(Run {
            code: done.status.code(),
            stdout,
            stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
        })
    }
}
