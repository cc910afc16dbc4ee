//! kill -9 in the middle of a publication round, restart, and publication resumes; no
//! checkpoint the target ever shows references a missing tile. A local directory and a real S3
//! server (moto on loopback) both.
//!
//! The child process (this test binary re-run with `--ignored child_publisher`) appends to a
//! log while a [`Publisher`] publishes it, printing each event. When told to, it stops dead
//! right after its N-th upload, which always lies between a round's first tile and that round's
//! checkpoint (the checkpoint goes last), and the parent kills it there. SIGKILL keeps the page
//! cache: this tests process crashes, not power loss.

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use audit_log::verify::VerifyOptions;
use audit_log::{AuditLog, StartupCheck};
use audit_remote::fetch::verify_source;
use audit_remote::{PublishEvent, Publisher, RemoteError, Source, Target};
use testkit::audit::open_log;
use testkit::child::ChildTest;
use testkit::keys::log_signer;
use testkit::tiles::{Moto, append_more};

fn open(dir: &std::path::Path) -> audit_log::AuditLog {
    open_log(dir).unwrap()
}

fn vkey() -> audit_log::NoteVerifier {
    log_signer().verifier()
}

const LOG_DIR: &str = "PUBLISH_CRASH_LOG_DIR";
const TARGET: &str = "PUBLISH_CRASH_TARGET";
const APPEND: &str = "PUBLISH_CRASH_APPEND";
const PAUSE_AT: &str = "PUBLISH_CRASH_PAUSE_AT";

#[test]
#[ignore = "run as the child process of the publication crash tests"]
fn child_publisher() {
    let Ok(dir) = std::env::var(LOG_DIR) else {
        return;
    };
    let target = std::env::var(TARGET).unwrap();
    let n: u64 = std::env::var(APPEND).unwrap().parse().unwrap();
    let pause_at: Option<u64> = std::env::var(PAUSE_AT).ok().map(|v| v.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = open(dir.as_ref());
        let uploads = Arc::new(AtomicU64::new(0));
        let published = Arc::new(AtomicU64::new(u64::MAX));
        let (u, p) = (uploads.clone(), published.clone());
        let observer = Arc::new(move |e: &PublishEvent<'_>| {
            match e {
                PublishEvent::RoundStarted { from, to, .. } => println!("round {from} {to}"),
                PublishEvent::Uploaded { path } => {
                    println!("uploaded {path}");
                    if Some(u.fetch_add(1, Ordering::SeqCst) + 1) == pause_at {
                        println!("paused");
                        // Stuck mid-round (this blocks the round's task) until killed.
                        loop {
                            std::thread::sleep(Duration::from_secs(3600));
                        }
                    }
                }
                PublishEvent::Published { size } => {
                    println!("published {size}");
                    p.store(*size, Ordering::SeqCst);
                }
                other => println!("{other:?}"),
            }
        });
        let target = Target::parse(&target, true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let publisher = Publisher::new(log.clone(), target).with_observer(observer);
        let task = tokio::spawn(publisher.run(async {
            stopped.await.ok();
        }));
        let start = log.size();
        append_more(&log, n).await.unwrap();
        if pause_at.is_some() {
            // More rounds until the pause comes (then the parent kills this process).
            loop {
                append_more(&log, 8).await.unwrap();
            }
        }
        let want = log.size();
        assert_eq!(want, start + n);
        while published.load(Ordering::SeqCst) != want {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop.send(());
        task.await.unwrap().unwrap();
        println!("done {want}");
        log.close();
    });
}

/// The target's checkpoint, fully verified (every tile and bundle it needs is there).
fn check_target(rt: &tokio::runtime::Runtime, target: &str, env: &[(&str, String)]) -> Option<u64> {
    let opts: Vec<(&str, &str)> = env
        .iter()
        .filter_map(|(k, v)| Some((object_store_key(k)?, v.as_str())))
        .collect();
    let t = Target::parse_with_options(target, false, &opts).unwrap();
    let source = Arc::new(Source::Store(t));
    rt.block_on(async {
        let options = VerifyOptions {
            threads: 2,
            incremental: false,
        };
        match verify_source(source, vec![vkey()], None, options).await {
            Ok((_, r)) => {
                assert!(
                    r.ok(),
                    "published checkpoint {} does not verify: {:?}",
                    r.size,
                    r.problems
                );
                Some(r.size)
            }
            Err(RemoteError::NotFound { .. }) => None,
            Err(e) => panic!("{e}"),
        }
    })
}

fn object_store_key(env: &str) -> Option<&'static str> {
    Some(match env {
        "AWS_ENDPOINT" => "aws_endpoint",
        "AWS_ALLOW_HTTP" => "aws_allow_http",
        "AWS_ACCESS_KEY_ID" => "aws_access_key_id",
        "AWS_SECRET_ACCESS_KEY" => "aws_secret_access_key",
        "AWS_DEFAULT_REGION" => "aws_region",
        _ => return None,
    })
}

/// Runs the child until it prints `paused` (then kills it) or exits; returns its output.
fn run_child(
    log_dir: &std::path::Path,
    target: &str,
    env: &[(&str, String)],
    append: u64,
    pause_at: Option<u64>,
) -> Vec<String> {
    let mut vars: Vec<(&str, OsString)> = vec![
        (LOG_DIR, log_dir.as_os_str().to_owned()),
        (TARGET, target.into()),
        (APPEND, append.to_string().into()),
    ];
    vars.extend(env.iter().map(|(k, v)| (*k, v.into())));
    if let Some(p) = pause_at {
        vars.push((PAUSE_AT, p.to_string().into()));
    }
    let child = ChildTest::spawn("child_publisher", &vars, Stdio::inherit());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match child.next_line(left) {
            Ok(line) => {
                let paused = line == "paused";
                lines.push(line);
                if paused {
                    child.kill();
                    return lines;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let (status, rest) = child.wait();
                lines.extend(rest);
                assert!(status.success(), "child failed: {lines:?}");
                return lines;
            }
            Err(RecvTimeoutError::Timeout) => {
                child.kill();
                panic!("child timed out: {lines:?}");
            }
        }
    }
}

fn crash_and_resume(target: &str, env: &[(&str, String)]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut published = None;
    // A crash before anything was published, one clean run (a first round can be long: it
    // carries the partial tiles of every checkpoint in the last tiles), then crashes in rounds
    // that resume from a published checkpoint.
    for pause_at in [Some(2u64), None, Some(7), Some(19), Some(33)] {
        let Some(pause_at) = pause_at else {
            let (done, _) = finish_child(&log_dir, target, env);
            assert_eq!(check_target(&rt, target, env), Some(done));
            published = Some(done);
            continue;
        };
        let lines = run_child(&log_dir, target, env, 600, Some(pause_at));
        assert_eq!(
            lines.last().map(String::as_str),
            Some("paused"),
            "{lines:?}"
        );
        // The round in progress, and the tile uploaded just before the kill.
        let round = lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("round "))
            .unwrap_or_else(|| panic!("{lines:?}"));
        let to: u64 = round.split(' ').nth(1).unwrap().parse().unwrap();
        let last_tile = lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("uploaded "))
            .unwrap()
            .to_owned();
        let now = check_target(&rt, target, env);
        // Mid-upload: the round's tiles are partly there, its checkpoint is not.
        assert!(now.is_none_or(|s| s < to), "{now:?} vs round to {to}");
        let t = Source::Store(Target::parse_with_options(target, false, &options(env)).unwrap());
        rt.block_on(t.get(&last_tile)).unwrap();
        // Publication never goes backwards.
        assert!(now >= published, "{now:?} < {published:?}");
        published = now;
    }
    // Restart without a crash: publication resumes and catches up with the log.
    let (done, resumed) = finish_child(&log_dir, target, env);
    assert!(
        resumed.starts_with("Resumed { published: Some("),
        "{resumed}"
    );
    assert_eq!(check_target(&rt, target, env), Some(done));
    let log = AuditLog::open_read_only(&log_dir, StartupCheck::Full).unwrap();
    assert_eq!(log.size(), done);
    assert!(done >= 100);
}

/// Runs the child without a pause: it resumes from the target's checkpoint, appends 100
/// entries and publishes all; returns the size it published and what it resumed from.
fn finish_child(log_dir: &std::path::Path, target: &str, env: &[(&str, String)]) -> (u64, String) {
    let lines = run_child(log_dir, target, env, 100, None);
    let done: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("done "))
        .unwrap_or_else(|| panic!("{lines:?}"))
        .parse()
        .unwrap();
    let resumed = lines
        .iter()
        .find(|l| l.starts_with("Resumed"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    (done, resumed.clone())
}

fn options<'a>(env: &'a [(&str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter()
        .filter_map(|(k, v)| Some((object_store_key(k)?, v.as_str())))
        .collect()
}

#[test]
fn kill_9_mid_upload_to_a_directory_then_resume() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("bucket");
    crash_and_resume(target.to_str().unwrap(), &[]);
}

#[test]
fn kill_9_mid_upload_to_s3_then_resume() {
    let moto = Moto::start().unwrap();
    moto.create_bucket("crash").unwrap();
    crash_and_resume("s3://crash/audit", &moto.env());
}
