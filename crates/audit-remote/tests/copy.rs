//! A copy (`onboard audit export --from`) into a directory that already holds one keeps its
//! full tiles only when it is an earlier copy of the same log; another log's or another
//! history's is refused, so a copy never mixes two trees.

use std::sync::Arc;

use audit_log::verify::verify_export;
use audit_log::{AuditLog, LogConfig, NoteSigner};
use audit_remote::fetch::copy_to_dir;
use audit_remote::{ClientSettings, Source};
use testkit::audit::open_log;
use testkit::keys::{ORIGIN, log_signer};
use testkit::tiles::append_many;

fn source(dir: &std::path::Path) -> Arc<Source> {
    Arc::new(Source::parse(dir.to_str().unwrap(), ClientSettings::default()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_extends_only_an_earlier_copy_of_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let keys = [log_signer().verifier()];
    let a = open_log(&dir.path().join("a")).unwrap();
    append_many(&a, 0, 300).await.unwrap();
    let (pub_a, copy) = (dir.path().join("pub-a"), dir.path().join("copy"));
    a.export_tiles(&pub_a).unwrap();
    copy_to_dir(&source(&pub_a), &copy, &keys).await.unwrap();
    append_many(&a, 300, 600).await.unwrap();
    a.export_tiles(&pub_a).unwrap();
    a.close();
    let s = copy_to_dir(&source(&pub_a), &copy, &keys).await.unwrap();
    assert!(s.skipped > 0, "{s:?}");
    assert!(verify_export(&copy, &keys, None, 1).ok());

    // The same key, another history from entry 300 on.
    let b = AuditLog::open(
        LogConfig::new(dir.path().join("b"), ORIGIN),
        NoteSigner::from_go_private_key(&log_signer().to_go_private_key()).unwrap(),
    )
    .unwrap();
    append_many(&b, 0, 300).await.unwrap();
    append_many(&b, 10_000, 10_400).await.unwrap();
    let pub_b = dir.path().join("pub-b");
    b.export_tiles(&pub_b).unwrap();
    b.close();
    let e = copy_to_dir(&source(&pub_b), &copy, &keys)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("another history of this log"), "{e}");

    // Another log (its own key): the copy there does not verify with it.
    let other = "other.onboard.test/audit";
    let c_key = NoteSigner::generate(other).unwrap();
    let c_keys = [c_key.verifier()];
    let c = AuditLog::open(LogConfig::new(dir.path().join("c"), other), c_key).unwrap();
    append_many(&c, 0, 10).await.unwrap();
    let pub_c = dir.path().join("pub-c");
    c.export_tiles(&pub_c).unwrap();
    c.close();
    let e = copy_to_dir(&source(&pub_c), &copy, &c_keys)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("a copy of another log"), "{e}");

    // Tiles without a checkpoint (an interrupted copy) are fetched again, a damaged one too.
    std::fs::remove_file(copy.join("checkpoint")).unwrap();
    testkit::flip_byte(&copy.join("tile/0/000"), 40, 1);
    let s = copy_to_dir(&source(&pub_b), &copy, &keys).await.unwrap();
    assert_eq!(s.skipped, 0, "{s:?}");
    let r = verify_export(&copy, &keys, None, 1);
    assert!(r.ok() && r.size == 700, "{:?}", r.problems);
}
