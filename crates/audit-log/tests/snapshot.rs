//! Snapshots for backups: a pause holds appends back (they complete after it, none is lost),
//! the snapshot's records check out and restore into a log with the same root, and a flipped
//! byte in an entry is caught by the check before anything is written.

use std::time::Duration;

use audit_log::snapshot::{SnapshotCheck, restore};
use audit_log::{AuditLog, LogConfig};
use testkit::audit::{open_log, sample_fields};
use testkit::keys::{ORIGIN, log_signer};

fn check(
    records: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    want: &[u64],
) -> Result<audit_log::snapshot::Checked, audit_log::AuditError> {
    let mut c = SnapshotCheck::default();
    for s in want {
        c.want_root_at(*s);
    }
    for (k, v) in records {
        c.feed(&k, &v)?;
    }
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_snapshot_check_and_restore() -> Result<(), Box<dyn std::error::Error + Send + Sync>>
{
    let dir = tempfile::tempdir()?;
    let log = open_log(&dir.path().join("log"))?;
    for i in 0..100 {
        log.append_fields(&sample_fields(i)).await?;
    }
    let pause = log.pause(Duration::from_secs(10)).await?;
    assert_eq!(pause.checkpoint().checkpoint.size, 100);
    // An append during the pause waits for its end.
    let l2 = log.clone();
    let waiting = tokio::spawn(async move { l2.append_fields(&sample_fields(100)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "an append went through during the pause"
    );
    assert_eq!(log.size(), 100);
    let snap = log.snapshot(&pause);
    drop(pause);
    assert_eq!(waiting.await??.seq, 100);

    // Read after the pause: still exactly the 100 entries of the checkpoint.
    let records: Vec<_> = log.snapshot_records(&snap).collect::<Result<_, _>>()?;
    let root_at_40 = log.root_at(40)?;
    let checked = check(records.clone(), &[40, 500])?;
    assert_eq!(checked.checkpoint, *snap.checkpoint);
    assert_eq!(checked.roots_at, vec![(40, root_at_40)]);

    // A flipped byte in an entry: the recomputed root differs from the signed one.
    let mut bad = records.clone();
    let e = bad
        .iter_mut()
        .find(|(k, _)| k.first() == Some(&b'e'))
        .expect("an entry");
    let last = e.1.len() - 2;
    e.1[last] ^= 1;
    let err = check(bad, &[]).expect_err("a damaged entry passed");
    assert!(
        err.to_string().contains("differs from the signed root"),
        "{err}"
    );
    // A missing entry is named.
    let gap: Vec<_> = records
        .iter()
        .filter(|(k, _)| k.as_slice() != [b'e', 0, 0, 0, 0, 0, 0, 0, 7])
        .cloned()
        .collect();
    let err = check(gap, &[]).expect_err("a gap passed");
    assert!(err.to_string().contains("entry 7"), "{err}");

    // Restored, it opens with the full start-up check at the same size and root.
    let target = dir.path().join("restored");
    restore(&target, records.into_iter().map(Ok), &snap.checkpoint.note)?;
    let restored = AuditLog::open(LogConfig::new(&target, ORIGIN), log_signer())?;
    assert_eq!(restored.checkpoint().checkpoint, snap.checkpoint.checkpoint);
    restored.close();
    log.close();
    Ok(())
}
