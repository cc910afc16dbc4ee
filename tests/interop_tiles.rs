//! The independent Python tlog-tiles verifier (`tests/interop/verify_tiles.py`, written from the
//! C2SP specs and RFC 6962, no code shared) on an export past the sizes where tile paths and
//! levels change: 70,000 entries (the spec's own example size), so full level-0 and level-1
//! tiles, a level-2 partial tile, and older signed checkpoints at 1, 255, 256, 257, 65,535,
//! 65,536, 65,537 and 69,900 entries whose partial tiles the export must still hold, or cut
//! from a full tile (the spec lets a log delete a partial tile once its full tile exists, and
//! the export leaves those out: all but 69,900's `tile/0/273.p/12` are read that way). The demo's 58-entry export, which CI also checks, reaches
//! none of these. Needs python3 with `cryptography` (`.ci/run` installs it).

use std::path::Path;
use std::process::Command;

use testkit::audit::open_log;
use testkit::keys::log_signer;
use testkit::tiles::append_many;

/// Sizes of the older checkpoints the verifier checks with their tiles.
const OLDER: [u64; 8] = [1, 255, 256, 257, 65_535, 65_536, 65_537, 69_900];
/// The log's final size.
const SIZE: u64 = 70_000;

fn verify(export: &Path, vkey: &Path, older: &[std::path::PathBuf]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/verify_tiles.py");
    let o = Command::new("python3")
        .arg(script)
        .arg(export)
        .arg(vkey)
        .args(older)
        .output()
        .expect("python3 (with the cryptography package) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_verifier_checks_a_70000_entry_export_and_its_older_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(&dir.path().join("log")).unwrap();
    let mut older = Vec::new();
    for size in OLDER {
        // Up to one short of `size` in batches, then one append alone: its checkpoint is at
        // exactly `size`.
        append_many(&log, log.size(), size - 1).await.unwrap();
        let a = log
            .append_fields(&testkit::audit::sample_fields(size - 1))
            .await
            .unwrap();
        assert_eq!(a.checkpoint.checkpoint.size, size);
        let path = dir.path().join(format!("checkpoint-{size}"));
        std::fs::write(&path, &a.checkpoint.note).unwrap();
        older.push(path);
    }
    append_many(&log, log.size(), SIZE).await.unwrap();
    let export = dir.path().join("export");
    log.export_tiles(&export).unwrap();
    log.close();
    let vkey = dir.path().join("audit.vkey");
    std::fs::write(&vkey, log_signer().verifier().to_string()).unwrap();

    let (ok, out) = verify(&export, &vkey, &older);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{SIZE} entries"))
            && out.contains("older checkpoints at [1, 255, 256, 257, 65535, 65536, 65537, 69900]"),
        "{out}"
    );
    for tile in ["tile/2/000.p/1", "tile/1/000", "tile/0/273.p/112"] {
        assert!(export.join(tile).exists(), "{tile}");
    }

    // Partial tiles no longer needed beside their full tiles are left out, and read from those.
    assert!(!export.join("tile/0/001.p/1").exists());
    // The one partial tile only the checkpoint at 69,900 needs: when it differs, or is gone
    // (no full tile to cut it from), the independent verifier says so (the test can fail).
    let partial = export.join("tile/0/273.p/12");
    let mut bad = std::fs::read(&partial).unwrap();
    bad[5] ^= 1;
    std::fs::write(&partial, &bad).unwrap();
    let (ok, out) = verify(&export, &vkey, &older);
    assert!(!ok && out.contains("tile/0/273.p/12 differs"), "{out}");
    let (ok, out) = verify(&export, &vkey, &older[..7]);
    assert!(ok, "the checkpoints that do not need it: {out}");
    std::fs::remove_file(&partial).unwrap();
    let (ok, out) = verify(&export, &vkey, &older);
    assert!(!ok && out.contains("tile/0/273.p/12 is missing"), "{out}");
}
