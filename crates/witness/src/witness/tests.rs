use std::sync::Arc;

use audit_log::merkle::{NodeSource, ProofError};
use audit_log::{Hash, NoteSigner, leaf_hash, reference_root};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::*;
use crate::cosig::SignatureLine;

/// A tree of `n` leaves `leaf-<i>` for computing roots and proofs in tests.
pub(crate) struct TestTree(pub(crate) Vec<Hash>);

impl TestTree {
    pub(crate) fn new(n: u64) -> Self {
        Self(
            (0..n)
                .map(|i| leaf_hash(format!("leaf-{i}").as_bytes()))
                .collect(),
        )
    }
    pub(crate) fn root(&self, size: u64) -> Hash {
        reference_root(&self.0[..size as usize])
    }
    pub(crate) fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        if old == 0 || old == new {
            return vec![];
        }
        merkle::consistency_proof::<_, ProofError>(self, old, new).unwrap()
    }
}

impl NodeSource for TestTree {
    type Error = ProofError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        let lo = (index << level) as usize;
        Ok(reference_root(&self.0[lo..lo + (1usize << level)]))
    }
}

fn body(old: u64, proof: &[Hash], note: &str) -> Vec<u8> {
    AddCheckpointRequest {
        old_size: old,
        proof: proof.to_vec(),
        checkpoint_note: note.to_owned(),
    }
    .encode()
    .into_bytes()
}

fn signed(signer: &NoteSigner, size: u64, root: Hash) -> String {
    testkit::audit::checkpoint_note(signer, size, root)
}

fn witness_for(dir: &Path, logs: Vec<TrustedLog>) -> Witness {
    let key = CosignerKey::generate("witness.example/w1").unwrap();
    Witness::open(key, logs, dir)
        .unwrap()
        .with_clock(|| 1_700_000_000)
}

fn one_log(signer: &NoteSigner) -> Vec<TrustedLog> {
    vec![TrustedLog {
        origin: signer.name().to_owned(),
        verifiers: vec![signer.verifier()],
    }]
}

fn status(r: Result<String, WitnessError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.http_status(),
    }
}

fn assert_cosigns(w: &Witness, note: &str, lines: &str) {
    let (text, _) = split_note(note).unwrap();
    let sig = SignatureLine::parse(lines.trim_end()).unwrap();
    let c = w
        .verifier()
        .verify(text, &sig)
        .expect("cosignature verifies");
    assert_eq!(c.timestamp, 1_700_000_000);
}

/// Checkpoints, proof and keys from github.com/transparency-dev/witness
/// `internal/witness/witness_test.go` (log key name `monkeys`, origin `Log Checkpoint v0`).
#[test]
fn transparency_dev_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let monkeys =
        NoteVerifier::parse("monkeys+db4d9f7e+AULaJMvTtDLHPUcUrjdDad9vDlh/PTfC2VV60JUtCfWT")
            .unwrap();
    let w = witness_for(
        dir.path(),
        vec![TrustedLog {
            origin: "Log Checkpoint v0".into(),
            verifiers: vec![monkeys],
        }],
    );
    let m_init = "Log Checkpoint v0\n5\n41smjBUiAU70EtKlT6lIOIYtRTYxYXsDB+XHfcvu/BE=\n\n\u{2014} monkeys 202ffu1mJ0hrPIodgN0YQV7uZk9CAEzh+hOQyRjkf9CDY1IOr/oiH6WkzGIy7aEF0rw/9SHiZztjDiTOb53i6CE/zQ8=\n";
    let b_init = "Log Checkpoint v0\n5\n41smjBUiAU70EtKlT6lIOIYtRTYxYXsDB+XHfcvu/BE=\n\n\u{2014} bananas z2OfE18+NwUjjJBXH7m+fh67bu29p1Jbypr4GFUQohgQgCeuPJZtGTvfR9Pquh2Iebfq+6bhl3G/77lsKiGIea6NAwE=\n";
    let m_next = "Log Checkpoint v0\n8\nV8K9aklZ4EPB+RMOk1/8VsJUdFZR77GDtZUQq84vSbo=\n\n\u{2014} monkeys 202ffm1n5/h7F3x0D6CCysNnqiL2WBu7iubseJggohhX6JBbeLts5NWKY/g0r6yNRVN/k+QJJx1Sii0MzbMUTnmO+wA=\n";
    let proof: Vec<Hash> = [
        "b9e1d62618f7fee8034e4c5010f727ab24d8e4705cb296c374bf2025a87a10d2",
        "aac66cd7a79ce4012d80762fe8eec3a77f22d1ca4145c3f4cee022e7efcd599d",
        "89d0f753f66a290c483b39cd5e9eafb12021293395fad3d4a2ad053cfbcfdc9e",
        "29e40bb79c966f4c6fe96aff6f30acfce5f3e8d84c02215175d6e018a5dee833",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap().try_into().unwrap())
    .collect();
    assert_eq!(status(w.add_checkpoint(&body(0, &[], b_init))), 403);
    let l = w.add_checkpoint(&body(0, &[], m_init)).unwrap();
    assert_cosigns(&w, m_init, &l);
    // Re-submitting the same checkpoint at its own size is cosigned again.
    assert_eq!(status(w.add_checkpoint(&body(5, &[], m_init))), 200);
    let mut bad = proof.clone();
    bad[1][0] ^= 1;
    assert_eq!(status(w.add_checkpoint(&body(5, &bad, m_next))), 422);
    assert_eq!(status(w.add_checkpoint(&body(5, &proof[..3], m_next))), 422);
    let l = w.add_checkpoint(&body(5, &proof, m_next)).unwrap();
    assert_cosigns(&w, m_next, &l);
    assert_eq!(w.latest("Log Checkpoint v0").unwrap().size(), 8);
    // The smaller checkpoint is refused either way: old > size, or a stale old size.
    assert_eq!(status(w.add_checkpoint(&body(8, &[], m_init))), 400);
    assert!(matches!(
        w.add_checkpoint(&body(5, &[], m_init)),
        Err(WitnessError::Conflict { size: 8 })
    ));
}

/// Requests from filippo.io/torchwood `internal/witness/witness_test.go` (TestRace): a sigsum
/// log signed with Go's `sumdb/note`, and a consistency proof from 1 to 5.
#[test]
fn torchwood_sigsum_vectors() {
    let origin =
        "sigsum.org/v1/tree/4d6d8825a6bb689d459628312889dfbb0bcd41b5211d9e1ce768b0ff0309e562";
    let pk =
        hex::decode("ffdc2d4d98e4124d3feaf788c0c2f9abfd796083d1f0495437f302ec79cf100f").unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&pk.clone().try_into().unwrap()).unwrap();
    let mut raw = vec![1u8];
    raw.extend_from_slice(&pk);
    let vkey = format!(
        "{origin}+{:08x}+{}",
        note::key_id(origin, &key),
        B64.encode(raw)
    );
    let dir = tempfile::tempdir().unwrap();
    let w = witness_for(
        dir.path(),
        vec![TrustedLog {
            origin: origin.into(),
            verifiers: vec![NoteVerifier::parse(&vkey).unwrap()],
        }],
    );
    let first = format!(
        "old 0\n\n{origin}\n1\nKgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} {origin} UgIom7fPZTqpxWWhyjWduBvTvGVqsokMbqTArsQilegKoFBJQjUFAmQ0+YeSPM3wfUQMFSzVnnNuWRTYrajXpNUbIQY=\n"
    );
    let to5 = format!(
        "old 1\nKgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n+fUDV+k970B4I3uKrqJM4aP1lloPZP8mvr2Z4wRw2LI=\nKgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n{origin}\n5\nQrtXrQZCCvpIgsSmOsah7HdICzMLLyDfxToMql9WTjY=\n\n\u{2014} {origin} UgIomw/EOJmWi0i1FQsOj+etB7F8IccFam/jgd6wzRns4QPVmyEZtdvl1U2KEmLOZ/ASRcWJi0tW90dJWAShei7sDww=\n"
    );
    let to3 = format!(
        "old 1\nKgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nKgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n{origin}\n3\nRcCI1Nk56ZcSmIEfIn0SleqtV7uvrlXNccFx595Iwl0=\n\n\u{2014} {origin} UgIom2VbtIcdFbwFAy1n7s6IkAxIY6J/GQOTuZF2ORV39d75cbAj2aQYwyJre36kezNobZs4SUUdrcawfAB8WVrx6go=\n"
    );
    assert_eq!(status(w.add_checkpoint(first.as_bytes())), 200);
    assert_eq!(status(w.add_checkpoint(to5.as_bytes())), 200);
    assert!(matches!(
        w.add_checkpoint(to3.as_bytes()),
        Err(WitnessError::Conflict { size: 5 })
    ));
    let st = w.latest(origin).unwrap();
    assert_eq!(
        hex::encode(st.root()),
        "42bb57ad06420afa4882c4a63ac6a1ec77480b330b2f20dfc53a0caa5f564e36"
    );
    // More than 63 proof lines is a bad request (torchwood TestTooManyProofs).
    let many = format!(
        "old 0\n{}{}",
        "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64),
        &first[6..]
    );
    assert_eq!(status(w.add_checkpoint(many.as_bytes())), 400);
}

/// The size-zero table of torchwood's TestZeroSize, with our own keys.
#[test]
fn zero_size_and_first_checkpoint_rules() {
    let log = NoteSigner::generate("example.com/log").unwrap();
    let empty = empty_root();
    let leaf = leaf_hash(b"leaf");
    // (known size, old, new size, root, proof, status)
    let cases: [(u64, u64, u64, Hash, Vec<Hash>, u16); 8] = [
        (0, 0, 0, empty, vec![], 200),
        (0, 0, 0, leaf, vec![], 422),
        (0, 0, 0, [0; 32], vec![], 422),
        (0, 0, 0, empty, vec![leaf], 422),
        (0, 0, 1, leaf, vec![], 200),
        (0, 0, 1, leaf, vec![leaf], 422),
        (1, 0, 1, leaf, vec![leaf], 409),
        (1, 1, 0, empty, vec![], 400),
    ];
    for (i, (known, old, size, root, proof, want)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let w = witness_for(dir.path(), one_log(&log));
        if known == 1 {
            w.add_checkpoint(&body(0, &[], &signed(&log, 1, leaf)))
                .unwrap();
        }
        let got = status(w.add_checkpoint(&body(old, &proof, &signed(&log, size, root))));
        assert_eq!(got, want, "case {i}");
        let st = w.latest("example.com/log").map(|s| s.size());
        if want == 200 {
            assert_eq!(st, Some(size), "case {i}");
        } else {
            assert_eq!(st, (known == 1).then_some(1), "case {i}: state unchanged");
        }
    }
}

/// The same tree resubmitted with other extension lines is cosigned and becomes the record
/// (c2sp.org/tlog-witness: the witness MUST update its record of the latest cosigned checkpoint).
#[test]
fn the_same_tree_with_other_extension_lines_replaces_the_record() {
    let log = NoteSigner::generate("example.com/log").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = witness_for(dir.path(), one_log(&log));
    let tree = TestTree::new(3);
    let body_text = |ext: &str| {
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 3,
            root: tree.root(3),
        };
        audit_log::note::sign(&format!("{}{ext}\n", cp.to_text()), &[&log]).unwrap()
    };
    let (first, second) = (body_text("ext-a"), body_text("ext-b"));
    let cosig = w.add_checkpoint(&body(0, &[], &first)).unwrap();
    assert_cosigns(&w, &first, &cosig);
    let cosig = w.add_checkpoint(&body(3, &[], &second)).unwrap();
    assert_cosigns(&w, &second, &cosig);
    let latest = w.latest("example.com/log").unwrap();
    assert!(latest.note.starts_with(&second), "{}", latest.note);
    // And the record on disk, as a restart reads it.
    drop(w);
    let w = witness_for(dir.path(), one_log(&log));
    let latest = w.latest("example.com/log").unwrap();
    assert!(latest.note.contains("ext-b\n"), "{}", latest.note);
    // The same note again changes nothing and is cosigned again.
    assert_eq!(status(w.add_checkpoint(&body(3, &[], &second))), 200);
}

#[test]
fn status_codes_follow_the_spec_order() {
    let log = NoteSigner::generate("log.example/a").unwrap();
    let other = NoteSigner::generate("log.example/b").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = witness_for(dir.path(), one_log(&log));
    let t = TestTree::new(20);
    // Unknown origin, even with a stale old size and garbage proof: 404.
    assert_eq!(
        status(w.add_checkpoint(&body(3, &[[1; 32]], &signed(&other, 5, t.root(5))))),
        404
    );
    // Known origin, signed by an unknown key with the same name: 403.
    let impostor = NoteSigner::generate("log.example/a").unwrap();
    assert_eq!(
        status(w.add_checkpoint(&body(9, &[], &signed(&impostor, 5, t.root(5))))),
        403
    );
    // A bad signature by the trusted key: 403.
    let tampered = signed(&log, 5, t.root(5)).replacen("\n5\n", "\n6\n", 1);
    assert_eq!(status(w.add_checkpoint(&body(0, &[], &tampered))), 403);
    // Malformed note or body: 400.
    assert_eq!(
        status(w.add_checkpoint(b"old 0\n\nlog.example/a\n5\n")),
        400
    );
    assert_eq!(status(w.add_checkpoint(b"garbage")), 400);
    // old > size: 400, before the stale-size check.
    assert_eq!(
        status(w.add_checkpoint(&body(6, &[], &signed(&log, 5, t.root(5))))),
        400
    );
    w.add_checkpoint(&body(0, &[], &signed(&log, 5, t.root(5))))
        .unwrap();
    // Stale old size: 409 with the size, before any proof check.
    assert!(matches!(
        w.add_checkpoint(&body(4, &[[9; 32]], &signed(&log, 9, t.root(9)))),
        Err(WitnessError::Conflict { size: 5 })
    ));
    // Same size, other root: 409 (fork), not a size conflict.
    assert!(matches!(
        w.add_checkpoint(&body(5, &[], &signed(&log, 5, t.root(4)))),
        Err(WitnessError::RootMismatch { size: 5 })
    ));
    // A proof for another tree: 422.
    let t2 = TestTree(t.0.iter().rev().copied().collect());
    assert_eq!(
        status(w.add_checkpoint(&body(5, &t2.proof(5, 9), &signed(&log, 9, t.root(9))))),
        422
    );
    let l = w
        .add_checkpoint(&body(5, &t.proof(5, 9), &signed(&log, 9, t.root(9))))
        .unwrap();
    assert_cosigns(&w, &signed(&log, 9, t.root(9)), &l);
}

#[test]
fn state_survives_a_restart_and_a_corrupt_state_refuses_to_start() {
    let log = NoteSigner::generate("log.example/a").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = TestTree::new(8);
    {
        let w = witness_for(dir.path(), one_log(&log));
        w.add_checkpoint(&body(0, &[], &signed(&log, 3, t.root(3))))
            .unwrap();
        w.add_checkpoint(&body(3, &t.proof(3, 7), &signed(&log, 7, t.root(7))))
            .unwrap();
    }
    let w = witness_for(dir.path(), one_log(&log));
    assert_eq!(w.latest("log.example/a").unwrap().size(), 7);
    assert!(matches!(
        w.add_checkpoint(&body(0, &[], &signed(&log, 8, t.root(8)))),
        Err(WitnessError::Conflict { size: 7 })
    ));
    drop(w);
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "checkpoint") {
            std::fs::write(&p, "not a note").unwrap();
        }
    }
    let err = Witness::open(
        CosignerKey::generate("w").unwrap(),
        one_log(&log),
        dir.path(),
    )
    .unwrap_err();
    assert!(matches!(err, WitnessError::State { .. }), "{err}");
}

#[test]
fn concurrent_requests_never_roll_the_state_back() {
    let log = Arc::new(NoteSigner::generate("log.example/a").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let w = Arc::new(witness_for(dir.path(), one_log(&log)));
    let t = Arc::new(TestTree::new(32));
    let threads: Vec<_> = (1..=32u64)
        .map(|size| {
            let (w, t, log) = (w.clone(), t.clone(), log.clone());
            std::thread::spawn(move || {
                let note = signed(&log, size, t.root(size));
                let mut old = 0;
                loop {
                    match w.add_checkpoint(&body(old, &t.proof(old, size), &note)) {
                        Ok(_) => return Some(size),
                        Err(WitnessError::Conflict { size: s }) if s <= size => old = s,
                        Err(
                            WitnessError::Conflict { .. } | WitnessError::OldSizeTooLarge { .. },
                        ) => {
                            return None;
                        }
                        Err(e) => panic!("size {size}: {e}"),
                    }
                }
            })
        })
        .collect();
    let ok: Vec<u64> = threads
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert!(ok.contains(&32));
    assert_eq!(w.latest("log.example/a").unwrap().size(), 32);
    drop(w);
    let w = witness_for(dir.path(), one_log(&log));
    assert_eq!(w.latest("log.example/a").unwrap().size(), 32, "persisted");
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any body, and any single-byte mutation of a valid request, is answered without a
        /// panic; only a 200 moves the state, and never backwards.
        #[test]
        fn arbitrary_and_mutated_requests_never_panic(
            junk in proptest::collection::vec(any::<u8>(), 0..300),
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let log = NoteSigner::from_go_private_key(
                "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            ).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let w = witness_for(dir.path(), one_log(&log));
            let t = TestTree::new(9);
            w.add_checkpoint(&body(0, &[], &signed(&log, 4, t.root(4)))).unwrap();
            let _ = w.add_checkpoint(&junk);
            prop_assert_eq!(w.latest("PeterNeumann").unwrap().size(), 4);
            let mut valid = body(4, &t.proof(4, 9), &signed(&log, 9, t.root(9)));
            let i = pos.index(valid.len());
            let changed = valid[i] != byte;
            valid[i] = byte;
            let r = w.add_checkpoint(&valid);
            let size = w.latest("PeterNeumann").unwrap().size();
            if r.is_ok() {
                prop_assert_eq!(size, 9);
            } else {
                prop_assert_eq!(size, 4);
            }
            if !changed {
                prop_assert!(r.is_ok());
            }
        }

        #[test]
        fn response_parsers_never_panic(body in "[\\PC\n\u{2014} ]{0,300}") {
            let v = CosignerKey::generate("a").unwrap().verifier();
            let _ = SignatureLine::parse_trusted_block(&body, 100, &[&v]);
            let _ = crate::protocol::parse_size_body(body.as_bytes());
        }
    }
}
