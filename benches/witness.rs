//! Witness overhead on append throughput, in one run: 64 concurrent appenders of ~400-byte
//! entries on a log with no witnesses, against the same on logs whose checkpoints a submitter
//! offers to two witnesses (two `onboard witness` child processes on loopback, sharing this
//! machine's CPUs, which is harsher than witnesses on other hosts):
//!
//! - `2 witnesses, every checkpoint`: `min_interval = 0`, a new round as soon as the last one
//!   ended (the worst case: as many cosignatures as the witnesses can give);
//! - `2 witnesses, default`: `SubmitterConfig::new` (at most one round per second).
//!
//! Variants alternate in rounds (their order rotating) so that outside load falls on all alike;
//! each witnessed run is also compared with the no-witness run of the same round, and the CPU
//! time this process spent per 1,000 appends (log, appenders and submitter; `/proc/self/stat`)
//! is reported, which outside load disturbs far less than wall-clock throughput. Target:
//! appends/s with witnesses within 10 % of none (cosigning is asynchronous).
//!
//! Run: `cargo bench --bench witness` (env `BENCH_SECONDS`, default 5; `BENCH_ROUNDS`, default 3).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use audit_log::{AuditLog, LogConfig, NoteSigner};
use testkit::bench::{APPENDERS, AppendRun, drive_log, env_u64, median};
use tokio::sync::oneshot;
use witness::{CosignerKey, Submitter, SubmitterConfig, WitnessEndpoint};

/// Starts `onboard witness` trusting `logs` and returns it with its URL.
fn spawn_witness(key: &Path, state: &Path, logs: &[(String, String)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onboard"));
    cmd.args(["witness", "--listen", "127.0.0.1:0", "--key"])
        .arg(key)
        .arg("--state-dir")
        .arg(state);
    for (origin, vkey) in logs {
        cmd.arg("--log").arg(format!("{origin}={vkey}"));
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting onboard witness: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("listening on ") {
                    break a.to_owned();
                }
            }
            _ => panic!("onboard witness exited before listening"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

/// A log variant: its log and, when witnessed, its submitter.
struct Variant {
    /// Printed in the table.
    name: &'static str,
    /// Its own log.
    log: AuditLog,
    /// Its submitter, if witnessed.
    submitter: Option<Submitter>,
    /// One entry per round.
    runs: Vec<AppendRun>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs = env_u64("BENCH_SECONDS", 5);
    let rounds = env_u64("BENCH_ROUNDS", 3);
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let origins = [
        ("no witnesses", "bench.onboard.invalid/none", None),
        (
            "2 witnesses, every checkpoint",
            "bench.onboard.invalid/w0",
            Some(Duration::ZERO),
        ),
        (
            "2 witnesses, default (≤ 1 round/s)",
            "bench.onboard.invalid/w1",
            Some(Duration::from_secs(1)),
        ),
    ];
    let signers: Vec<NoteSigner> = origins
        .iter()
        .map(|(_, o, _)| NoteSigner::generate(o).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let logs: Vec<(String, String)> = signers
        .iter()
        .skip(1)
        .map(|s| (s.name().to_owned(), s.verifier().to_string()))
        .collect();
    // Two `onboard witness` processes on loopback, trusting the witnessed logs.
    let mut endpoints = Vec::new();
    let mut children = Vec::new();
    for name in ["bench-witness-a.example", "bench-witness-b.example"] {
        let key = CosignerKey::generate(name).unwrap_or_else(|e| panic!("{e}"));
        let key_path = tmp.path().join(format!("{name}.key"));
        // Owner-only, as `onboard witness` requires of its key.
        testkit::keys::write_key_file(&key_path, key.to_go_private_key().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let (child, url) = spawn_witness(&key_path, &tmp.path().join(name), &logs);
        children.push(child);
        endpoints.push(WitnessEndpoint {
            url,
            verifier: key.verifier(),
            timeout: Duration::from_secs(5),
        });
    }
    let mut variants = Vec::new();
    let mut sub_stops = Vec::new();
    for ((name, origin, interval), signer) in origins.into_iter().zip(signers) {
        let log = AuditLog::open(
            LogConfig::new(tmp.path().join(origin.replace('/', "_")), origin),
            signer,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let submitter = interval.map(|min_interval| {
            let config = SubmitterConfig {
                min_interval,
                ..SubmitterConfig::new(
                    endpoints.clone(),
                    tmp.path()
                        .join(format!("{}.json", origin.replace('/', "_"))),
                )
            };
            let (stop, stopped) = oneshot::channel::<()>();
            sub_stops.push(stop);
            Submitter::spawn(log.clone(), config, async move {
                let _ = stopped.await;
            })
            .unwrap_or_else(|e| panic!("{e}"))
            .0
        });
        variants.push(Variant {
            name,
            log,
            submitter,
            runs: Vec::new(),
        });
    }
    println!("witness overhead: {APPENDERS} appenders, {secs} s per run, {rounds} rounds");
    println!(
        "| run | round | entries | entries/s | vs. none, same round | p50 | p99 | CPU ms / 1k appends | cosigned size at end | cosignatures |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut round_ratios: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let n = variants.len();
    for round in 1..=rounds {
        // Rotate the order each round so that no variant always runs first or last.
        let mut this_round: Vec<Option<f64>> = vec![None; n];
        let mut lines: Vec<(usize, String)> = Vec::new();
        for k in 0..n {
            let idx = (k + round as usize) % n;
            let v = &mut variants[idx];
            let before: u64 = v
                .submitter
                .as_ref()
                .map_or(0, |s| s.status().iter().map(|st| st.cosignatures).sum());
            let r = drive_log(&v.log, secs).await;
            let (cosigned, cosigs) = match &v.submitter {
                Some(s) => (
                    s.cosigned().map_or("none".to_owned(), |c| {
                        format!("{} of {}", c.checkpoint.size, v.log.size())
                    }),
                    s.status().iter().map(|st| st.cosignatures).sum::<u64>() - before,
                ),
                None => ("-".to_owned(), 0),
            };
            this_round[idx] = Some(r.per_sec);
            lines.push((
                idx,
                format!(
                    "| {} | {round} | {} | {:.0} | RATIO | {:.2} ms | {:.2} ms | {:.1} | {cosigned} | {cosigs} |",
                    v.name,
                    r.entries,
                    r.per_sec,
                    r.p50.as_secs_f64() * 1e3,
                    r.p99.as_secs_f64() * 1e3,
                    r.cpu_ms_per_k,
                ),
            ));
            v.runs.push(r);
        }
        let none = this_round[0].unwrap_or(1.0);
        for (idx, line) in lines {
            let ratio = this_round[idx].unwrap_or(0.0) / none;
            round_ratios[idx].push(ratio);
            println!("{}", line.replace("RATIO", &format!("{ratio:.3}")));
        }
    }
    let base = median(
        &variants[0]
            .runs
            .iter()
            .map(|r| r.per_sec)
            .collect::<Vec<_>>(),
    );
    let cpu_of = |v: &Variant| median(&v.runs.iter().map(|r| r.cpu_ms_per_k).collect::<Vec<_>>());
    let base_cpu = cpu_of(&variants[0]);
    for (v, ratios) in variants.iter().zip(&round_ratios) {
        let m = median(&v.runs.iter().map(|r| r.per_sec).collect::<Vec<_>>());
        let cpu = cpu_of(v);
        println!(
            "median {}: {m:.0} entries/s (ratio of medians {:.3}, median of same-round ratios {:.3}); {cpu:.1} CPU ms per 1k appends ({:+.1} %)",
            v.name,
            m / base,
            median(ratios),
            (cpu / base_cpu - 1.0) * 100.0
        );
    }
    for v in &variants {
        if let Some(s) = &v.submitter {
            for st in s.status() {
                println!(
                    "{} → {}: {} cosignatures, {} conflicts, {} failures",
                    v.name, st.url, st.cosignatures, st.conflicts, st.failures
                );
            }
        }
    }
    drop(sub_stops);
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}
