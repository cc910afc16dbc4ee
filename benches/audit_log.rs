//! Audit-log benchmarks, each reported with a baseline measured in the same run:
//!
//! 1. durable append throughput and latency with 64 concurrent appenders and ~400-byte JSON
//!    entries, against a baseline that only inserts the same entries into sled and flushes with
//!    the same group-commit batching (no hashing, no signing), and the same baseline made
//!    durable on power loss like the log (one `fdatasync` of sled's file after each flush);
//! 2. inclusion-proof latency at 1,000,000 entries, against one raw sled read;
//! 3. offline verification of a 1,000,000-entry tlog-tiles export, against SHA-256 over the
//!    same entry bytes already in memory.
//!
//! 4. (`BENCH_ONLY=telemetry`, not in the default run because it installs process-wide state)
//!    the same durable appends with the Prometheus recorder installed and one JSON log line per
//!    append (what the server writes per audited RPC), against a log opened before the
//!    recorder, in alternating rounds.
//!
//! Run: `cargo bench --bench audit_log` (env `BENCH_ENTRIES`, `BENCH_SECONDS` to scale,
//! `BENCH_ONLY=append|proof|telemetry` to run one part).

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use audit_log::verify::verify_export;
use audit_log::{AuditLog, LogConfig, NoteSigner, PreparedEntry};
use sha2::{Digest, Sha256};
use testkit::bench::{
    APPENDERS, AppendRun, drive, drive_log, entry_fields, env_u64, fill, knob, median, percentile,
    start,
};
use tokio::sync::oneshot;

const ORIGIN: &str = "bench.onboard.invalid/audit";

/// The baseline: the same channel, batching, sled inserts and one flush per batch, with none
/// of the tree; with `sync`, also one `fdatasync` of sled's log file per batch, as the log does.
fn baseline_writer(
    db: sled::Db,
    rx: mpsc::Receiver<(Vec<u8>, oneshot::Sender<u64>)>,
    max_batch: usize,
    sync: Option<std::fs::File>,
) {
    let tree = db.open_tree("baseline").unwrap_or_else(|e| panic!("{e}"));
    let mut seq = 0u64;
    while let Ok(first) = rx.recv() {
        let mut reqs = vec![first];
        while reqs.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => reqs.push(r),
                Err(_) => break,
            }
        }
        // Plain inserts in order, as the audit writer does (see its module doc for why not
        // `apply_batch`).
        let mut replies = Vec::with_capacity(reqs.len());
        for (bytes, reply) in reqs {
            tree.insert(seq.to_be_bytes(), bytes)
                .unwrap_or_else(|e| panic!("{e}"));
            replies.push((seq, reply));
            seq += 1;
        }
        db.flush().unwrap_or_else(|e| panic!("{e}"));
        if let Some(f) = &sync {
            f.sync_data().unwrap_or_else(|e| panic!("{e}"));
        }
        for (s, r) in replies {
            let _ = r.send(s);
        }
    }
}

async fn bench_appends(secs: u64) {
    let sample = PreparedEntry::new(audit_log::SCHEMA_VERSION, &entry_fields(0))
        .unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = AuditLog::open(
        LogConfig::new(tmp.path().join("log"), ORIGIN),
        NoteSigner::generate(ORIGIN).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let entry_len = log
        .append_fields(&entry_fields(0))
        .await
        .map(|a| a.seq)
        .and_then(|s| log.entry(s))
        .map(|e| e.len())
        .unwrap_or(0);

    type Baseline = Arc<std::sync::Mutex<mpsc::Sender<(Vec<u8>, oneshot::Sender<u64>)>>>;
    let baseline = |name: &str, durable: bool| -> (Baseline, std::thread::JoinHandle<()>) {
        let path = tmp.path().join(name);
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(64 << 20)
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let sync =
            durable.then(|| std::fs::File::open(path.join("db")).unwrap_or_else(|e| panic!("{e}")));
        let (tx, rx) = mpsc::channel::<(Vec<u8>, oneshot::Sender<u64>)>();
        let writer = std::thread::spawn(move || baseline_writer(db, rx, 4096, sync));
        (Arc::new(std::sync::Mutex::new(tx)), writer)
    };
    let (tx, writer) = baseline("baseline", false);
    let (dtx, dwriter) = baseline("baseline-durable", true);
    // The baselines store bytes of the same size the log stores.
    let filler = vec![b'x'; entry_len];
    let _ = sample;
    let base_round = |tx: Baseline, filler: Vec<u8>| {
        drive(secs, move |_| {
            let (r, w) = oneshot::channel();
            let sent = tx
                .lock()
                .map(|t| t.send((filler.clone(), r)).is_ok())
                .unwrap_or(false);
            async move {
                if sent {
                    let _ = w.await;
                }
            }
        })
    };
    // Alternate short rounds of baseline and log, so that load from other processes on this
    // shared machine falls on both alike; report every round and the medians. Each round starts
    // with the next variant, so none always runs right after another's writes (whose writeback
    // the kernel may still be doing).
    let rounds = env_u64("BENCH_ROUNDS", 3);
    let mut base_runs = Vec::new();
    let mut durable_runs = Vec::new();
    let mut our_runs = Vec::new();
    for round in 0..rounds {
        for variant in (0..3).map(|k| (round + k) % 3) {
            match variant {
                0 => base_runs.push(base_round(tx.clone(), filler.clone()).await),
                1 => durable_runs.push(base_round(dtx.clone(), filler.clone()).await),
                _ => our_runs.push(drive_log(&log, secs).await),
            }
        }
    }
    drop(tx);
    drop(dtx);
    let _ = writer.join();
    let _ = dwriter.join();
    log.close();
    println!(
        "## Durable append, {APPENDERS} concurrent appenders, {entry_len}-byte JSON entries, {rounds} alternating rounds of {secs} s"
    );
    print_rounds(&[
        ("baseline: sled insert + flush, same batching", &base_runs),
        (
            "baseline: sled insert + flush + fdatasync, same batching",
            &durable_runs,
        ),
        (
            "audit log: durable + Merkle nodes + signed checkpoint",
            &our_runs,
        ),
    ]);
    let (mb, md, mo) = (
        per_sec(&base_runs),
        per_sec(&durable_runs),
        per_sec(&our_runs),
    );
    println!(
        "median entries/s: baseline {mb:.0}, durable baseline {md:.0}, audit log {mo:.0}; ratio of medians log/baseline {:.2}, log/durable baseline {:.2}; median of same-round ratios log/baseline {:.2}, log/durable baseline {:.2}",
        mo / mb,
        mo / md,
        round_ratio(&our_runs, &base_runs),
        round_ratio(&our_runs, &durable_runs)
    );
    println!();
}

fn bench_proofs_and_verify(n: u64) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let signer = NoteSigner::generate(ORIGIN).unwrap_or_else(|e| panic!("{e}"));
    let vkey = signer.verifier();
    let key_text = signer.to_go_private_key();
    let mut cfg = LogConfig::new(tmp.path().join("log"), ORIGIN);
    cfg.max_batch = 8192;
    let log = AuditLog::open(cfg, signer).unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let build = Instant::now();
    rt.block_on(fill(&log, n));
    let size = log.size();
    println!(
        "(built a {size}-entry log in {:.1} s)",
        build.elapsed().as_secs_f64()
    );

    // Inclusion proofs at the full size, random leaves, for several in-memory level cut-offs
    // (the log is reopened for each; a proof reads one sled entry per level below the cut-off).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let samples = 200_000;
    let log_dir = tmp.path().join("log");
    log.close();
    let mut rows = Vec::new();
    for from in [0u8, 1, 2, 3] {
        let mut cfg = LogConfig::new(&log_dir, ORIGIN);
        cfg.memory_from_level = from;
        let log = AuditLog::open(
            cfg,
            NoteSigner::from_go_private_key(&key_text).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut lat = Vec::with_capacity(samples);
        let mut total_len = 0usize;
        for _ in 0..samples {
            let seq = rand() % size;
            let s = Instant::now();
            let p = log
                .inclusion_proof(seq, size)
                .unwrap_or_else(|e| panic!("{e}"));
            lat.push(s.elapsed());
            total_len += p.len();
        }
        lat.sort_unstable();
        rows.push((from, lat, total_len));
        log.close();
    }
    // Baseline: one raw sled point read of a 32-byte value, same process.
    let db = sled::Config::new()
        .path(tmp.path().join("raw"))
        .open()
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..size.min(1 << 20) {
        let _ = db.insert(i.to_be_bytes(), &[0u8; 32][..]);
    }
    let mut raw = Vec::with_capacity(samples);
    for _ in 0..samples {
        let k = (rand() % size.min(1 << 20)).to_be_bytes();
        let s = Instant::now();
        let v = db.get(k).unwrap_or_else(|e| panic!("{e}"));
        raw.push(s.elapsed());
        std::hint::black_box(v);
    }
    raw.sort_unstable();
    println!("## Inclusion proof at {size} entries ({samples} random leaves, in process)");
    println!("| run | memory for upper levels | p50 | p99 |");
    println!("|---|---|---|---|");
    for (from, lat, total_len) in &rows {
        let mb = (size as f64 * 32.0 * 2f64.powi(1 - i32::from(*from))) / 1e6;
        println!(
            "| inclusion proof (avg {:.1} hashes), levels >= {from} in memory{} | {mb:.0} MB | {:.2} µs | {:.2} µs |",
            *total_len as f64 / samples as f64,
            if *from == 0 { " (default)" } else { "" },
            percentile(lat, 0.5).as_secs_f64() * 1e6,
            percentile(lat, 0.99).as_secs_f64() * 1e6
        );
    }
    println!(
        "| baseline: one raw sled get | - | {:.2} µs | {:.2} µs |",
        percentile(&raw, 0.5).as_secs_f64() * 1e6,
        percentile(&raw, 0.99).as_secs_f64() * 1e6
    );
    for (from, lat, _) in &rows {
        println!(
            "ratio proof p50 (levels >= {from} in memory) / sled get p50: {:.1}",
            percentile(lat, 0.5).as_secs_f64() / percentile(&raw, 0.5).as_secs_f64()
        );
    }
    println!();
    let log = AuditLog::open(
        LogConfig::new(&log_dir, ORIGIN),
        NoteSigner::from_go_private_key(&key_text).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // Export, then verify it; baseline = SHA-256 of the same entry bytes held in memory.
    let export = tmp.path().join("export");
    let e = Instant::now();
    log.export_tiles(&export).unwrap_or_else(|e| panic!("{e}"));
    let export_s = e.elapsed().as_secs_f64();
    log.close();
    let bytes: Vec<Vec<u8>> = audit_log::tiles::tiles_for(size)
        .flat_map(|(n, w)| {
            let data = std::fs::read(export.join(audit_log::tiles::tile_path(None, n, w)))
                .unwrap_or_default();
            let mut out = Vec::new();
            let mut pos = 0;
            while pos + 2 <= data.len() {
                let len = u16::from_be_bytes([data[pos], data[pos + 1]]) as usize;
                out.push(data[pos + 2..pos + 2 + len].to_vec());
                pos += 2 + len;
            }
            out
        })
        .collect();
    let total_bytes: usize = bytes.iter().map(Vec::len).sum();
    let s = Instant::now();
    for b in &bytes {
        std::hint::black_box(Sha256::digest(b));
    }
    let sha_s = s.elapsed().as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for t in [1, threads] {
        let s = Instant::now();
        let report = verify_export(&export, std::slice::from_ref(&vkey), None, t);
        let secs = s.elapsed().as_secs_f64();
        assert!(
            report.ok(),
            "{:?}",
            &report.problems[..report.problems.len().min(5)]
        );
        assert_eq!(report.entries_valid, size);
        rows.push((t, secs));
    }
    println!(
        "## Offline verify of a {size}-entry export ({:.0} MB of entries; export took {export_s:.1} s)",
        total_bytes as f64 / 1e6
    );
    println!("| run | seconds | entries/s |");
    println!("|---|---|---|");
    println!(
        "| baseline: SHA-256 of each entry, in memory, 1 thread | {sha_s:.3} | {:.0} |",
        size as f64 / sha_s
    );
    for (t, secs) in &rows {
        println!(
            "| audit verify (read tiles, hash, rebuild tree, check tiles + signature, parse JSON), {t} thread(s) | {secs:.3} | {:.0} |",
            size as f64 / secs
        );
    }
    for (t, secs) in &rows {
        println!(
            "ratio verify ({t} thread(s)) / SHA-256 baseline: {:.2}",
            sha_s / secs
        );
    }
    println!();
}

/// A markdown table of alternating runs: one row per variant (`name`, its runs) and round, in
/// round order.
fn print_rounds(variants: &[(&str, &[AppendRun])]) {
    println!("| run | round | entries | entries/s | p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    let rounds = variants
        .iter()
        .map(|(_, runs)| runs.len())
        .max()
        .unwrap_or(0);
    for i in 0..rounds {
        for (name, runs) in variants {
            let Some(r) = runs.get(i) else { continue };
            println!(
                "| {name} | {} | {} | {:.0} | {:.2} ms | {:.2} ms |",
                i + 1,
                r.entries,
                r.per_sec,
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3
            );
        }
    }
}

/// The median over rounds of `ours / theirs` in the same round: robust to a machine whose
/// speed drifts between rounds, which moves both alike.
fn round_ratio(ours: &[AppendRun], theirs: &[AppendRun]) -> f64 {
    let ratios: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .map(|(o, t)| o.per_sec / t.per_sec)
        .collect();
    median(&ratios)
}

/// The median appends/s of `runs`.
fn per_sec(runs: &[AppendRun]) -> f64 {
    median(&runs.iter().map(|r| r.per_sec).collect::<Vec<_>>())
}

fn main() {
    // `cargo bench` runs the full sizes; anything else (e.g. `cargo test --benches`) smoke-runs.
    let secs = knob("BENCH_SECONDS", 5, 1);
    let n = knob("BENCH_ENTRIES", 1_000_000, 10_000);
    let (rt, only) = start("audit-log benchmarks");
    if only.runs("append") {
        rt.block_on(bench_appends(secs));
    }
    if only.runs("proof") {
        bench_proofs_and_verify(n);
    }
    if only.named("telemetry") {
        rt.block_on(bench_telemetry(secs));
    }
}

/// Durable appends without and with telemetry, in alternating rounds of `secs`. The plain log
/// is opened before the recorder is installed, so its writer's metric handles are no-ops; the
/// other is opened after, so it records every batch, and its appenders write one JSON log line
/// each (to a sink, through tracing-subscriber's JSON formatter at `info`).
async fn bench_telemetry(secs: u64) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let open = |name: &str| {
        AuditLog::open(
            LogConfig::new(tmp.path().join(name), ORIGIN),
            NoteSigner::generate(ORIGIN).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let plain = open("plain");
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .init();
    let handle = onboard_server::telemetry::recorder().unwrap_or_else(|e| panic!("{e}"));
    let measured = open("measured");
    let rounds = env_u64("BENCH_ROUNDS", 5);
    let (mut plain_runs, mut measured_runs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        plain_runs.push(drive_log(&plain, secs).await);
        let log = measured.clone();
        measured_runs.push(
            drive(secs, move |i| {
                let log = log.clone();
                async move {
                    let started = Instant::now();
                    log.append_fields(&entry_fields(i))
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    tracing::info!(
                        service = "onboard.v1.Audit",
                        method = "ListEntries",
                        code = "OK",
                        duration_ms = started.elapsed().as_millis() as u64,
                        caller = "auditor",
                        onboarding_id = "",
                        "rpc"
                    );
                }
            })
            .await,
        );
        // A scrape between rounds, as Prometheus would (folds the histogram samples).
        let _ = handle.render();
    }
    plain.close();
    measured.close();
    let text = handle.render();
    let appended = text
        .lines()
        .find_map(|l| l.strip_prefix("onboard_audit_appends_total "))
        .unwrap_or("?");
    println!(
        "## Telemetry overhead on durable append, {APPENDERS} concurrent appenders, {rounds} alternating rounds of {secs} s"
    );
    print_rounds(&[
        ("audit log, no recorder, no log line", &plain_runs),
        (
            "audit log + Prometheus recorder + one JSON log line per append",
            &measured_runs,
        ),
    ]);
    let (mp, mm) = (per_sec(&plain_runs), per_sec(&measured_runs));
    println!(
        "median entries/s: plain {mp:.0}, with telemetry {mm:.0}; ratio {:.3} (overhead {:.1} %); the recorder counted {appended} appends",
        mm / mp,
        (1.0 - mm / mp) * 100.0
    );
    // The added work itself, timed alone (less sensitive to other load than throughput): the
    // writer's calls per batch (as `audit_log`'s `WriterMetrics::committed`), and one JSON log
    // line per append.
    let n = 1_000_000u32;
    let (appends, batch, duration, entries) = (
        metrics::counter!("onboard_audit_appends_total"),
        metrics::histogram!("onboard_audit_batch_size"),
        metrics::histogram!("onboard_audit_append_duration_seconds"),
        metrics::gauge!("onboard_audit_entries"),
    );
    let t = Instant::now();
    for i in 0..n {
        appends.increment(8);
        batch.record(8.0);
        duration.record(0.001);
        entries.set(f64::from(i));
        if i % 100_000 == 0 {
            handle.run_upkeep();
        }
    }
    let per_batch_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let lines = 200_000u32;
    let t = Instant::now();
    for i in 0..lines {
        tracing::info!(
            service = "onboard.v1.Audit",
            method = "ListEntries",
            code = "OK",
            duration_ms = u64::from(i % 7),
            caller = "auditor",
            onboarding_id = "",
            "rpc"
        );
    }
    let per_line_ns = t.elapsed().as_nanos() as f64 / f64::from(lines);
    // At the plain median throughput, with batches of the median size the recorder saw.
    println!(
        "added work timed alone: {per_batch_ns:.0} ns of metric calls per batch, {per_line_ns:.0} ns per JSON log line; at {mp:.0} entries/s that is {:.2} % of one core for the metrics (one batch per entry, the worst case) and {:.2} % for the log lines",
        per_batch_ns * mp / 1e7,
        per_line_ns * mp / 1e7
    );
    println!();
}
