//! `onboard backup` cost, in one run, against same-run baselines:
//!
//! - **Time to back up** a log of `BENCH_ENTRIES` ~400-byte entries (default 100,000) through
//!   `onboard.v1.Admin/Backup` over loopback (the archive written to a file, as the CLI does),
//!   against a plain recursive file copy of the same data directory (what an operator would do
//!   with the service stopped). Reported as a ratio. Also the check `onboard backup` runs on
//!   the received archive before naming it (`backup::check_archive`), as a ratio to the backup.
//! - **The append pause**: 16 appenders append in a loop for `BENCH_SECONDS` (default 4) while
//!   nothing else happens, then again while backups run back to back; the maximum and p99
//!   append latency of each run. The quiesce pauses appends only while the state store is
//!   exported, so the maximum should grow by about that export, not by the whole backup.
//!
//! Run: `cargo bench --bench backup` (env `BENCH_ENTRIES`, `BENCH_SECONDS`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use onboard_proto::v1 as pb;
use onboard_proto::v1::admin_client::AdminClient;
use testkit::bench::{entry_fields, env_u64, percentile};
use testkit::copy_dir;
use testkit::keys::write_key_file;
use testkit::server::{ADMIN, TestServer, with_token};

/// Appenders during the latency runs.
const APPENDERS: usize = 16;

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        n += if e.file_type()?.is_dir() {
            dir_bytes(&e.path())?
        } else {
            e.metadata()?.len()
        };
    }
    Ok(n)
}

/// One backup over gRPC into `out`; returns its size.
async fn backup(server: &TestServer, out: &Path) -> Result<u64> {
    let ch = server.channel().await?;
    let mut client = AdminClient::new(with_token(ch, Some(ADMIN)));
    let mut s = client
        .backup(pb::BackupRequest {
            reason: "bench".into(),
        })
        .await?
        .into_inner();
    let mut file = std::fs::File::create(out)?;
    let mut n = 0u64;
    while let Some(c) = s.message().await? {
        std::io::Write::write_all(&mut file, &c.data)?;
        n += c.data.len() as u64;
    }
    file.sync_all()?;
    Ok(n)
}

/// Append latencies of `APPENDERS` appenders for `secs`, while `during` runs.
async fn latencies<F: std::future::Future<Output = Result<u32>> + Send + 'static>(
    server: &TestServer,
    secs: u64,
    during: impl FnOnce(Arc<AtomicBool>) -> F,
) -> Result<(Vec<Duration>, u32)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for a in 0..APPENDERS {
        let (log, stop) = (server.app.audit().clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = a as u64 * 1_000_000;
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                log.append_fields(&entry_fields(i)).await?;
                lat.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    let side = tokio::spawn(during(stop.clone()));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::SeqCst);
    let backups = side.await??;
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok((all, backups))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let entries = env_u64("BENCH_ENTRIES", 100_000);
    let secs = env_u64("BENCH_SECONDS", 4);
    let keys = tempfile::tempdir()?;
    let (sealing, token) = (keys.path().join("s.key"), keys.path().join("t.key"));
    write_key_file(&sealing, &[1u8; 32])?;
    write_key_file(&token, &[2u8; 32])?;
    let server =
        TestServer::start_with(|b| Ok(b.sealing_key(Some(&sealing)).token_key(&token))).await?;
    let log = server.app.audit().clone();
    let fill = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..64u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = a;
            while i < entries {
                log.append_fields(&entry_fields(i)).await?;
                i += 64;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "log filled: {} entries in {:.1} s",
        log.size(),
        fill.elapsed().as_secs_f64()
    );
    let work = tempfile::tempdir()?;
    let data = server.app.config().storage.data_dir.clone();

    // Time to back up vs. a plain copy, alternating, three rounds each.
    let (mut b_times, mut c_times, mut k_times) = (Vec::new(), Vec::new(), Vec::new());
    let (mut archive_bytes, mut copy_bytes) = (0, 0);
    for round in 0..3 {
        let t = Instant::now();
        let archive = work.path().join(format!("b{round}.tar"));
        archive_bytes = backup(&server, &archive).await?;
        b_times.push(t.elapsed().as_secs_f64());
        // What `onboard backup` adds before naming the file: the archive checked as a restore
        // checks it.
        let t = Instant::now();
        let checked =
            tokio::task::spawn_blocking(move || onboard_server::backup::check_archive(&archive))
                .await??;
        k_times.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            checked.entries > 0 && checked.entries <= log.size(),
            "{checked:?}"
        );
        let t = Instant::now();
        copy_bytes = copy_dir(&data, &work.path().join(format!("copy{round}")))?;
        c_times.push(t.elapsed().as_secs_f64());
        std::fs::remove_dir_all(work.path().join(format!("copy{round}")))?;
        std::fs::remove_file(work.path().join(format!("b{round}.tar")))?;
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, c, k) = (med(&mut b_times), med(&mut c_times), med(&mut k_times));
    println!(
        "check of the archive (onboard backup, before the rename): {k:.3} s; ratio check / backup {:.2}",
        k / b
    );
    println!(
        "backup of {} entries: {:.3} s ({} MB archive); plain copy of the data directory: {:.3} s ({} MB, {} MB on disk); ratio {:.2}",
        log.size(),
        b,
        archive_bytes >> 20,
        c,
        copy_bytes >> 20,
        dir_bytes(&data)? >> 20,
        b / c
    );

    // The append pause.
    let (quiet, _) = latencies(&server, secs, |_| async { Ok(0) }).await?;
    let out = work.path().join("during.tar");
    let srv = &server;
    let (busy, n) = {
        let url = srv.url();
        latencies(srv, secs, move |stop| async move {
            let ch = testkit::server::connect(&url, None).await?;
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let mut client = AdminClient::new(with_token(ch.clone(), Some(ADMIN)));
                let mut s = client
                    .backup(pb::BackupRequest::default())
                    .await?
                    .into_inner();
                let mut file = std::fs::File::create(&out)?;
                while let Some(c) = s.message().await? {
                    std::io::Write::write_all(&mut file, &c.data)?;
                }
                n += 1;
            }
            Ok(n)
        })
        .await?
    };
    for (name, l) in [("no backup", &quiet), ("backups running", &busy)] {
        println!(
            "appends with {name}: {} appends, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len(),
            percentile(l, 0.50).as_secs_f64() * 1e3,
            percentile(l, 0.99).as_secs_f64() * 1e3,
            l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    println!("{n} backups ran during the second run");
    server.stop().await?;
    Ok(())
}
