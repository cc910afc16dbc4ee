//! The standard process collector's series (`process_*`, as Prometheus client libraries name
//! them), read from `/proc/self` at scrape time. Elsewhere than Linux they are left out.

use std::fmt::Write;

/// Appends the process series to `out` (Prometheus text format).
pub(super) fn render(out: &mut String) {
    let Some(p) = read() else {
        return;
    };
    let mut family = |name: &str, kind: &str, help: &str, value: f64| {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds,
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes,
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        p.open_fds,
    );
    family(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        p.max_fds,
    );
}

/// A family's `# HELP` and `# TYPE` lines (Prometheus text format), for the families written
/// at scrape time rather than through the recorder.
pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One reading.
struct Reading {
    /// User + system CPU time.
    cpu_seconds: f64,
    /// Resident set size (`VmRSS`).
    resident_bytes: f64,
    /// Entries of `/proc/self/fd`.
    open_fds: f64,
    /// The soft `RLIMIT_NOFILE`.
    max_fds: f64,
}

#[cfg(target_os = "linux")]
fn read() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(f64::INFINITY, |n| n as f64);
    Some(Reading {
        cpu_seconds: ticks / clock_ticks_per_second(),
        resident_bytes: rss_kib * 1024.0,
        open_fds,
        max_fds,
    })
}

/// `AT_CLKTCK` from the process's auxiliary vector (what `sysconf(_SC_CLK_TCK)` returns),
/// else Linux's `USER_HZ` of 100.
#[cfg(target_os = "linux")]
fn clock_ticks_per_second() -> f64 {
    const AT_CLKTCK: usize = 17;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| -> Option<usize> { Some(usize::from_ne_bytes(b.try_into().ok()?)) };
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| {
            auxv.chunks_exact(2 * WORD).find_map(|pair| {
                let (key, value) = pair.split_at(WORD);
                (word(key)? == AT_CLKTCK).then(|| word(value)).flatten()
            })
        })
        .filter(|hz| *hz > 0)
        .map_or(100.0, |hz| hz as f64)
}

#[cfg(not(target_os = "linux"))]
fn read() -> Option<Reading> {
    None
}
