//! Tiles handed out by a running log (no export) equal the exported files; incremental
//! verification from a saved checkpoint checks what was added and catches a rewritten log.

use std::path::Path;

use audit_log::verify::{VerifyOptions, verify_export, verify_tiles};
use audit_log::{AuditLog, DirReader, LogConfig, NoteSigner, TileId, tile_id::tiles_of_size};
use testkit::audit::{open_log as open, sample_fields as fields};
use testkit::flip_byte;
use testkit::keys::{ORIGIN, log_signer as key};

fn append(log: &AuditLog, from: u64, to: u64) {
    for i in from..to {
        log.append_blocking(&fields(i)).unwrap();
    }
}

/// Checks an incremental run from the checkpoint at 600 refused the export, with a problem
/// that says `says`.
fn refused_since_600(r: &audit_log::verify::VerifyReport, says: &str) {
    assert!(!r.ok());
    assert_eq!(r.since, Some((600, false)));
    assert!(
        r.problems.iter().any(|p| p.contains(says)),
        "{:?}",
        r.problems
    );
}

fn incremental(dir: &Path, since: &str) -> audit_log::verify::VerifyReport {
    let note = std::fs::read_to_string(dir.join("checkpoint")).unwrap();
    let options = VerifyOptions {
        threads: 2,
        incremental: true,
    };
    verify_tiles(
        &DirReader(dir),
        &note,
        &[key().verifier()],
        Some(since),
        options,
    )
}

/// A log of 1500 entries exported to `dir/export` (returned), and its signed checkpoint of 600
/// entries (the saved one of an incremental run).
fn exported_1500_saved_at_600(dir: &Path) -> (String, std::path::PathBuf) {
    let log = open(&dir.join("log")).unwrap();
    append(&log, 0, 600);
    let saved = log.checkpoint().note.clone();
    append(&log, 600, 1500);
    let export = dir.join("export");
    log.export_tiles(&export).unwrap();
    log.close();
    (saved, export)
}

#[test]
fn live_tiles_equal_the_export_and_beyond_the_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("log")).unwrap();
    append(&log, 0, 700);
    let export = dir.path().join("export");
    log.export_tiles(&export).unwrap();
    for id in tiles_of_size(700) {
        let file = std::fs::read(export.join(id.path())).unwrap();
        assert_eq!(log.tile(&id).unwrap(), file, "{id}");
    }
    // A partial tile of an older size is the prefix of today's tile.
    let old = log.tile(&TileId::hash(0, 2, 100)).unwrap();
    assert_eq!(
        old[..],
        log.tile(&TileId::hash(0, 2, 188)).unwrap()[..100 * 32]
    );
    for beyond in [
        TileId::hash(0, 2, 189),
        TileId::hash(0, 3, 1),
        TileId::entries(2, 189),
        TileId::hash(1, 0, 3),
        TileId::hash(2, 0, 1),
        TileId::hash(63, 0, 1),
        TileId::entries(u64::MAX, 256),
    ] {
        let e = log.tile(&beyond).unwrap_err();
        assert!(e.to_string().contains("beyond"), "{beyond}: {e}");
    }
    log.close();
}

#[test]
fn incremental_verification_checks_the_new_part_and_the_consistency_proof() {
    let dir = tempfile::tempdir().unwrap();
    let (saved, export) = exported_1500_saved_at_600(dir.path());

    let r = incremental(&export, &saved);
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.first, 512, "starts at the bundle holding entry 599");
    assert_eq!(r.entries_valid, 1500 - 512);
    assert_eq!(r.bundles_valid, r.bundles_total);
    assert_eq!(r.bundles_total, 4, "bundles 2, 3, 4 and 5.p/220");
    assert_eq!(r.tiles_valid, r.tiles_total);
    assert_eq!(r.since, Some((600, true)));

    // An entry before the incremental start is not read again…
    let bundle0 = export.join("tile/entries/000");
    flip_byte(&bundle0, 10, 1);
    assert!(incremental(&export, &saved).ok());
    // …but a full run sees it.
    assert!(!verify_export(&export, &[key().verifier()], Some(&saved), 2).ok());
    flip_byte(&bundle0, 10, 1);

    // A hash tile the consistency proof is computed from.
    flip_byte(&export.join("tile/1/000.p/5"), 0, 1);
    refused_since_600(&incremental(&export, &saved), "rewritten");
}

/// c2sp.org/tlog-tiles: "Logs MUST serve partial tiles corresponding to tree sizes for which a
/// checkpoint was produced, but MAY delete any partial tile once the corresponding full tile is
/// available". The checkpoint at 300 entries served by a log at 600 that deleted
/// `tile/0/001.p/44` and `tile/entries/001.p/44` (but kept `tile/1/000.p/1`, whose full tile
/// does not exist yet) verifies: both are read from their full tiles.
#[test]
fn partial_tiles_the_log_deleted_are_read_from_their_full_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("log")).unwrap();
    append(&log, 0, 300);
    let at_300 = log.checkpoint().note.clone();
    append(&log, 300, 600);
    let export = dir.path().join("export");
    log.export_tiles(&export).unwrap();
    let kept = TileId::hash(1, 0, 1);
    std::fs::write(export.join(kept.path()), log.tile(&kept).unwrap()).unwrap();
    log.close();
    for gone in ["tile/0/001.p/44", "tile/entries/001.p/44"] {
        assert!(!export.join(gone).exists(), "{gone}");
    }
    std::fs::write(export.join("checkpoint"), &at_300).unwrap();
    let r = verify_export(&export, &[key().verifier()], None, 2);
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!((r.size, r.entries_valid, r.bundles_valid), (300, 300, 2));
    assert_eq!(r.tiles_valid, r.tiles_total);
}

#[test]
fn a_rewritten_log_is_not_consistent_with_the_saved_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // Two logs with the same key: the second differs from entry 300 on.
    let a = open(&dir.path().join("a")).unwrap();
    append(&a, 0, 600);
    let saved = a.checkpoint().note.clone();
    a.close();
    let b = AuditLog::open(
        LogConfig::new(dir.path().join("b"), ORIGIN),
        NoteSigner::from_go_private_key(&key().to_go_private_key()).unwrap(),
    )
    .unwrap();
    append(&b, 0, 300);
    append(&b, 10_000, 10_900);
    let export = dir.path().join("export");
    b.export_tiles(&export).unwrap();
    b.close();
    refused_since_600(&incremental(&export, &saved), "not consistent");
}

/// Full bundles are kept as files beside sled: written by `materialize_bundles` (and by a
/// read), served only when they match the log, never written by a read-only log, and not at
/// all when turned off.
#[test]
fn bundle_files_are_a_checked_cache_of_full_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let log = open(&data).unwrap();
    append(&log, 0, 700);
    let export = dir.path().join("export");
    // Off: no file is ever written.
    let mut cfg = LogConfig::new(dir.path().join("plain"), ORIGIN);
    cfg.bundle_files = false;
    let plain = AuditLog::open(cfg, key()).unwrap();
    append(&plain, 0, 300);
    plain
        .export_tiles(&dir.path().join("plain-export"))
        .unwrap();
    assert!(!plain.materialize_bundles(64).unwrap());
    assert!(
        !dir.path().join("plain/bundles").exists(),
        "files written while off"
    );
    plain.close();
    // The export reads (and so writes) every full bundle's file: start again without them.
    log.export_tiles(&export).unwrap();
    std::fs::remove_dir_all(data.join("bundles")).unwrap();
    let file = |n: &str| data.join("bundles").join(n);
    let want = |n: u64| std::fs::read(export.join(TileId::entries(n, 256).path())).unwrap();
    let same = |n: u64| log.tile(&TileId::entries(n, 256)).unwrap() == want(n);
    // Bundles 0 and 1 are served right, and their files hold those bytes.
    let both_served_and_filed = || {
        for n in [0, 1] {
            assert!(same(n), "bundle {n}");
            let held = std::fs::read(file(&format!("{n:03}"))).unwrap();
            assert!(held.starts_with(&want(n)), "bundle {n}'s file");
        }
    };

    assert!(
        log.materialize_bundles(1).unwrap(),
        "one of two full bundles written"
    );
    assert!(file("000").is_file() && !file("001").exists());
    assert!(!log.materialize_bundles(64).unwrap());
    assert!(
        file("001").is_file() && !file("002").exists(),
        "a partial bundle has no file"
    );
    both_served_and_filed();
    assert!(
        log.tile(&TileId::entries(2, 188)).unwrap()
            == std::fs::read(export.join(TileId::entries(2, 188).path())).unwrap()
    );

    // Damaged, or another bundle's: rebuilt from sled and rewritten.
    flip_byte(&file("000"), 40, 1);
    std::fs::copy(file("000"), file("001")).unwrap();
    both_served_and_filed();
    // From another history (a log with other entries): its node differs, so it is not served.
    let other_dir = dir.path().join("other");
    let other = AuditLog::open(LogConfig::new(&other_dir, ORIGIN), key()).unwrap();
    for i in 0..256 {
        other.append_blocking(&fields(i + 5000)).unwrap();
    }
    other.materialize_bundles(64).unwrap();
    other.close();
    std::fs::copy(other_dir.join("bundles/000"), file("000")).unwrap();
    assert!(same(0));
    // Files deleted: a read writes them again; materialize starts where it left off, so it
    // does not look again.
    std::fs::remove_dir_all(data.join("bundles")).unwrap();
    assert!(!log.materialize_bundles(64).unwrap());
    assert!(!file("001").exists());
    assert!(same(1));
    assert!(file("001").is_file());
    log.close();

    // Read-only: files that check are read, nothing is written or removed.
    let ro = AuditLog::open_read_only(&data, audit_log::StartupCheck::Full).unwrap();
    assert!(!file("000").exists());
    assert!(ro.tile(&TileId::entries(0, 256)).unwrap() == want(0));
    assert!(ro.tile(&TileId::entries(1, 256)).unwrap() == want(1));
    assert!(!file("000").exists(), "a read-only log wrote a file");
    flip_byte(&file("001"), 40, 1);
    assert!(ro.tile(&TileId::entries(1, 256)).unwrap() == want(1));
    assert!(file("001").exists(), "a read-only log removed a file");
    assert!(!ro.materialize_bundles(64).unwrap());
    assert!(!file("000").exists());
}

/// An export keeps the full tiles already in its directory only when they are an earlier
/// export of the same log: another log's, or another history's, is refused (mixing them would
/// make an export no checkpoint verifies), and tiles without a checkpoint are rewritten.
#[test]
fn an_export_keeps_only_an_earlier_export_of_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir.path().join("a")).unwrap();
    append(&a, 0, 300);
    let export = dir.path().join("export");
    a.export_tiles(&export).unwrap();
    append(&a, 300, 600);
    let s = a.export_tiles(&export).unwrap();
    assert!(s.skipped > 0, "{s:?}");
    let keys = [key().verifier()];
    assert!(verify_export(&export, &keys, None, 1).ok());

    // The same key and origin, another history from entry 300 on.
    let b = AuditLog::open(
        LogConfig::new(dir.path().join("b"), ORIGIN),
        NoteSigner::from_go_private_key(&key().to_go_private_key()).unwrap(),
    )
    .unwrap();
    append(&b, 0, 300);
    append(&b, 10_000, 10_400);
    let e = b.export_tiles(&export).unwrap_err().to_string();
    assert!(e.contains("another history of this log"), "{e}");
    // Another log altogether.
    let other = "other.onboard.test/audit";
    let c = AuditLog::open(
        LogConfig::new(dir.path().join("c"), other),
        NoteSigner::generate(other).unwrap(),
    )
    .unwrap();
    append(&c, 0, 10);
    let e = c.export_tiles(&export).unwrap_err().to_string();
    assert!(e.contains("an export of another log"), "{e}");
    c.close();

    // Tiles of unknown origin (no checkpoint: an interrupted export) are rewritten, a full
    // tile that differs among them too.
    std::fs::remove_file(export.join("checkpoint")).unwrap();
    testkit::flip_byte(&export.join("tile/0/000"), 40, 1);
    let s = b.export_tiles(&export).unwrap();
    assert_eq!(s.skipped, 0, "{s:?}");
    assert!(verify_export(&export, &keys, None, 1).ok());
    assert_eq!(verify_export(&export, &keys, None, 1).size, 700);
    a.close();
    b.close();
}

/// A reader whose reads of `down` fail as a network source's do when the server is down
/// (`ErrorKind::Other`), and whose other reads come from the export directory.
struct Outage<'a> {
    dir: &'a Path,
    down: &'a str,
}

impl audit_log::TileReader for Outage<'_> {
    fn read(&self, path: &str) -> std::io::Result<Vec<u8>> {
        if path == self.down {
            return Err(std::io::Error::other("HTTP 503 Service Unavailable"));
        }
        DirReader(self.dir).read(path)
    }
}

/// A tile or bundle that cannot be read is reported as unreadable, not as a problem: nothing
/// read was wrong, and consistency with the saved checkpoint is unknown, not refuted. A missing
/// one (`NotFound`) is the log's own failure and stays a problem.
#[test]
fn a_read_that_fails_is_unreadable_not_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let (saved, export) = exported_1500_saved_at_600(dir.path());
    let note = std::fs::read_to_string(export.join("checkpoint")).unwrap();
    let verify = |down: &str, since: Option<&str>| {
        let options = VerifyOptions {
            threads: 2,
            incremental: since.is_some(),
        };
        let reader = Outage { dir: &export, down };
        verify_tiles(&reader, &note, &[key().verifier()], since, options)
    };
    // The level-1 tile the consistency proof is computed from; a bundle; a hash tile.
    for (down, since) in [
        ("tile/1/000.p/5", Some(saved.as_str())),
        ("tile/entries/003", None),
        ("tile/0/004", None),
    ] {
        let r = verify(down, since);
        assert!(!r.ok() && !r.invalid(), "{down}: {:?}", r.problems);
        assert!(
            r.unreadable.iter().any(|u| u.contains("503")),
            "{down}: {:?}",
            r.unreadable
        );
        assert_ne!(r.since, Some((600, false)), "{down}");
    }
    std::fs::remove_file(export.join("tile/entries/003")).unwrap();
    let r = verify("none", None);
    assert!(r.invalid() && r.unreadable.is_empty(), "{:?}", r.unreadable);
}
