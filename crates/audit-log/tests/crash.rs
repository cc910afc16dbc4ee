//! kill -9 crash test: a child process appends with group commit and prints every acknowledged
//! seq with its checkpoint; the parent kills it at random moments, reopens the log (full
//! start-up check) and checks that every acknowledged entry is there, that the tree verifies, and
//! that no checkpoint ever conflicts with an earlier one.
//!
//! SIGKILL keeps the OS page cache, so this tests process crashes, not power loss; power-loss
//! safety rests on sled's fsync before every acknowledgement.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use audit_log::SignedCheckpoint;
use testkit::audit::{open_log, sample_fields};
use testkit::child::{ChildTest, replay_plan};
use testkit::keys::log_signer;

const DIR_VAR: &str = "AUDIT_CRASH_DIR";

#[test]
#[ignore = "run as the child process of crash_recovery_keeps_every_acknowledged_entry"]
fn child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let log = open_log(dir.as_ref()).unwrap();
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let a = log
                        .append_blocking(&sample_fields(t * 1_000_000 + i))
                        .unwrap();
                    let cp = &a.checkpoint.checkpoint;
                    println!("ack {} {} {}", a.seq, cp.size, hex::encode(cp.root));
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn crash_recovery_keeps_every_acknowledged_entry() {
    let (rounds, mut rng) = replay_plan("AUDIT_CRASH", 15);
    let seed = rng.seed;
    let dir = tempfile::tempdir().unwrap();
    let mut max_acked: Option<u64> = None;
    let mut total_acks = 0u64;
    // Every checkpoint any child ever returned, by size: a second root for a size is a fork.
    let mut signed: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..rounds {
        let child = ChildTest::spawn("child_writer", &[(DIR_VAR, dir.path())], Stdio::null());
        // Kill at a random moment: one round in four anywhere from spawn (often during open),
        // the others a random time after the first acknowledgement (mid-append).
        let mut lines = Vec::new();
        if rng.below(4) != 0 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                match child.next_line(Duration::from_millis(50)) {
                    Ok(l) if l.starts_with("ack ") => {
                        lines.push(l);
                        break;
                    }
                    Ok(l) => lines.push(l),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        let wait = Duration::from_millis(rng.below(300));
        let start = Instant::now();
        while start.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(1));
        }
        lines.extend(child.kill());
        let mut acks = 0u64;
        for line in lines {
            let Some(rest) = line.strip_prefix("ack ") else {
                continue;
            };
            let parts: Vec<&str> = rest.split(' ').collect();
            let (seq, size): (u64, u64) = (parts[0].parse().unwrap(), parts[1].parse().unwrap());
            assert!(
                seq < size,
                "ack of seq {seq} with a checkpoint of size {size}"
            );
            if let Some(prev) = signed.insert(size, parts[2].to_owned()) {
                assert_eq!(prev, parts[2], "two different roots signed for size {size}");
            }
            max_acked = max_acked.max(Some(seq));
            acks += 1;
        }
        total_acks += acks;

        let log = open_log(dir.path())
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}): reopen failed: {e}"));
        let size = log.size();
        if let Some(m) = max_acked {
            assert!(
                m < size,
                "round {round}: acknowledged seq {m} lost (size {size})"
            );
        }
        for (s, root) in &signed {
            assert_eq!(
                hex::encode(log.root_at(*s).unwrap()),
                *root,
                "round {round}: the tree no longer has the root signed for size {s}"
            );
        }
        // The stored entries are contiguous and the head verifies with the log's key.
        assert_eq!(log.entries(0, size).count() as u64, size);
        SignedCheckpoint::open(&log.checkpoint().note, &[log_signer().verifier()]).unwrap();
        println!("round {round}: {acks} acks, log size {size}");
        log.close();
    }
    assert!(total_acks > 0, "no child ever acknowledged an append");
}
