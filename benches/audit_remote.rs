//! Benchmarks of the audit log served, published and verified from afar, each next to a
//! baseline measured in the same run:
//!
//! 1. `serve`: requests/s for random full level-0 hash tiles from the live tiles API
//!    (`audit_http`) against the same files from a static file server (tower-http's `ServeDir`
//!    on the same axum stack) over loopback; load from `wrk` when installed (Debian `wrk`),
//!    else from an in-process tokio client.
//! 2. `lag`: publication lag, checkpoint signed → visible in the target, p50/p99, while 1,000
//!    appends/s are written; to a local directory, when moto is installed to S3 (moto), and to
//!    any other S3-compatible server named by `BENCH_S3_ENDPOINT` (bucket `lag`; credentials
//!    from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`; `BENCH_S3_UPLOADS`, default 16).
//! 3. `verify`: verification of a 1,000,000-entry log over loopback HTTP (the live API, the
//!    static server, and a server holding every file in memory: what any HTTP server costs at
//!    best) against verification of the same export on disk, with the process's CPU seconds
//!    for each (a figure the machine's other load disturbs less than wall time). Before the
//!    rounds it times writing every full bundle's file from sled (what a server started on a
//!    data directory without them does once).
//!
//! Run: `cargo bench --bench audit_remote` (env `BENCH_ONLY=serve|lag|verify`,
//! `BENCH_SECONDS`, `BENCH_ROUNDS`, `BENCH_ENTRIES`, `BENCH_SERVE_ENTRIES`, and
//! `BENCH_SLED_CACHE_MB`, the log's sled page cache, default 64 as `LogConfig`'s).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_http::{Access, HttpConfig};
use audit_log::verify::{VerifyOptions, verify_export};
use audit_log::{AuditLog, LogConfig, NoteSigner, NoteVerifier, TileId};
use audit_remote::fetch::verify_source;
use audit_remote::{ClientSettings, PublishEvent, Publisher, Source, Target};
use axum::serve::ListenerExt;
use testkit::bench::{entry_fields, env_u64, fill, knob, median, percentile, start};
use testkit::tiles::{MOTO_INSTALL, Moto};

const ORIGIN: &str = "bench.onboard.invalid/audit";

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A log of `n` entries written by 64 appenders.
async fn build_log(dir: &Path, n: u64) -> (AuditLog, NoteVerifier) {
    let signer = NoteSigner::generate(ORIGIN).unwrap_or_else(|e| panic!("{e}"));
    let vkey = signer.verifier();
    let mut cfg = LogConfig::new(dir, ORIGIN);
    cfg.max_batch = 8192;
    cfg.cache_bytes = env_u64("BENCH_SLED_CACHE_MB", 64) << 20;
    let log = AuditLog::open(cfg, signer).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    fill(&log, n).await;
    println!(
        "(built a {}-entry log in {:.1} s)",
        log.size(),
        start.elapsed().as_secs_f64()
    );
    (log, vkey)
}

/// Serves `app` on a loopback port (TCP_NODELAY, like the tiles API) until the process ends.
async fn serve_router(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// The live tiles API over `log`.
async fn serve_api(log: AuditLog) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let config = HttpConfig {
        access: Access::Open,
        tls: None,
        feed: None,
    };
    tokio::spawn(async move {
        let _ = audit_http::serve(listener, log, &config, std::future::pending()).await;
    });
    format!("http://{addr}")
}

/// A plain static file server of `dir`.
async fn serve_static(dir: &Path) -> String {
    serve_router(axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir)))
        .await
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime, in ticks of 1/100 s) are the 12th and 13th
    // after the name.
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Every file of `dir` held in memory and served by path: what any server costs at best.
async fn serve_memory(dir: &Path) -> String {
    fn walk(root: &Path, d: &Path, out: &mut std::collections::HashMap<String, axum::body::Bytes>) {
        for e in std::fs::read_dir(d).unwrap_or_else(|e| panic!("{e}")) {
            let p = e.unwrap_or_else(|e| panic!("{e}")).path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap_or_else(|e| panic!("{e}"));
                let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{e}"));
                out.insert(format!("/{}", rel.display()), data.into());
            }
        }
    }
    let mut files = std::collections::HashMap::new();
    walk(dir, dir, &mut files);
    let files = Arc::new(files);
    serve_router(axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let files = files.clone();
        async move {
            match files.get(uri.path()) {
                Some(b) => Ok(b.clone()),
                None => Err(axum::http::StatusCode::NOT_FOUND),
            }
        }
    }))
    .await
}

/// Requests/s for random `paths` under `base` for `secs`: wrk when installed, else tokio.
async fn load(base: &str, paths: &[String], secs: u64, script: &Path) -> f64 {
    if which_wrk() {
        let out = tokio::process::Command::new("wrk")
            .args(["-t1", "-c32", &format!("-d{secs}s"), "-s"])
            .arg(script)
            .arg(base)
            .output()
            .await
            .unwrap_or_else(|e| panic!("wrk: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("Non-2xx"),
            "wrk saw errors from {base}:\n{text}"
        );
        return text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    }
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..32u64)
        .map(|c| {
            let (client, base, paths) = (client.clone(), base.to_owned(), paths.to_vec());
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut i = c * 7919;
                while Instant::now() < deadline {
                    i = i
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let p = &paths[(i >> 33) as usize % paths.len()];
                    let r = client
                        .get(format!("{base}/{p}"))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert!(r.status().is_success());
                    let _ = r.bytes().await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn which_wrk() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

async fn bench_serve(entries: u64, secs: u64, rounds: u64) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (log, _) = build_log(&tmp.path().join("log"), entries).await;
    let export = tmp.path().join("export");
    log.export_tiles(&export).unwrap_or_else(|e| panic!("{e}"));
    let full = log.size() / 256;
    let paths: Vec<String> = (0..full).map(|n| TileId::hash(0, n, 256).path()).collect();
    let script = tmp.path().join("tiles.lua");
    let list: Vec<String> = paths.iter().map(|p| format!("\"/{p}\"")).collect();
    std::fs::write(
        &script,
        format!(
            "local paths = {{{}}}\nrequest = function()\n  return wrk.format(\"GET\", paths[math.random(#paths)])\nend\n",
            list.join(",")
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let api = serve_api(log.clone()).await;
    let stat = serve_static(&export).await;
    // Both serve the same bytes.
    let client = reqwest::Client::new();
    for p in paths.iter().take(3) {
        let a = client
            .get(format!("{api}/{p}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let b = client
            .get(format!("{stat}/{p}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            a.bytes().await.unwrap_or_default(),
            b.bytes().await.unwrap_or_default()
        );
    }
    let generator = if which_wrk() {
        "wrk -t1 -c32"
    } else {
        "tokio client, 32 connections"
    };
    println!(
        "## Tile serving: random full level-0 tiles (8 KiB) of {full}, {secs} s per run, load: {generator}"
    );
    println!("| round | static files (tower-http ServeDir) req/s | live tiles API req/s | ratio |");
    println!("|---|---|---|---|");
    let (mut s_all, mut a_all) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let s = load(&stat, &paths, secs, &script).await;
        let a = load(&api, &paths, secs, &script).await;
        println!("| {r} | {s:.0} | {a:.0} | {:.2} |", a / s);
        s_all.push(s);
        a_all.push(a);
    }
    let (ms_, ma) = (median(&s_all), median(&a_all));
    println!(
        "median req/s: static {ms_:.0}, live API {ma:.0}; ratio of medians {:.2}\n",
        ma / ms_
    );
    log.close();
}

/// Publishes while 1,000 appends/s are written; lag from each checkpoint being signed to the
/// first published checkpoint at least as large.
async fn lag_run(target: Target, label: &str, secs: u64, concurrency: usize) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let signer = NoteSigner::generate(ORIGIN).unwrap_or_else(|e| panic!("{e}"));
    let log = AuditLog::open(LogConfig::new(tmp.path().join("log"), ORIGIN), signer)
        .unwrap_or_else(|e| panic!("{e}"));
    let signed: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    let published: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let mut rx = log.subscribe();
    let s2 = signed.clone();
    let watcher = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let size = rx.borrow_and_update().checkpoint.size;
            s2.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(size, Instant::now());
        }
    });
    let p2 = published.clone();
    let observer = Arc::new(move |e: &PublishEvent<'_>| match e {
        PublishEvent::Published { size } => p2
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((*size, Instant::now())),
        PublishEvent::Failed { error, .. } => eprintln!("publication failed: {error}"),
        _ => {}
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let publisher = tokio::spawn(
        Publisher::new(log.clone(), target)
            .with_observer(observer)
            .with_concurrency(concurrency)
            .run(async {
                stopped.await.ok();
            }),
    );
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut i = 0u64;
    let mut pending = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let log = log.clone();
        pending.push(tokio::spawn(async move {
            log.append_fields(&entry_fields(i))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }));
        i += 1;
    }
    for p in pending {
        let _ = p.await;
    }
    let rate = i as f64 / start.elapsed().as_secs_f64();
    let want = log.size();
    let deadline = Instant::now() + Duration::from_secs(60);
    while published
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .last()
        .is_none_or(|(s, _)| *s < want)
    {
        if Instant::now() > deadline {
            println!(
                "| {label} | {rate:.0} | {want} | - | - | did not catch up within 60 s of the last append | - |"
            );
            let _ = stop.send(());
            watcher.abort();
            log.close();
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(());
    let _ = publisher.await;
    watcher.abort();
    let signed = signed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let published = published.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut lags: Vec<Duration> = signed
        .iter()
        .filter_map(|(size, t)| {
            let (_, seen) = published.iter().find(|(s, _)| s >= size)?;
            Some(seen.saturating_duration_since(*t))
        })
        .collect();
    lags.sort_unstable();
    println!(
        "| {label} | {rate:.0} | {} | {} | {} | {} | {} |",
        want,
        signed.len(),
        published.len(),
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
    );
    log.close();
}

async fn bench_lag(secs: u64) {
    println!("## Publication lag at 1,000 appends/s ({secs} s per target)");
    println!(
        "| target | appends/s | entries | checkpoints signed | checkpoints published | lag p50 | lag p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = Target::parse(tmp.path().join("bucket").to_str().unwrap_or_default(), true)
        .unwrap_or_else(|e| panic!("{e}"));
    lag_run(dir, "local directory (16 uploads at once)", secs, 16).await;
    let moto_ok = std::process::Command::new("python3")
        .args(["-c", "import moto.server"])
        .output()
        .is_ok_and(|o| o.status.success());
    if moto_ok {
        let m = Moto::start().unwrap_or_else(|e| panic!("{e}"));
        m.create_bucket("lag").unwrap_or_else(|e| panic!("{e}"));
        let opts = m.options();
        let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let s3 = Target::parse_with_options("s3://lag/audit", true, &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        // moto's threaded server hung under 16 concurrent PUTs in this bench (2026-11-30);
        // 4 at once is what it sustains.
        lag_run(
            s3,
            "S3 (moto server on loopback, 4 uploads at once)",
            secs,
            4,
        )
        .await;
    } else {
        println!("(S3 row skipped: moto is not installed; {})", MOTO_INSTALL);
    }
    // Any other S3-compatible server the caller runs, e.g. `npx s3rver -d DIR --configure-bucket
    // lag`: BENCH_S3_ENDPOINT=http://127.0.0.1:4568, with the bucket `lag` and the server's
    // credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    if let Ok(endpoint) = std::env::var("BENCH_S3_ENDPOINT") {
        let var =
            |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("BENCH_S3_ENDPOINT needs {k}"));
        let opts = [
            ("aws_endpoint", endpoint.clone()),
            ("aws_allow_http", "true".to_owned()),
            ("aws_access_key_id", var("AWS_ACCESS_KEY_ID")),
            ("aws_secret_access_key", var("AWS_SECRET_ACCESS_KEY")),
            ("aws_region", "us-east-1".to_owned()),
        ];
        let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let s3 = Target::parse_with_options("s3://lag/audit", true, &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        let uploads = env_u64("BENCH_S3_UPLOADS", 16) as usize;
        lag_run(
            s3,
            &format!("S3 ({endpoint}, {uploads} uploads at once)"),
            secs,
            uploads,
        )
        .await;
    }
    println!();
}

async fn bench_verify(n: u64, rounds: u64) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (log, vkey) = build_log(&tmp.path().join("log"), n).await;
    let size = log.size();
    let export = tmp.path().join("export");
    log.export_tiles(&export).unwrap_or_else(|e| panic!("{e}"));
    // The export read every full bundle, so wrote its file: time writing them all from sled, as
    // a server started on a data directory without them does once, in the background.
    std::fs::remove_dir_all(tmp.path().join("log/bundles")).unwrap_or_else(|e| panic!("{e}"));
    let l = log.clone();
    let materialize = tokio::task::spawn_blocking(move || {
        let s = Instant::now();
        while l
            .materialize_bundles(u64::MAX)
            .unwrap_or_else(|e| panic!("{e}"))
        {}
        s.elapsed().as_secs_f64()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "(wrote the files of all {} full bundles from sled in {materialize:.3} s on one thread)",
        size / 256
    );
    // What the live API's share is: every bundle and level-0 tile assembled once, one thread.
    let l = log.clone();
    let assembly = tokio::task::spawn_blocking(move || {
        let s = Instant::now();
        let mut bytes = 0usize;
        for id in audit_log::tile_id::tiles_of_size(l.size()) {
            bytes += l.tile(&id).unwrap_or_else(|e| panic!("{e}")).len();
        }
        (s.elapsed().as_secs_f64(), bytes)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let api = serve_api(log.clone()).await;
    let stat = serve_static(&export).await;
    let mem = serve_memory(&export).await;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "(the live API assembles all {:.0} MB of tiles and bundles from the log in {:.3} s on one thread)",
        assembly.1 as f64 / 1e6,
        assembly.0
    );
    println!(
        "## Verify a {size}-entry log: on disk vs. over loopback HTTP ({threads} cores, sled cache {} MB)",
        env_u64("BENCH_SLED_CACHE_MB", 64)
    );
    println!(
        "| round | disk s | live API s | static server s | in-memory server s | live API / disk | static / disk | in-memory / disk | CPU s: disk / live / static / in-memory |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let (mut d_all, mut a_all, mut s_all, mut m_all) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 1..=rounds {
        let e = export.clone();
        let k = vkey.clone();
        let s = Instant::now();
        let c = cpu_seconds();
        let report = tokio::task::spawn_blocking(move || verify_export(&e, &[k], None, threads))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let disk = s.elapsed().as_secs_f64();
        let mut cpu = vec![cpu_seconds() - c];
        assert!(report.ok() && report.entries_valid == size);
        let mut over = Vec::new();
        for base in [&api, &stat, &mem] {
            let source = Arc::new(
                Source::parse(base, ClientSettings::default()).unwrap_or_else(|e| panic!("{e}")),
            );
            let options = VerifyOptions {
                threads,
                incremental: false,
            };
            let s = Instant::now();
            let c = cpu_seconds();
            let (_, report) = verify_source(source, vec![vkey.clone()], None, options)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            over.push(s.elapsed().as_secs_f64());
            cpu.push(cpu_seconds() - c);
            assert!(
                report.ok(),
                "{:?}",
                &report.problems[..report.problems.len().min(3)]
            );
            assert_eq!(report.entries_valid, size);
        }
        println!(
            "| {r} | {disk:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} / {:.2} |",
            over[0],
            over[1],
            over[2],
            disk / over[0],
            disk / over[1],
            disk / over[2],
            cpu[0],
            cpu[1],
            cpu[2],
            cpu[3]
        );
        m_all.push(over[2]);
        d_all.push(disk);
        a_all.push(over[0]);
        s_all.push(over[1]);
    }
    let (d, a, s, m) = (
        median(&d_all),
        median(&a_all),
        median(&s_all),
        median(&m_all),
    );
    println!(
        "median seconds: disk {d:.3} ({:.0} entries/s), live API {a:.3} ({:.0} entries/s), static {s:.3}, in-memory {m:.3}; speed ratio live API / disk {:.2}, static / disk {:.2}, in-memory / disk {:.2}\n",
        size as f64 / d,
        size as f64 / a,
        d / a,
        d / s,
        d / m
    );
    log.close();
}

fn main() {
    // `cargo bench` runs the full sizes; anything else (e.g. `cargo test --benches`) smoke-runs.
    let secs = knob("BENCH_SECONDS", 5, 1);
    let rounds = knob("BENCH_ROUNDS", 3, 1);
    let n = knob("BENCH_ENTRIES", 1_000_000, 10_000);
    let serve_n = knob("BENCH_SERVE_ENTRIES", 262_144, 10_000);
    let (rt, only) = start("audit log served, published and verified remotely");
    if only.runs("serve") {
        rt.block_on(bench_serve(serve_n, secs, rounds));
    }
    if only.runs("lag") {
        rt.block_on(bench_lag(secs * 2));
    }
    if only.runs("verify") {
        rt.block_on(bench_verify(n, rounds));
    }
}
