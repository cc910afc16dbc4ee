//! Durable on power loss: the bytes of every acknowledged append reach the disk through an
//! `fdatasync` (or `fsync`) of sled's log file that starts after they were written and ends
//! before the appender hears back. sled 0.34 alone only `sync_file_range`s them, which neither
//! commits metadata nor flushes the device cache.
//!
//! Traced with `strace -f -y` on a child process (this test binary, running the ignored
//! `durable_child`): every `pwrite64` to `<log>/db` with its bytes, every sync, and each
//! appender's "ack" marker, written to a file of its own once its append returned. Needs strace
//! (`apt-get install -y strace`; `.ci/run` installs it) and ptrace permission.

use std::io::Write;
use std::path::PathBuf;

use std::sync::{Arc, Mutex};
use testkit::strace::{Call, is_sync, traced_child};

/// Where the parent tells the child to work.
const CHILD_DIR: &str = "AUDIT_DURABLE_CHILD_DIR";
/// Concurrent appenders in the child, and appends each.
const TASKS: u64 = 8;
const PER_TASK: u64 = 40;

/// A unique, fixed-width marker carried by entry `(task, i)` (no marker is a prefix of another).
fn nonce(task: u64, i: u64) -> String {
    format!("nonce:{task:02}:{i:03};")
}

#[test]
#[ignore = "child process of every_acknowledged_append_is_fdatasynced_before_its_ack"]
fn durable_child() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("run by the parent test"));
    let acks = Arc::new(Mutex::new(
        std::fs::File::create(dir.join("acks")).expect("acks file"),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let log = testkit::audit::open_log(&dir.join("log")).expect("open");
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (log, acks) = (log.clone(), acks.clone());
                tokio::spawn(async move {
                    for i in 0..PER_TASK {
                        let mut f = testkit::audit::sample_fields(t * 1000 + i);
                        f.insert("nonce".into(), nonce(t, i).into());
                        let a = log.append_fields(&f).await.expect("append");
                        // One write syscall per acknowledgement, after the append returned.
                        let line = format!("ack {} seq {}\n", nonce(t, i), a.seq);
                        acks.lock()
                            .expect("acks lock")
                            .write_all(line.as_bytes())
                            .expect("ack");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("appender");
        }
        log.close();
    });
    // The state-store helper on a directory laid out as sled's, with a blob.
    let fake = dir.join("fake");
    std::fs::create_dir_all(fake.join("blobs")).expect("fake dir");
    std::fs::write(fake.join("db"), b"log").expect("db");
    std::fs::write(fake.join("conf"), b"conf").expect("conf");
    std::fs::write(fake.join("blobs").join("4242"), b"blob").expect("blob");
    let mark = |m: &str| {
        acks.lock()
            .expect("acks lock")
            .write_all(m.as_bytes())
            .expect("mark");
    };
    mark("blob-check start\n");
    audit_log::durable::sync_data_files(&fake).expect("sync_data_files");
    mark("blob-check end\n");
}

#[test]
fn every_acknowledged_append_is_fdatasynced_before_its_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let calls = traced_child(&dir, "durable_child", CHILD_DIR);
    let db = dir.join("log").join("db").display().to_string();
    let acks = dir.join("acks").display().to_string();

    let db_writes: Vec<&Call> = calls
        .iter()
        .filter(|c| c.name == "pwrite64" && c.path == db)
        .collect();
    let db_syncs: Vec<&Call> = calls
        .iter()
        .filter(|c| is_sync(c) && c.path == db)
        .collect();
    let ranges = calls
        .iter()
        .filter(|c| c.name == "sync_file_range" && c.path == db)
        .count();
    assert!(
        !db_writes.is_empty() && ranges > 0,
        "no pwrite64/sync_file_range on {db}: did sled change how it writes? ({} calls traced)",
        calls.len()
    );
    let ack_calls: Vec<&Call> = calls
        .iter()
        .filter(|c| c.name == "write" && c.path == acks && c.args.contains("\"ack nonce:"))
        .collect();
    assert_eq!(
        ack_calls.len() as u64,
        TASKS * PER_TASK,
        "every append is acknowledged once"
    );
    for ack in &ack_calls {
        let n = ack
            .args
            .split_once("ack ")
            .and_then(|(_, r)| r.split_once(';'))
            .map(|(n, _)| format!("{n};"))
            .expect("nonce in ack");
        let written = db_writes
            .iter()
            .find(|w| w.args.contains(&n))
            .unwrap_or_else(|| {
                panic!(
                    "{n} acknowledged (trace line {}) but never written to {db}",
                    ack.start
                )
            });
        assert!(
            written.end < ack.start,
            "{n} acknowledged (trace line {}) before its write to {db} returned (line {})",
            ack.start,
            written.end
        );
        assert!(
            db_syncs
                .iter()
                .any(|s| s.start > written.end && s.end < ack.start),
            "{n} acknowledged (trace line {}) with no fdatasync/fsync of {db} between its write \
             (line {}) and the ack: only sled's sync_file_range, not durable on power loss",
            ack.start,
            written.end
        );
    }
    println!(
        "{} acks, {} pwrite64 + {ranges} sync_file_range + {} fdatasync/fsync on {db}",
        ack_calls.len(),
        db_writes.len(),
        db_syncs.len()
    );

    // sync_data_files on a sled-shaped directory: the blob and both directories are fsynced,
    // and the log file after the blob.
    let marker = |m: &str| {
        calls
            .iter()
            .find(|c| c.name == "write" && c.path == acks && c.args.contains(m))
            .map(|c| c.start)
            .unwrap_or_else(|| panic!("marker {m} missing"))
    };
    let (from, to) = (marker("blob-check start"), marker("blob-check end"));
    let fake = dir.join("fake");
    let synced = |p: PathBuf| {
        let p = p.display().to_string();
        calls
            .iter()
            .find(|c| is_sync(c) && c.path == p && c.start > from && c.end < to)
            .map(|c| c.start)
            .unwrap_or_else(|| panic!("sync_data_files did not fsync {p}"))
    };
    let blob = synced(fake.join("blobs").join("4242"));
    synced(fake.join("blobs"));
    synced(fake.clone());
    synced(fake.join("conf"));
    let db_sync = synced(fake.join("db"));
    assert!(
        blob < db_sync,
        "the blob must be durable before the log that points to it"
    );
}

/// Where `tests/powerloss/run.sh` puts the log (on its lossy FUSE mount) and the acks (on a real
/// disk).
const POWER_CUT_LOG: &str = "AUDIT_POWER_CUT_LOG";
const POWER_CUT_ACKS: &str = "AUDIT_POWER_CUT_ACKS";

#[test]
#[ignore = "run by tests/powerloss/run.sh: appends until killed (the power cut)"]
fn power_cut_appender() {
    let log_dir = PathBuf::from(std::env::var(POWER_CUT_LOG).expect("log dir"));
    let acks = PathBuf::from(std::env::var(POWER_CUT_ACKS).expect("acks file"));
    let acks = Arc::new(Mutex::new(std::fs::File::create(acks).expect("acks")));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let log = testkit::audit::open_log(&log_dir).expect("open");
        let tasks: Vec<_> = (0..16u64)
            .map(|t| {
                let (log, acks) = (log.clone(), acks.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let Ok(a) = log
                            .append_fields(&testkit::audit::sample_fields(t * 1_000_000 + i))
                            .await
                        else {
                            return;
                        };
                        let at = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos());
                        let line = format!("{} {at}\n", a.seq);
                        let _ = acks.lock().expect("acks").write_all(line.as_bytes());
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
#[ignore = "run by tests/powerloss/run.sh after the power cut"]
fn power_cut_check() {
    let log_dir = PathBuf::from(std::env::var(POWER_CUT_LOG).expect("log dir"));
    let acks =
        std::fs::read_to_string(std::env::var(POWER_CUT_ACKS).expect("acks file")).expect("acks");
    let acked: Vec<u64> = acks
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    let max = acked.iter().max().copied();
    // Opened as the server would (not read-only, whose size is the last *stored* note): the
    // writer stores each batch's note with the next batch, and start-up signs the durable size.
    let log = testkit::audit::open_log(&log_dir)
        .unwrap_or_else(|e| panic!("the log does not open after the power cut: {e}"));
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|s| *s >= log.size() || log.entry(*s).is_err())
        .collect();
    println!(
        "acknowledged {} (highest {max:?}); recovered size {}; acknowledged but lost {}",
        acked.len(),
        log.size(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged entries lost: {lost:?}");
}
