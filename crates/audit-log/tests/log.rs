//! The audit log end to end on a real sled directory: appends, proofs, reopening, key rotation.

use audit_log::merkle::{verify_consistency, verify_inclusion};
use audit_log::note::NoteVerifier;
use audit_log::{
    AuditLog, LogConfig, NoteSigner, SignedCheckpoint, TlogProof, leaf_hash, reference_root,
};
use proptest::prelude::*;
use testkit::audit::{open_log, sample_fields};
use testkit::keys::{ORIGIN, log_signer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_contiguous_seqs_and_signed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).unwrap();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..20 {
                out.push(
                    log.append_fields(&sample_fields(t * 100 + i))
                        .await
                        .unwrap(),
                );
            }
            out
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        for a in t.await.unwrap() {
            // Every acknowledgement carries a checkpoint that covers it and verifies.
            assert!(a.checkpoint.checkpoint.size > a.seq);
            SignedCheckpoint::open(&a.checkpoint.note, &[log_signer().verifier()]).unwrap();
            let bytes = log.entry(a.seq).unwrap();
            let proof = log
                .inclusion_proof(a.seq, a.checkpoint.checkpoint.size)
                .unwrap();
            verify_inclusion(
                a.seq,
                a.checkpoint.checkpoint.size,
                &leaf_hash(&bytes),
                &proof,
                &a.checkpoint.checkpoint.root,
            )
            .unwrap();
            seqs.push(a.seq);
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..640).collect::<Vec<_>>());
    assert_eq!(log.size(), 640);
    let leaves: Vec<_> = log
        .entries(0, 640)
        .map(|e| leaf_hash(&e.unwrap().1))
        .collect();
    assert_eq!(log.checkpoint().checkpoint.root, reference_root(&leaves));
    // Entries carry the log's own fields, seq first.
    let e: serde_json::Value = serde_json::from_slice(&log.entry(5).unwrap()).unwrap();
    assert_eq!(e["seq"], 5);
    assert_eq!(e["v"], 1);
    let head = log.checkpoint();
    log.close();

    let again = open_log(dir.path()).unwrap();
    assert_eq!(*again.checkpoint(), *head, "reopening signs nothing new");
}

#[test]
fn proofs_and_tlog_proof_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).unwrap();
    for i in 0..100 {
        log.append_blocking(&sample_fields(i)).unwrap();
    }
    let p = log.tlog_proof(42).unwrap();
    let parsed = TlogProof::parse(&p.to_text()).unwrap();
    let cp = SignedCheckpoint::open(&parsed.checkpoint_note, &[log_signer().verifier()]).unwrap();
    verify_inclusion(
        42,
        cp.checkpoint.size,
        &leaf_hash(&log.entry(42).unwrap()),
        &parsed.proof,
        &cp.checkpoint.root,
    )
    .unwrap();
    let r30 = log.root_at(30).unwrap();
    let r100 = log.root_at(100).unwrap();
    let c = log.consistency_proof(30, 100).unwrap();
    verify_consistency(30, 100, &r30, &r100, &c).unwrap();
    // Requests past the checkpoint are refused, not answered with a guess.
    assert!(log.inclusion_proof(100, 100).is_err());
    assert!(log.inclusion_proof(1, 101).is_err());
    assert!(log.entry(100).is_err());
    assert!(log.consistency_proof(0, 10).is_err());
}

#[test]
fn oversized_and_reserved_entries_are_refused_without_using_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).unwrap();
    let mut big = sample_fields(0);
    big.insert("blob".into(), "x".repeat(70_000).into());
    assert!(log.append_blocking(&big).is_err());
    let mut reserved = sample_fields(0);
    reserved.insert("seq".into(), 9.into());
    assert!(log.append_blocking(&reserved).is_err());
    assert_eq!(log.append_blocking(&sample_fields(1)).unwrap().seq, 0);
}

#[tokio::test]
async fn key_rotation_keeps_old_checkpoints_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let old = log_signer();
    let old_v = old.verifier();
    let log = open_log(dir.path()).unwrap();
    for i in 0..10 {
        log.append_fields(&sample_fields(i)).await.unwrap();
    }
    let before = log.checkpoint();
    let new = NoteSigner::generate(ORIGIN).unwrap();
    let new_v = new.verifier();
    let new_text = new.to_go_private_key();
    // The caller records the rotation (Onboard's typed `signing_key.rotate` entry).
    let record = serde_json::json!({
        "actor": "admin:alice",
        "action": "signing_key.rotate",
        "phase": "succeeded",
        "changes": [{"property": "verifier_key", "old": old_v.to_string(), "new": new_v.to_string()}],
    });
    let record = audit_log::PreparedEntry::new(1, record.as_object().unwrap()).unwrap();
    let rot = log.rotate_key(new, record).await.unwrap();
    // The rotation is an entry, and its checkpoint is signed by both keys.
    let e: serde_json::Value = serde_json::from_slice(&log.entry(rot.seq).unwrap()).unwrap();
    assert_eq!(e["action"], "signing_key.rotate");
    assert_eq!(e["changes"][0]["new"], new_v.to_string());
    SignedCheckpoint::open(&rot.checkpoint.note, std::slice::from_ref(&old_v)).unwrap();
    SignedCheckpoint::open(&rot.checkpoint.note, std::slice::from_ref(&new_v)).unwrap();
    let after = log.append_fields(&sample_fields(99)).await.unwrap();
    assert!(SignedCheckpoint::open(&after.checkpoint.note, std::slice::from_ref(&old_v)).is_err());
    SignedCheckpoint::open(&after.checkpoint.note, std::slice::from_ref(&new_v)).unwrap();
    SignedCheckpoint::open(&before.note, std::slice::from_ref(&old_v)).unwrap();
    assert_eq!(log.verifiers(), vec![old_v.clone(), new_v.clone()]);
    log.close();

    // The retired key may not sign again; the new one opens the log.
    let err = open_log(dir.path()).err().unwrap().to_string();
    assert!(err.contains("retired"), "{err}");
    let new = NoteSigner::from_go_private_key(&new_text).unwrap();
    let log = AuditLog::open(LogConfig::new(dir.path(), ORIGIN), new).unwrap();
    assert_eq!(log.size(), 12);
}

#[test]
fn a_foreign_key_or_origin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    open_log(dir.path()).unwrap().close();
    let stranger = NoteSigner::generate(ORIGIN).unwrap();
    let err = AuditLog::open(LogConfig::new(dir.path(), ORIGIN), stranger)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not this log's key"), "{err}");
    let other = NoteSigner::generate("other.origin").unwrap();
    let err = AuditLog::open(LogConfig::new(dir.path(), "other.origin"), other)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("has origin"), "{err}");
    let _ = NoteVerifier::parse(&log_signer().verifier().to_string()).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the batching, the stored tree equals the naive reference tree, and every
    /// proof the log hands out verifies against the reference roots.
    #[test]
    fn stored_tree_matches_the_reference(
        batches in proptest::collection::vec(1usize..40, 1..12),
        probes in proptest::collection::vec((any::<u64>(), any::<u64>()), 8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut n = 0u64;
        for b in &batches {
            rt.block_on(async {
                // Spawned together, so the writer sees them as one or more group commits.
                let tasks: Vec<_> = (0..*b)
                    .map(|i| {
                        let log = log.clone();
                        let f = sample_fields(n + i as u64);
                        tokio::spawn(async move { log.append_fields(&f).await })
                    })
                    .collect();
                for t in tasks { t.await.unwrap().unwrap(); }
            });
            n += *b as u64;
        }
        prop_assert_eq!(log.size(), n);
        let leaves: Vec<_> = log.entries(0, n).map(|e| leaf_hash(&e.unwrap().1)).collect();
        for size in 0..=n {
            prop_assert_eq!(log.root_at(size).unwrap(), reference_root(&leaves[..size as usize]));
        }
        for (a, b) in probes {
            let size = 1 + b % n;
            let idx = a % size;
            let root = reference_root(&leaves[..size as usize]);
            let p = log.inclusion_proof(idx, size).unwrap();
            prop_assert!(verify_inclusion(idx, size, &leaves[idx as usize], &p, &root).is_ok());
            let m = 1 + a % size;
            let c = log.consistency_proof(m, size).unwrap();
            let r1 = reference_root(&leaves[..m as usize]);
            prop_assert!(verify_consistency(m, size, &r1, &root, &c).is_ok());
        }
    }
}
