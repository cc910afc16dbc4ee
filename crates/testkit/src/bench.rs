//! What the benches share: their knobs from the environment, the one ~400-byte audit entry, a
//! log filled by concurrent appenders, concurrent appenders timed with latency percentiles and
//! this process's CPU time, and medians.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// How many tasks append at once in the append benches.
pub const APPENDERS: usize = 64;

/// The environment variable `name` as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fields that make a ~400-byte entry once the log adds `v`, `seq` and `time`; `i` makes
/// each entry's onboarding id distinct.
pub fn entry_fields(i: u64) -> Map<String, Value> {
    let v = json!({
        "actor": "spiffe://platform.example.net/sa/onboarding",
        "action": "app_role_assignment.create",
        "phase": "succeeded",
        "tenant_id": "8f2c1f3e-7f7d-4c1e-9a53-2d3c4b5a6e7f",
        "onboarding_id": format!("onb-{i:012}"),
        "service_id": "dr-service-0042",
        "target": {"type": "appRoleAssignment", "id": "9e3f1c52-6d1a-4f0e-b2a7-1c5d8e9f0a1b", "display_name": "Organization.Read.All"},
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Appends `n` entries ([`entry_fields`]) to `log` from [`APPENDERS`] tasks at once (`n` is
/// rounded down to a multiple of it). Panics on a failed append: a bench has no use for a
/// half-built log.
pub async fn fill(log: &audit_log::AuditLog, n: u64) {
    let appenders = APPENDERS as u64;
    let per_task = n / appenders;
    let tasks: Vec<_> = (0..appenders)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    log.append_fields(&entry_fields(t * per_task + i))
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// The `p` quantile (0 to 1) of `sorted`; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The median of `v` (the upper one for an even count); zero when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// User + system CPU time of this process, in milliseconds (Linux `/proc/self/stat`, 100 Hz;
/// zero elsewhere).
pub fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)` one: state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) * 10.0
}

/// One timed run of concurrent appenders.
#[derive(Debug, Clone)]
pub struct AppendRun {
    /// Acknowledged appends per second.
    pub per_sec: f64,
    /// Median append latency.
    pub p50: Duration,
    /// 99th percentile append latency.
    pub p99: Duration,
    /// Acknowledged appends.
    pub entries: usize,
    /// CPU milliseconds of this process per 1,000 appends.
    pub cpu_ms_per_k: f64,
}

/// Runs [`APPENDERS`] tasks, each calling `append` in a loop for `secs` with a number unique
/// across tasks and calls, and times every call.
pub async fn drive<F, Fut>(secs: u64, append: F) -> AppendRun
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let append = Arc::new(append);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let cpu0 = cpu_ms();
    let tasks: Vec<_> = (0..APPENDERS as u64)
        .map(|t| {
            let append = append.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let s = Instant::now();
                    append(t * 100_000_000 + i).await;
                    lat.push(s.elapsed());
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_ms() - cpu0;
    all.sort_unstable();
    AppendRun {
        per_sec: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        entries: all.len(),
        cpu_ms_per_k: cpu * 1000.0 / all.len().max(1) as f64,
    }
}

/// [`APPENDERS`] tasks append [`entry_fields`] entries to `log` in a loop for `secs`, each
/// append timed ([`drive`]). Panics on a failed append.
pub async fn drive_log(log: &audit_log::AuditLog, secs: u64) -> AppendRun {
    let log = log.clone();
    drive(secs, move |i| {
        let log = log.clone();
        async move {
            log.append_fields(&entry_fields(i))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    })
    .await
}

/// Whether `cargo bench` runs this bench: it passes `--bench`; anything else (e.g.
/// `cargo test --benches`) only smoke-runs it.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The knob `name` from the environment, or its default: `full` in a [`full_run`], `smoke`
/// otherwise.
pub fn knob(name: &str, full: u64, smoke: u64) -> u64 {
    env_u64(name, if full_run() { full } else { smoke })
}

/// `BENCH_ONLY`: which part of a bench to run (empty: every part that runs by default).
#[derive(Debug, Clone)]
pub struct Only(String);

impl Only {
    /// `BENCH_ONLY` from the environment.
    pub fn from_env() -> Self {
        Self(std::env::var("BENCH_ONLY").unwrap_or_default())
    }

    /// Whether the part `part`, which runs by default, runs: nothing or it is named.
    pub fn runs(&self, part: &str) -> bool {
        self.0.is_empty() || self.0 == part
    }

    /// Whether the part `part`, which runs only when named, runs.
    pub fn named(&self, part: &str) -> bool {
        self.0 == part
    }
}

/// Prints the bench's title with this machine's core count, and builds the multi-thread
/// runtime a synchronous `main` drives its async parts with (panics without one: a bench has
/// no use for a half-started harness).
pub fn start(title: &str) -> (tokio::runtime::Runtime, Only) {
    println!(
        "# {title} ({} cores)\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    (rt, Only::from_env())
}

/// For the benches that only run under `cargo bench`: outside a [`full_run`] prints how to
/// run `bench` and answers `None`; inside, the parts to run.
pub fn full_run_only(bench: &str) -> Option<Only> {
    if full_run() {
        Some(Only::from_env())
    } else {
        println!("{bench} bench: run with `cargo bench --bench {bench}`");
        None
    }
}
