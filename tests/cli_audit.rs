//! The `onboard` binary's audit tools end to end: demo, verify (good and tampered), proof,
//! keygen and key rotation, run as a user would.

use std::path::Path;
use std::process::{Command, Output};

use audit_log::merkle::verify_inclusion;
use audit_log::{NoteVerifier, SignedCheckpoint, TlogProof, leaf_hash};

fn onboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(args)
        .output()
        .expect("run onboard")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn demo_leaves_a_verifiable_export_and_tampering_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = onboard(&["demo", "--dir", p(d)]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.contains("624/624 entries valid"), "{text}");

    // The contract: DIR/export and a one-line DIR/audit.vkey.
    let vkey = std::fs::read_to_string(d.join("audit.vkey")).unwrap();
    assert_eq!(vkey.lines().count(), 1);
    NoteVerifier::parse(vkey.trim()).unwrap();
    let export = d.join("export");
    let ok = onboard(&["audit", "verify", p(&export), "--vkey", vkey.trim()]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(!stdout(&ok).contains("INVALID"));

    // The proof file the demo wrote verifies against its own checkpoint.
    let proof =
        TlogProof::parse(&std::fs::read_to_string(d.join("entry-0.tlog-proof")).unwrap()).unwrap();
    let cp = SignedCheckpoint::open(
        &proof.checkpoint_note,
        &[NoteVerifier::parse(vkey.trim()).unwrap()],
    )
    .unwrap();
    let bundle = std::fs::read(export.join("tile/entries/000")).unwrap();
    let len = u16::from_be_bytes([bundle[0], bundle[1]]) as usize;
    verify_inclusion(
        0,
        cp.checkpoint.size,
        &leaf_hash(&bundle[2..2 + len]),
        &proof.proof,
        &cp.checkpoint.root,
    )
    .unwrap();

    // Flip one byte of entry 300 (bundle 1): verify names it and exits non-zero.
    let path = export.join("tile/entries/001");
    let mut data = std::fs::read(&path).unwrap();
    let mut pos = 0;
    for _ in 0..(300 - 256) {
        pos += 2 + u16::from_be_bytes([data[pos], data[pos + 1]]) as usize;
    }
    data[pos + 20] ^= 0x20;
    std::fs::write(&path, data).unwrap();
    let bad = onboard(&[
        "audit",
        "verify",
        p(&export),
        "--vkey",
        p(&d.join("audit.vkey")),
    ]);
    assert!(!bad.status.success());
    let text = stdout(&bad);
    assert!(text.contains("INVALID: entry 300"), "{text}");
    assert!(text.contains("623/624 entries valid"), "{text}");

    // A wrong key is a failure too, not a skipped check.
    let other = tempfile::tempdir().unwrap();
    let k = other.path().join("k");
    let v = onboard(&[
        "keygen",
        "--origin",
        "onboard.demo.invalid/audit",
        "--out",
        p(&k),
    ]);
    assert!(v.status.success());
    let wrong = onboard(&["audit", "verify", p(&export), "--vkey", stdout(&v).trim()]);
    assert!(!wrong.status.success());
    assert!(
        stdout(&wrong).contains("INVALID: checkpoint signature"),
        "{}",
        stdout(&wrong)
    );
}

#[test]
fn rotation_export_and_since_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(onboard(&["demo", "--dir", p(d)]).status.success());
    let saved = d.join("saved.checkpoint");
    std::fs::copy(d.join("export/checkpoint"), &saved).unwrap();

    let new_key = d.join("new.key");
    let new_vkey = stdout(&onboard(&[
        "keygen",
        "--origin",
        "onboard.demo.invalid/audit",
        "--out",
        p(&new_key),
    ]));
    // keygen never overwrites a key.
    assert!(
        !onboard(&["keygen", "--origin", "x", "--out", p(&new_key)])
            .status
            .success()
    );

    let data = d.join("data");
    let rot = onboard(&[
        "audit",
        "rotate-key",
        "--data-dir",
        p(&data),
        "--key",
        p(&d.join("audit.key")),
        "--new-key",
        p(&new_key),
    ]);
    assert!(
        rot.status.success(),
        "{}",
        String::from_utf8_lossy(&rot.stderr)
    );
    let export = d.join("export2");
    assert!(
        onboard(&[
            "audit",
            "export",
            "--data-dir",
            p(&data),
            "--out",
            p(&export)
        ])
        .status
        .success()
    );
    let v = onboard(&[
        "audit",
        "verify",
        p(&export),
        "--vkey",
        new_vkey.trim(),
        "--vkey",
        p(&d.join("audit.vkey")),
        "--since-checkpoint",
        p(&saved),
    ]);
    let text = stdout(&v);
    assert!(v.status.success(), "{text}");
    assert!(
        text.contains("Consistent with the saved checkpoint of 624 entries"),
        "{text}"
    );
    assert!(text.contains("625/625 entries valid"), "{text}");

    let proof = onboard(&["audit", "proof", "--data-dir", p(&data), "--seq", "624"]);
    assert!(proof.status.success());
    let parsed = TlogProof::parse(&stdout(&proof)).unwrap();
    assert_eq!(parsed.index, 624);
    let past = onboard(&["audit", "proof", "--data-dir", p(&data), "--seq", "625"]);
    assert!(!past.status.success());
    assert!(String::from_utf8_lossy(&past.stderr).contains("does not exist"));
}
