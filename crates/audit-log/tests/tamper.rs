//! Tampering with stored or exported data is detected, named by its seq, and never repaired by
//! deleting anything.

use std::path::Path;

use audit_log::verify::verify_export;
use testkit::audit::{open_log, sample_fields};
use testkit::flip_byte;
use testkit::keys::log_signer;

const N: u64 = 300;

fn make_log(dir: &Path) {
    let log = open_log(dir).unwrap();
    for i in 0..N {
        log.append_blocking(&sample_fields(i)).unwrap();
    }
    log.close();
}

/// Edits the raw sled tree the way an attacker with disk access would.
fn with_raw_tree(dir: &Path, f: impl FnOnce(&sled::Tree)) {
    // The log's sled threads let go of the directory lock shortly after it is closed.
    let mut tries = 0;
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(e) if tries < 250 && e.to_string().contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let tree = db.open_tree("audit").unwrap();
    f(&tree);
    db.flush().unwrap();
}

fn flip(tree: &sled::Tree, key: &[u8], byte: usize) {
    let mut v = tree.get(key).unwrap().unwrap().to_vec();
    let i = byte % v.len();
    v[i] ^= 0x01;
    tree.insert(key, v).unwrap();
}

fn entry_key(seq: u64) -> Vec<u8> {
    let mut k = vec![b'e'];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Complete node `(level, index)` is stored in the value of its last leaf's entry, after a
/// count byte, level 0 first.
fn node_home(level: u8, index: u64) -> (Vec<u8>, usize) {
    let seq = ((index + 1) << level) - 1;
    (entry_key(seq), 1 + 32 * level as usize)
}

fn open_error(dir: &Path) -> String {
    match open_log(dir) {
        Ok(_) => panic!("tampered log opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn any_flipped_entry_byte_is_found_with_its_seq() {
    for (seq, byte) in [(0u64, 0usize), (17, 5), (150, 77), (N - 1, 300)] {
        let dir = tempfile::tempdir().unwrap();
        make_log(dir.path());
        with_raw_tree(dir.path(), |t| flip(t, &entry_key(seq), byte));
        let err = open_error(dir.path());
        assert!(err.contains(&format!("entry {seq}:")), "seq {seq}: {err}");
        assert!(err.contains("nothing was deleted"), "{err}");
        // The tampered entry is still there for forensics.
        with_raw_tree(dir.path(), |t| {
            assert!(t.get(entry_key(seq)).unwrap().is_some())
        });
    }
}

#[test]
fn a_flipped_node_byte_is_found() {
    for (level, index, seq) in [(0u8, 9u64, 9u64), (3, 2, 23), (8, 0, 255)] {
        let dir = tempfile::tempdir().unwrap();
        make_log(dir.path());
        let (key, offset) = node_home(level, index);
        with_raw_tree(dir.path(), |t| flip(t, &key, offset + 3));
        let err = open_error(dir.path());
        assert!(
            err.contains(&format!("entry {seq}")),
            "node ({level},{index}): {err}"
        );
    }
}

#[test]
fn a_flipped_checkpoint_byte_is_found() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let mut cp_key = vec![b'c'];
    cp_key.extend_from_slice(&N.to_be_bytes());
    // Flip a byte in the signature line and, separately, in the root line.
    with_raw_tree(dir.path(), |t| flip(t, &cp_key, 130));
    let err = open_error(dir.path());
    assert!(err.contains(&format!("checkpoint at size {N}")), "{err}");
}

#[test]
fn a_truncated_tail_is_found_with_the_first_missing_seq() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    with_raw_tree(dir.path(), |t| {
        for seq in N - 5..N {
            t.remove(entry_key(seq)).unwrap();
        }
    });
    let err = open_error(dir.path());
    assert!(err.contains(&format!("entry {}", N - 5)), "{err}");
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn a_hole_in_the_middle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    with_raw_tree(dir.path(), |t| {
        t.remove(entry_key(100)).unwrap();
    });
    let err = open_error(dir.path());
    assert!(err.contains("entry 100: missing"), "{err}");
}

/// sled recovers an empty or shorter database from damaged files and reports success; the
/// head file beside it catches that. (sled itself cuts its file back to what it could recover
/// while opening, so the unreadable tail bytes are sled's to lose; our code removes nothing, and
/// the refusal is sticky: a second start refuses again.)
#[test]
fn damaged_sled_files_refuse_start_and_delete_nothing() {
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage); 4] = [
        ("garbage at the start", |d| {
            d.iter_mut().take(4096).for_each(|b| *b = 0xA5)
        }),
        ("all garbage", |d| d.iter_mut().for_each(|b| *b = 0xA5)),
        ("garbage in the middle", |d| {
            let n = d.len();
            d.iter_mut().skip(n / 2).take(4096).for_each(|b| *b = 0xA5)
        }),
        ("cut in half", |d| d.truncate(d.len() / 2)),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        make_log(dir.path());
        let db_file = dir.path().join("db");
        let mut data = std::fs::read(&db_file).unwrap();
        damage(&mut data);
        std::fs::write(&db_file, &data).unwrap();
        let err = open_error(dir.path());
        assert!(
            err.contains("audit-head.note") || err.contains("corrupt"),
            "{what}: {err}"
        );
        assert!(err.contains("nothing was deleted"), "{what}: {err}");
        for f in ["db", "conf", "audit-head.note"] {
            assert!(dir.path().join(f).exists(), "{what}: {f} is gone");
        }
        let again = open_error(dir.path());
        assert!(
            again.contains("nothing was deleted"),
            "{what}, second start: {again}"
        );
    }
}

fn export(dir: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let log = open_log(dir).unwrap();
    log.export_tiles(out.path()).unwrap();
    log.close();
    out
}

#[test]
fn an_intact_export_verifies() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let out = export(dir.path());
    let r = verify_export(out.path(), &[log_signer().verifier()], None, 2);
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.entries_valid, N);
    assert_eq!(r.bundles_total, 2);
    assert_eq!(r.tiles_total, 3, "two level-0 tiles and one level-1 tile");
    assert_eq!(r.tiles_valid, 3);
    assert!(std::fs::metadata(out.path().join("tile/entries/001.p/44")).is_ok());
    assert!(std::fs::metadata(out.path().join("tile/0/001.p/44")).is_ok());
    assert!(std::fs::metadata(out.path().join("tile/1/000.p/1")).is_ok());
}

#[test]
fn a_flipped_byte_in_an_exported_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let out = export(dir.path());
    // Entry 256 starts at byte 2 of bundle 1; flip a byte inside its JSON.
    flip_byte(&out.path().join("tile/entries/001.p/44"), 40, 0x01);
    let r = verify_export(out.path(), &[log_signer().verifier()], None, 2);
    assert!(!r.ok());
    assert!(
        r.problems.iter().any(|p| p.starts_with("entry 256")),
        "{:?}",
        r.problems
    );
    assert_eq!(r.entries_valid, N - 1);
}

#[test]
fn a_flipped_tile_or_checkpoint_byte_is_found() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let out = export(dir.path());
    flip_byte(&out.path().join("tile/0/000"), 32 * 7 + 1, 0x80);
    let r = verify_export(out.path(), &[log_signer().verifier()], None, 1);
    assert!(
        r.problems.iter().any(|p| p.starts_with("entry 7:")),
        "{:?}",
        r.problems
    );

    let out = export(dir.path());
    let cp = out.path().join("checkpoint");
    let text = std::fs::read_to_string(&cp).unwrap();
    std::fs::write(&cp, text.replacen(&N.to_string(), &(N - 1).to_string(), 1)).unwrap();
    let r = verify_export(out.path(), &[log_signer().verifier()], None, 1);
    assert!(!r.checkpoint_valid);
    assert!(!r.ok());
}

#[test]
fn an_export_that_rewrote_history_fails_against_a_saved_checkpoint() {
    let dir_a = tempfile::tempdir().unwrap();
    make_log(dir_a.path());
    let log = open_log(dir_a.path()).unwrap();
    let saved = log.checkpoint().note.clone();
    for i in 0..10 {
        log.append_blocking(&sample_fields(1000 + i)).unwrap();
    }
    log.close();
    let out = export(dir_a.path());
    let r = verify_export(out.path(), &[log_signer().verifier()], Some(&saved), 2);
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.since, Some((N, true)));

    // A different history of the same length, signed by the same key, is caught.
    let dir_b = tempfile::tempdir().unwrap();
    let log = open_log(dir_b.path()).unwrap();
    for i in 0..N + 10 {
        log.append_blocking(&sample_fields(5000 + i)).unwrap();
    }
    log.close();
    let out_b = export(dir_b.path());
    let r = verify_export(out_b.path(), &[log_signer().verifier()], Some(&saved), 2);
    assert_eq!(r.since, Some((N, false)));
    assert!(!r.ok());
}
