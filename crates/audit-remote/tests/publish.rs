//! Publication to a local directory and to a real S3 server (moto on loopback): the target ends
//! up equal to an export of the log, publication resumes from what the target holds, and a
//! target that contradicts the log (another log, or a log rolled back behind it) is refused
//! without being overwritten.

use std::sync::{Arc, Mutex};

use audit_log::verify::{VerifyOptions, verify_export};
use audit_remote::fetch::{copy_to_dir, verify_source};
use audit_remote::{PublishEvent, Publisher, RemoteError, Source, Target};
use testkit::audit::{open_log, send_fake_cosigned};
use testkit::copy_dir;
use testkit::keys::{ORIGIN, log_signer};
use testkit::tiles::{Moto, append_more, assert_same_tiles};

fn open(dir: &std::path::Path) -> audit_log::AuditLog {
    open_log(dir).unwrap()
}

fn vkey() -> audit_log::NoteVerifier {
    log_signer().verifier()
}

/// A publisher of `log` to `target` following a feed of vouched checkpoints, running until
/// [`FeedRun::stop`].
struct FeedRun {
    /// Ends the publisher's run.
    stop: tokio::sync::oneshot::Sender<()>,
    /// The run, awaited by `stop`.
    task: tokio::task::JoinHandle<Result<(), RemoteError>>,
    /// The target, read as an auditor would.
    source: Source,
}

impl FeedRun {
    fn start(
        log: &audit_log::AuditLog,
        target: &Target,
        feed: tokio::sync::watch::Receiver<Option<Arc<audit_log::SignedCheckpoint>>>,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let publisher = Publisher::new(log.clone(), target.clone())
            .with_feed(audit_log::CheckpointFeed::Vouched(feed));
        let task = tokio::spawn(publisher.run(async {
            stopped.await.ok();
        }));
        let source = Source::Store(target.clone());
        Self { stop, task, source }
    }

    /// Waits (30 s at most) until the target's checkpoint is `want`.
    async fn published(&self, want: &str) {
        let limit = std::time::Duration::from_secs(30);
        testkit::wait::until_true("the note published", limit, async || {
            Ok(self.source.checkpoint().await.ok().as_deref() == Some(want))
        })
        .await
        .unwrap();
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// A log of 10 entries in a fresh temporary directory, and a directory target (`bucket`) in
/// it; the directory is returned to be kept until the test ends.
async fn ten_entries_and_a_bucket() -> (tempfile::TempDir, audit_log::AuditLog, Target) {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::parse(dir.path().join("bucket").to_str().unwrap(), true).unwrap();
    let log = open(&dir.path().join("log"));
    append_more(&log, 10).await.unwrap();
    (dir, log, target)
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
    assert_same_tiles(&export, &copy, 1000);
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

    // As S3 serves them: entry bundles gzip-coded with `Content-Encoding: gzip` (tlog-tiles:
    // bundles SHOULD be compressed at the HTTP layer), hash tiles and the checkpoint as they
    // are. (moto refuses anonymous reads and checks no signature: any SigV4 header will do.)
    let base = format!("{}/audit/logs/prod/", moto.endpoint);
    let client = reqwest::Client::builder().no_gzip().build().unwrap();
    let get = async |rel: &str| {
        let r = client
            .get(format!("{base}{rel}"))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, \
                 SignedHeaders=host, Signature=00",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            reqwest::StatusCode::OK,
            "{rel}: {:?}",
            r.headers()
        );
        let encoding = r
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        let cache = r.headers()["cache-control"].to_str().unwrap().to_owned();
        (encoding, cache, r.bytes().await.unwrap().len())
    };
    let (encoding, cache, len) = get("tile/entries/000").await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert_eq!(cache, "public, max-age=31536000, immutable");
    assert!(len < 256 * 100, "{len} bytes");
    assert_eq!(get("tile/0/000").await, (None, cache, 8192));
    assert_eq!(get("checkpoint").await.0, None);
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
    let (_dir, log, target) = ten_entries_and_a_bucket().await;
    let own = log.checkpoint().note.clone();
    let vouched = audit_log::SignedCheckpoint::open(&own, &[vkey()]).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(Some(Arc::new(vouched)));
    let run = FeedRun::start(&log, &target, rx);
    run.published(&own).await;
    // A line by a key the log does not know (a witness's), as a quorum feed appends it.
    let cosigned = send_fake_cosigned(&tx, &own);
    run.published(&cosigned).await;
    run.stop().await;
    log.close();
}

/// tlog-tiles: the checkpoint MUST be served. With a feed of cosigned checkpoints that has none
/// yet, the log's own latest is published, and followed as the log grows; once the feed has
/// one, only the feed's are published, never a smaller one than the target holds (an own
/// checkpoint larger than the feed's stays until the feed reaches its size), and never an own
/// one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_checkpoint_is_published_until_the_feed_has_one() {
    let (_dir, log, target) = ten_entries_and_a_bucket().await;
    let (tx, rx) = tokio::sync::watch::channel(None);
    let run = FeedRun::start(&log, &target, rx);
    let at_10 = log.checkpoint().note.clone();
    run.published(&at_10).await;
    append_more(&log, 10).await.unwrap();
    let at_20 = log.checkpoint().note.clone();
    run.published(&at_20).await;

    // The feed's first checkpoint lags the one published: the target keeps 20.
    send_fake_cosigned(&tx, &at_10);
    append_more(&log, 10).await.unwrap();
    let at_30 = log.checkpoint().note.clone();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(run.source.checkpoint().await.unwrap(), at_20);
    // The feed reaches 20, then 30: the cosigned notes replace it.
    let cosigned_20 = send_fake_cosigned(&tx, &at_20);
    run.published(&cosigned_20).await;
    let cosigned_30 = send_fake_cosigned(&tx, &at_30);
    run.published(&cosigned_30).await;
    // The log grows on; the feed has not cosigned it: the target stays at the cosigned 30.
    append_more(&log, 10).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(run.source.checkpoint().await.unwrap(), cosigned_30);
    run.stop().await;
    log.close();
}
