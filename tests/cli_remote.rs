//! `onboard audit verify|export|proof` against a running server's tiles API and publication
//! targets (a directory, a real S3 server: moto on loopback), run as a user would: verify by
//! URL gives the same summary as verify of a local export; incremental verification from a
//! saved checkpoint; `--follow` alerts when the log rewinds or forks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_log::merkle::verify_inclusion;
use audit_log::{AuditLog, LogConfig, NoteSigner, SignedCheckpoint, TlogProof, leaf_hash};
use audit_remote::{Publisher, Target};
use testkit::tiles::{Moto, TilesApi, append_many};
use tokio::io::{AsyncBufReadExt, BufReader};

const ORIGIN: &str = "cli.onboard.test/audit";

/// Opens a log with a copy of `key` (the log takes ownership of its signer).
fn open(dir: &Path, key: &NoteSigner) -> AuditLog {
    let signer = NoteSigner::from_go_private_key(&key.to_go_private_key()).unwrap();
    AuditLog::open(LogConfig::new(dir, ORIGIN), signer).unwrap()
}

async fn append(log: &AuditLog, from: u64, to: u64) {
    append_many(log, from, to).await.unwrap();
}

async fn onboard(args: &[&str], env: &[(&str, String)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The summary after the first line (which names where the log was read).
fn summary(o: &Output) -> Vec<String> {
    assert!(o.status.success(), "{}", text(o));
    let out = String::from_utf8_lossy(&o.stdout);
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("Validating "), "{out}");
    lines.map(str::to_owned).collect()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_by_url_equals_verify_of_a_local_export() {
    let moto = Moto::start().unwrap();
    moto.create_bucket("published").unwrap();
    let env = moto.env();
    let dir = tempfile::tempdir().unwrap();
    let key = NoteSigner::generate(ORIGIN).unwrap();
    let vkey = key.verifier().to_string();
    // Laid out like a server's data directory: the log in `DATA_DIR/audit`.
    let data_dir = dir.path().join("data");
    let log = open(&data_dir.join("audit"), &key);
    append(&log, 0, 600).await;
    let saved = dir.path().join("saved-checkpoint");
    std::fs::write(&saved, &log.checkpoint().note).unwrap();
    append(&log, 600, 1000).await;

    let export = dir.path().join("export");
    log.export_tiles(&export).unwrap();
    let bucket_dir = dir.path().join("bucket");
    let dir_target = Target::parse(p(&bucket_dir), true).unwrap();
    Publisher::new(log.clone(), dir_target)
        .publish_once()
        .await
        .unwrap();
    let opts = moto.options();
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s3 = Target::parse_with_options("s3://published/audit/prod", true, &opts).unwrap();
    Publisher::new(log.clone(), s3)
        .publish_once()
        .await
        .unwrap();
    let tiles_api = TilesApi::open(log.clone()).await.unwrap();
    let api = tiles_api.url.clone();

    let local = summary(&onboard(&["audit", "verify", p(&export), "--vkey", &vkey], &[]).await);
    assert!(
        local.contains(&"1000/1000 entries valid".to_owned()),
        "{local:?}"
    );
    let file_url = format!("file://{}", p(&bucket_dir));
    for source in [
        api.as_str(),
        "s3://published/audit/prod",
        file_url.as_str(),
        p(&bucket_dir),
    ] {
        let o = onboard(&["audit", "verify", source, "--vkey", &vkey], &env).await;
        assert_eq!(summary(&o), local, "{source}");
    }
    // A password in the URL reaches the server, never the output.
    let with_password = api.replacen("://", "://auditor:S3CRET-PW@", 1);
    let o = onboard(&["audit", "verify", &with_password, "--vkey", &vkey], &[]).await;
    assert_eq!(summary(&o), local, "{}", text(&o));
    assert!(!text(&o).contains("S3CRET-PW"), "{}", text(&o));
    assert!(!text(&o).contains("auditor@"), "{}", text(&o));

    // A copy made from the running server verifies the same.
    let copy = dir.path().join("copy");
    // Not without the log's key: no tile is fetched for a checkpoint nobody verified.
    let export = |key: Option<String>| {
        let mut args = vec!["audit", "export", "--from", &api, "--out", p(&copy)];
        let key = key.map(|k| ["--vkey".to_owned(), k]);
        args.extend(key.iter().flatten().map(String::as_str));
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            onboard(&args, &[]).await
        }
    };
    let o = export(None).await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--vkey"), "{}", text(&o));
    let stranger = NoteSigner::generate(ORIGIN).unwrap().verifier().to_string();
    let o = export(Some(stranger)).await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("its signature does not verify with the keys given"),
        "{}",
        text(&o)
    );
    assert!(
        !copy.join("tile").exists(),
        "tiles fetched for an unverified checkpoint"
    );
    let o = export(Some(vkey.clone())).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("exported 1000 entries"), "{}", text(&o));
    let o = onboard(&["audit", "verify", p(&copy), "--vkey", &vkey], &[]).await;
    assert_eq!(summary(&o), local);

    // A proof from the bucket equals the one the log makes, and verifies.
    let o = onboard(
        &[
            "audit",
            "proof",
            "--from",
            "s3://published/audit/prod",
            "--vkey",
            &vkey,
            "--seq",
            "777",
        ],
        &env,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let proof_text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(proof_text, log.tlog_proof(777).unwrap().to_text());
    let proof = TlogProof::parse(&proof_text).unwrap();
    let cp = SignedCheckpoint::open(&proof.checkpoint_note, &[key.verifier()]).unwrap();
    let leaf = leaf_hash(&log.entry(777).unwrap());
    verify_inclusion(
        777,
        cp.checkpoint.size,
        &leaf,
        &proof.proof,
        &cp.checkpoint.root,
    )
    .unwrap();

    // Incremental from the checkpoint saved at 600 entries: only bundles 2 and 3 are checked.
    let o = onboard(
        &[
            "audit",
            "verify",
            &api,
            "--vkey",
            &vkey,
            "--since-checkpoint",
            p(&saved),
        ],
        &[],
    )
    .await;
    let inc = summary(&o);
    for want in [
        "Results requested for entries 512 to 999 (checkpoint size 1000)",
        "488/488 entries valid",
        "2/2 entry bundles valid",
        "Consistent with the saved checkpoint of 600 entries",
    ] {
        assert!(inc.contains(&want.to_owned()), "{want}: {inc:?}");
    }

    // The data directory of a stopped server, named either way, still works offline.
    tiles_api.stop().await.unwrap();
    log.close();
    for d in [data_dir.clone(), data_dir.join("audit")] {
        let o = onboard(
            &["audit", "proof", "--data-dir", p(&d), "--seq", "777"],
            &[],
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            proof_text,
            "{}",
            text(&o)
        );
    }
    let o = onboard(
        &["audit", "proof", "--data-dir", p(dir.path()), "--seq", "1"],
        &[],
    )
    .await;
    assert!(
        text(&o).contains("is not an audit log directory"),
        "{}",
        text(&o)
    );
    let o = onboard(&["audit", "export", "--out", p(&copy)], &[]).await;
    assert!(!o.status.success());
    assert!(text(&o).contains("--data-dir"), "{}", text(&o));
}

/// Reads the follower's output line by line until one contains `want`.
async fn wait_for(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    want: &str,
    seen: &mut Vec<String>,
) {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let hit = line.contains(want);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(found == Ok(true), "no {want:?} in {seen:?}");
}

fn spawn_follow(source: &str, vkey: &str) -> tokio::process::Child {
    spawn_follow_with(source, vkey, &[])
}

/// [`spawn_follow`] with more arguments.
fn spawn_follow_with(source: &str, vkey: &str, more: &[&str]) -> tokio::process::Child {
    let args = [
        "audit",
        "verify",
        source,
        "--vkey",
        vkey,
        "--follow",
        "--interval",
        "0.05",
    ];
    tokio::process::Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(args.iter().chain(more))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_verifies_each_new_checkpoint_and_alerts_on_rewind_and_fork() {
    let dir = tempfile::tempdir().unwrap();
    let key = NoteSigner::generate(ORIGIN).unwrap();
    let vkey = key.verifier().to_string();
    let bucket = dir.path().join("bucket");
    let target = Target::parse(p(&bucket), true).unwrap();
    let log = open(&dir.path().join("log"), &key);
    append(&log, 0, 300).await;
    Publisher::new(log.clone(), target.clone())
        .publish_once()
        .await
        .unwrap();
    let at_300 = log.checkpoint().note.clone();

    // Rewind: the bucket's checkpoint goes back to an older (validly signed) one.
    let mut child = spawn_follow(p(&bucket), &vkey);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    wait_for(&mut lines, "300/300 entries valid", &mut seen).await;
    append(&log, 300, 600).await;
    Publisher::new(log.clone(), target.clone())
        .publish_once()
        .await
        .unwrap();
    wait_for(
        &mut lines,
        "Checkpoint of 600 entries verified: entries 256 to 599 valid, consistent with the checkpoint of 300 entries",
        &mut seen,
    )
    .await;
    std::fs::write(bucket.join("checkpoint"), &at_300).unwrap();
    wait_for(&mut lines, "ALERT: the log rewound", &mut seen).await;
    assert!(!child.wait().await.unwrap().success());
    log.close();

    // Fork: the bucket is replaced by another history signed with the same key.
    let mut child = spawn_follow(&format!("file://{}", p(&bucket)), &vkey);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for(&mut lines, "entries valid", &mut seen).await;
    let other = open(&dir.path().join("other"), &key);
    append(&other, 10_000, 10_900).await;
    let forked = dir.path().join("forked");
    other.export_tiles(&forked).unwrap();
    other.close();
    std::fs::rename(&bucket, dir.path().join("old-bucket")).unwrap();
    std::fs::rename(&forked, &bucket).unwrap();
    wait_for(&mut lines, "ALERT: the log forked", &mut seen).await;
    assert!(!child.wait().await.unwrap().success());
}

/// `--follow --origin`: each checkpoint followed must name that origin before it counts as
/// verified and is saved; one that names another ends the run as INVALID (following checked
/// neither the origin nor the witness quorum before).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_checks_each_checkpoints_origin_before_saving_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = NoteSigner::generate(ORIGIN).unwrap();
    let vkey = key.verifier().to_string();
    let bucket = dir.path().join("bucket");
    let log = open(&dir.path().join("log"), &key);
    append(&log, 0, 10).await;
    let target = Target::parse(p(&bucket), true).unwrap();
    Publisher::new(log.clone(), target)
        .publish_once()
        .await
        .unwrap();
    log.close();

    let saved = dir.path().join("saved");
    let save = ["--save-checkpoint", p(&saved)];
    let wrong = [&["--origin", "other.example/audit"][..], &save[..]].concat();
    let mut child = spawn_follow_with(p(&bucket), &vkey, &wrong);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let invalid = "INVALID: the checkpoint's origin is";
    wait_for(&mut lines, invalid, &mut seen).await;
    assert!(!child.wait().await.unwrap().success());
    assert!(!saved.exists(), "a checkpoint of another origin was saved");

    let right = [&["--origin", ORIGIN][..], &save[..]].concat();
    let mut child = spawn_follow_with(p(&bucket), &vkey, &right);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for(&mut lines, "10/10 entries valid", &mut seen).await;
    let limit = Duration::from_secs(30);
    let note = tokio::time::timeout(limit, async {
        loop {
            if let Ok(note) = std::fs::read_to_string(&saved) {
                return note;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the verified checkpoint was not saved");
    assert!(note.starts_with(&format!("{ORIGIN}\n10\n")), "{note}");
    child.kill().await.unwrap();

    // A witness quorum the followed checkpoint lacks (nobody cosigned it): INVALID, not saved.
    std::fs::remove_file(&saved).unwrap();
    let witness = witness::CosignerKey::generate("witness.example/w1").unwrap();
    let w = witness.verifier().to_string();
    let quorum = [&["--witness", w.as_str()][..], &save[..]].concat();
    let mut child = spawn_follow_with(p(&bucket), &vkey, &quorum);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for(&mut lines, "INVALID: witness quorum", &mut seen).await;
    assert!(!child.wait().await.unwrap().success());
    assert!(!saved.exists(), "a checkpoint without its quorum was saved");
}

/// Serves the files of `dir` over HTTP, answering 503 for the paths in `down` (a server or CDN
/// failing for a while): what an auditor's verification meets when the log cannot be read.
async fn flaky_static(dir: PathBuf, down: Down) -> String {
    use axum::http::{StatusCode, Uri};
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let (dir, down) = (dir.clone(), down.clone());
        async move {
            let path = uri.path().trim_start_matches('/').to_owned();
            if down.lock().unwrap().contains(&path) {
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            }
            tokio::fs::read(dir.join(&path))
                .await
                .map_err(|_| StatusCode::NOT_FOUND)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The paths a [`flaky_static`] server answers 503 for.
type Down = Arc<Mutex<HashSet<String>>>;

/// A log that cannot be read in full is not called invalid: the reads that failed are
/// `UNREADABLE:` lines and the exit status is 3 (verify again), not 1; what was read and is
/// wrong still fails with 1. `--follow` keeps trying through an outage instead of raising an
/// alert, and verifies once the log can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_that_cannot_be_read_exits_3_and_is_not_called_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let key = NoteSigner::generate(ORIGIN).unwrap();
    let vkey = key.verifier().to_string();
    let log = open(&dir.path().join("log"), &key);
    append(&log, 0, 600).await;
    let export = dir.path().join("export");
    log.export_tiles(&export).unwrap();
    let down = Down::default();
    let url = flaky_static(export.clone(), down.clone()).await;
    let args = ["audit", "verify", url.as_str(), "--vkey", vkey.as_str()];
    let verify = || onboard(&args, &[]);
    let code = |o: &Output| o.status.code();

    let o = verify().await;
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    down.lock().unwrap().insert("tile/0/001".into());
    let o = verify().await;
    let out = text(&o);
    assert_eq!(code(&o), Some(3), "{out}");
    assert!(
        out.contains("UNREADABLE: hash tile tile/0/001") && out.contains("503"),
        "{out}"
    );
    assert!(!out.contains("INVALID"), "{out}");
    assert!(out.contains("verify again"), "{out}");

    // One changed byte in another bundle is still evidence, whatever could not be read.
    let bundle = export.join("tile/entries/000");
    let mut bytes = std::fs::read(&bundle).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&bundle, &bytes).unwrap();
    let o = verify().await;
    assert_eq!(code(&o), Some(1), "{}", text(&o));
    assert!(text(&o).contains("INVALID: entry"), "{}", text(&o));
    bytes[40] ^= 1;
    std::fs::write(&bundle, &bytes).unwrap();

    // No checkpoint, or no server at all: nothing could be checked.
    down.lock().unwrap().insert("checkpoint".into());
    let o = verify().await;
    assert_eq!(code(&o), Some(3), "{}", text(&o));
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let o = onboard(&["audit", "verify", &gone, "--vkey", &vkey], &[]).await;
    assert_eq!(code(&o), Some(3), "{}", text(&o));
    down.lock().unwrap().remove("checkpoint");

    // Following through the outage: warnings, no alert; verified once the tile is back.
    let mut child = spawn_follow(&url, &vkey);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for _ in 0..3 {
        wait_for(&mut lines, "could not be read in full", &mut seen).await;
    }
    down.lock().unwrap().clear();
    wait_for(&mut lines, "600/600 entries valid", &mut seen).await;
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("ALERT") || l.contains("INVALID")),
        "{seen:?}"
    );
}
