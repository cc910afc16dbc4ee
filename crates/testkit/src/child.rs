//! The crash tests' child process: this test binary re-run for one of its ignored tests, its
//! standard output read line by line so the parent can kill it at the moment it chooses; and
//! the replayable plan (rounds and a seeded generator) those tests kill by.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The arguments that make this test binary run only its ignored test `test`, output not
/// captured (what [`ChildTest`] and `strace::traced_child` start).
pub(crate) fn test_args(test: &str) -> [&str; 4] {
    ["--ignored", "--exact", test, "--nocapture"]
}

/// This test binary running one ignored test ([`test_args`]), with its standard output read
/// line by line on a thread. It panics where the harness itself fails (the binary cannot be
/// started, waited for or read): no input from outside a test reaches it, and a test fails
/// with the message.
pub struct ChildTest {
    /// The process, killed or waited for by [`Self::kill`] and [`Self::wait`].
    child: Child,
    /// The child's output lines, as it prints them.
    lines: Receiver<String>,
    /// The reader thread, joined once the child is gone so no line is lost.
    reader: Option<JoinHandle<()>>,
}

impl ChildTest {
    /// Starts the ignored test `test` with `env` set; its standard error goes to `stderr`.
    pub fn spawn<V: AsRef<OsStr>>(test: &str, env: &[(&str, V)], stderr: Stdio) -> Self {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args(test_args(test))
            .envs(env.iter().map(|(k, v)| (k, v.as_ref())))
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("starting the child test");
        // Set to `Stdio::piped()` just above, so it is there.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// The next line within `within`; `Disconnected` once the child's output has ended.
    pub fn next_line(&self, within: Duration) -> Result<String, RecvTimeoutError> {
        self.lines.recv_timeout(within)
    }

    /// SIGKILLs the child and returns the lines it printed that were not read yet.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        self.finish().1
    }

    /// Waits for the child to exit; its status and the lines not read yet.
    pub fn wait(mut self) -> (ExitStatus, Vec<String>) {
        self.finish()
    }

    fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().expect("waiting for the child test");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the child's output reader");
        }
        (status, self.lines.try_iter().collect())
    }
}

impl Drop for ChildTest {
    fn drop(&mut self) {
        // A parent that panics mid-round leaves no child appending behind it.
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A small deterministic generator (xorshift64*), so a printed seed replays a failing run.
pub struct Rng {
    /// The seed it started from.
    pub seed: u64,
    /// The current state.
    state: u64,
}

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Rounds (`<prefix>_ROUNDS`, else `default_rounds`) and a generator seeded from
/// `<prefix>_SEED` (else the clock) for a kill test; prints both, so a failure can be replayed.
pub fn replay_plan(prefix: &str, default_rounds: u64) -> (u64, Rng) {
    let env = |name: &str| {
        std::env::var(format!("{prefix}_{name}"))
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    };
    let rounds = env("ROUNDS").unwrap_or(default_rounds);
    let seed = env("SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    }) | 1;
    println!("{prefix}_SEED={seed} {prefix}_ROUNDS={rounds}");
    (rounds, Rng { seed, state: seed })
}
