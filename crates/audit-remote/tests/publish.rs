//! Publication to a local directory and to a real S3 server (moto on loopback): the target ends
//! up equal to an export of the log, publication resumes from what the target holds, and a
//! target that contradicts the log (another log, or a log rolled back behind it) is refused
//! without being overwritten.

use std::sync::{Arc, Mutex};

use audit_log::verify::{VerifyOptions, verify_export};
use audit_remote::fetch::{copy_to_dir, verify_source};
use audit_remote::{PublishEvent, Publisher, RemoteError, Source, Target};
use testkit::audit::open_log;
use testkit::copy_dir;
use testkit::keys::{ORIGIN, log_signer};
use testkit::tiles::{Moto, append_more};

fn open(dir: &std::path::Path) -> audit_log::AuditLog {
    open_log(dir).unwrap()
}

fn vkey() -> audit_log::NoteVerifier {
    log_signer().verifier()
}

/// The target's content verified through the same reader an auditor would use.
async fn verify_target(target: &Target) -> audit_log::verify::VerifyReport {
    let source = Arc::new(Source::Store(target.clone()));
    let options = VerifyOptions {
        threads: 2,
        incremental: false,
    };
    verify_source(source, vec![vkey()], None, options)
        .await
        .unwrap()
        .1
}

async fn publish_and_follow(target: Target) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("log"));
    append_more(&log, 300).await.unwrap();
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = events.clone();
    let publisher = Publisher::new(log.clone(), target.clone()).with_observer(Arc::new(
        move |e: &PublishEvent<'_>| seen.lock().unwrap().push(format!("{e:?}")),
    ));
    assert_eq!(publisher.publish_once().await.unwrap(), 300);
    let r = verify_target(&target).await;
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.size, 300);

    // Keep publishing while the log grows; stop once the last checkpoint is out.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let publisher = Publisher::new(log.clone(), target.clone());
    let task = tokio::spawn(publisher.run(async {
        stopped.await.ok();
    }));
    append_more(&log, 700).await.unwrap();
    let want = log.checkpoint().note.clone();
    let source = Arc::new(Source::Store(target.clone()));
    let limit = std::time::Duration::from_secs(60);
    testkit::wait::until_true("the last checkpoint published", limit, async || {
        Ok(source.checkpoint().await.ok().as_deref() == Some(want.as_str()))
    })
    .await
    .unwrap();
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let r = verify_target(&target).await;
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.size, 1000);

    // The target is the export, byte for byte.
    let export = dir.path().join("export");
    log.export_tiles(&export).unwrap();
    let copy = dir.path().join("copy");
    let s = copy_to_dir(&source, &copy, &[log_signer().verifier()])
        .await
        .unwrap();
    assert_eq!(s.size, 1000);
    for id in audit_log::tile_id::tiles_of_size(1000) {
        let p = id.path();
        assert_eq!(
            std::fs::read(export.join(&p)).unwrap(),
            std::fs::read(copy.join(&p)).unwrap(),
            "{p}"
        );
    }
    assert!(verify_export(&copy, &[vkey()], None, 2).ok());
    let first = events.lock().unwrap().clone();
    assert!(
        first[0].starts_with("Resumed { published: None }"),
        "{first:?}"
    );
    assert!(first.last().unwrap().contains("Published { size: 300 }"));
    log.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_to_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::parse(dir.path().join("bucket").to_str().unwrap(), true).unwrap();
    publish_and_follow(target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_to_s3() {
    let moto = Moto::start().unwrap();
    moto.create_bucket("audit").unwrap();
    let opts = moto.options();
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let target = Target::parse_with_options("s3://audit/logs/prod", true, &opts).unwrap();
    publish_and_follow(target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_that_contradicts_the_log_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let target = Target::parse(bucket.to_str().unwrap(), true).unwrap();
    // A copy of the data directory at 300 entries, then the log grows to 600 and is published.
    let log_dir = dir.path().join("log");
    let log = open(&log_dir);
    append_more(&log, 300).await.unwrap();
    log.close();
    let old_copy = dir.path().join("old");
    copy_dir(&log_dir, &old_copy).unwrap();
    let log = open(&log_dir);
    append_more(&log, 300).await.unwrap();
    Publisher::new(log.clone(), target.clone())
        .publish_once()
        .await
        .unwrap();
    log.close();
    let published = std::fs::read(bucket.join("checkpoint")).unwrap();

    // The rolled-back copy must not publish its older checkpoint.
    let old = open(&old_copy);
    let e = Publisher::new(old.clone(), target.clone())
        .publish_once()
        .await
        .unwrap_err();
    assert!(matches!(e, RemoteError::Conflict(_)), "{e}");
    assert!(e.to_string().contains("rolled back"), "{e}");
    // Nor, once it has grown past it, a different history.
    append_more(&old, 400).await.unwrap();
    let e = Publisher::new(old.clone(), target.clone())
        .run(std::future::pending())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("different root"), "{e}");
    old.close();
    // Another log's target.
    let other = audit_log::AuditLog::open(
        audit_log::LogConfig::new(dir.path().join("other"), ORIGIN),
        audit_log::NoteSigner::generate(ORIGIN).unwrap(),
    )
    .unwrap();
    let e = Publisher::new(other.clone(), target)
        .publish_once()
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("not a checkpoint of this log"),
        "{e}"
    );
    other.close();
    assert_eq!(std::fs::read(bucket.join("checkpoint")).unwrap(), published);
}

/// A checkpoint that witnesses vouch for gains cosignature lines at the same size as later
/// witnesses answer: the target gets the note with them, though no tile changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_that_gains_cosignatures_at_the_same_size_is_published_again() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::parse(dir.path().join("bucket").to_str().unwrap(), true).unwrap();
    let log = open(&dir.path().join("log"));
    append_more(&log, 10).await.unwrap();
    let own = log.checkpoint().note.clone();
    let vouched = |note: String| {
        Some(Arc::new(
            audit_log::SignedCheckpoint::open(&note, &[vkey()]).unwrap(),
        ))
    };
    let (tx, rx) = tokio::sync::watch::channel(vouched(own.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let publisher = Publisher::new(log.clone(), target.clone())
        .with_feed(audit_log::CheckpointFeed::Vouched(rx));
    let task = tokio::spawn(publisher.run(async {
        stopped.await.ok();
    }));
    let source = Source::Store(target.clone());
    let published = async |want: &str| {
        let limit = std::time::Duration::from_secs(30);
        testkit::wait::until_true("the note published", limit, async || {
            Ok(source.checkpoint().await.ok().as_deref() == Some(want))
        })
        .await
        .unwrap();
    };
    published(&own).await;
    // A line by a key the log does not know (a witness's), as a quorum feed appends it.
    let cosigned = format!("{own}\u{2014} w.example/1 {}\n", "A".repeat(100) + "AAAA");
    tx.send(vouched(cosigned.clone())).unwrap();
    published(&cosigned).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    log.close();
}
