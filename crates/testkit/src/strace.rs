//! Syscall traces: a test binary's ignored child test run under `strace -f -y`, parsed into
//! calls, so durability tests can check that bytes were `fdatasync`ed between their write and
//! an acknowledgement (the audit log's and the state store's). Needs strace
//! (`apt-get install -y strace`; `.ci/run` installs it) and ptrace permission.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// One traced syscall: where it started and ended in the trace (equal unless another thread's
/// call came in between), the path of its first argument (`-y`), and its arguments as printed.
#[derive(Debug)]
pub struct Call {
    /// The syscall's name (`pwrite64`, `fdatasync`, …).
    pub name: String,
    /// The path of its first argument's descriptor, if it was one.
    pub path: String,
    /// Its arguments as strace printed them.
    pub args: String,
    /// The trace line it started on.
    pub start: usize,
    /// The trace line it returned on.
    pub end: usize,
}

/// Parses `strace -f -y` output (with `<unfinished ...>` / `<... resumed>` pairs).
pub fn parse(trace: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for (n, line) in trace.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let name = resumed.split_whitespace().next().unwrap_or_default();
            if let Some(i) = open.remove(pid) {
                let c: &mut Call = &mut calls[i];
                assert_eq!(c.name, name, "trace line {n}: {line}");
                c.end = n;
            }
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if name.contains(' ') {
            continue; // signals, exits
        }
        let path = args
            .split_once('<')
            .filter(|(fd, _)| fd.chars().all(|c| c.is_ascii_digit()))
            .and_then(|(_, p)| p.split_once('>'))
            .map(|(p, _)| p.to_owned())
            .unwrap_or_default();
        let unfinished = args.ends_with("<unfinished ...>");
        if unfinished {
            open.insert(pid.to_owned(), calls.len());
        }
        calls.push(Call {
            name: name.to_owned(),
            path,
            args: args.to_owned(),
            start: n,
            end: if unfinished { usize::MAX } else { n },
        });
    }
    calls
}

/// `fdatasync` or `fsync`.
pub fn is_sync(c: &Call) -> bool {
    c.name == "fdatasync" || c.name == "fsync"
}

/// Runs this test binary's ignored test `child` under strace with `env_name=dir`, tracing
/// writes and syncs, and returns the parsed trace (kept in `dir/trace`).
pub fn traced_child(dir: &Path, child: &str, env_name: &str) -> Vec<Call> {
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs strace (apt-get install -y strace; .ci/run installs it): {strace:?}"
    );
    let trace = dir.join("trace");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-y", "-s", "16777216", "-e", "signal=none"])
        .args([
            "-e",
            "trace=write,pwrite64,fsync,fdatasync,sync_file_range",
            "-o",
        ])
        .arg(&trace)
        .arg(std::env::current_exe().expect("test binary"))
        .args(crate::child::test_args(child))
        .args(["--test-threads", "1"])
        .env(env_name, dir)
        .output()
        .expect("running strace");
    assert!(
        out.status.success(),
        "the traced child failed (is ptrace allowed here?):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&std::fs::read_to_string(&trace).expect("trace"))
}
