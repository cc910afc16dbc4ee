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

/// The entry count the demo's own verification reported (`N/N entries valid`).
fn demo_entries(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (a, rest) = l.split_once('/')?;
            let b = rest.strip_suffix(" entries valid")?;
            (a == b).then(|| a.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no entry count in {text}"))
}

/// The entry bundle holding entries 0..256 of a log of `size` entries (partial below 256).
fn first_bundle(export: &Path, size: u64) -> std::path::PathBuf {
    if size >= 256 {
        export.join("tile/entries/000")
    } else {
        export.join(format!("tile/entries/000.p/{size}"))
    }
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
    // One whole onboarding: invitation, sign-in, plan, provision, every Entra change.
    let n = demo_entries(&text);
    assert!(n >= 20, "{text}");
    for step in ["Signed in:", "Completed:", "secret     ", "Exported"] {
        assert!(text.contains(step), "{step}: {text}");
    }

    // The contract: DIR/export and a one-line DIR/audit.vkey.
    let vkey = std::fs::read_to_string(d.join("audit.vkey")).unwrap();
    assert_eq!(vkey.lines().count(), 1);
    NoteVerifier::parse(vkey.trim()).unwrap();
    let export = d.join("export");
    let ok = onboard(&["audit", "verify", p(&export), "--vkey", vkey.trim()]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(!stdout(&ok).contains("INVALID"));
    // With the log's origin named: the same; with another's, INVALID although the key verifies.
    let with_origin = |origin: &str| {
        let args = [
            "audit",
            "verify",
            p(&export),
            "--vkey",
            vkey.trim(),
            "--origin",
            origin,
        ];
        onboard(&args)
    };
    let ok = with_origin("onboard.demo.invalid/audit");
    assert!(ok.status.success(), "{}", stdout(&ok));
    let other = with_origin("onboard.example.net/audit");
    assert_eq!(other.status.code(), Some(1), "{}", stdout(&other));
    assert!(
        stdout(&other).contains(
            "INVALID: the checkpoint's origin is \"onboard.demo.invalid/audit\", not \"onboard.example.net/audit\""
        ),
        "{}",
        stdout(&other)
    );

    // The proof file the demo wrote verifies against its own checkpoint.
    let proof =
        TlogProof::parse(&std::fs::read_to_string(d.join("entry-0.tlog-proof")).unwrap()).unwrap();
    let cp = SignedCheckpoint::open(
        &proof.checkpoint_note,
        &[NoteVerifier::parse(vkey.trim()).unwrap()],
    )
    .unwrap();
    let bundle = std::fs::read(first_bundle(&export, n)).unwrap();
    let len = u16::from_be_bytes([bundle[0], bundle[1]]) as usize;
    verify_inclusion(
        0,
        cp.checkpoint.size,
        &leaf_hash(&bundle[2..2 + len]),
        &proof.proof,
        &cp.checkpoint.root,
    )
    .unwrap();

    // Flip one byte of entry 10: verify names it and exits non-zero.
    let path = first_bundle(&export, n);
    let mut data = std::fs::read(&path).unwrap();
    let mut pos = 0;
    for _ in 0..10 {
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
    assert!(text.contains("INVALID: entry 10"), "{text}");
    assert!(
        text.contains(&format!("{}/{n} entries valid", n - 1)),
        "{text}"
    );

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
    let demo = onboard(&["demo", "--dir", p(d)]);
    assert!(demo.status.success());
    let n = demo_entries(&stdout(&demo));
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

    // The server's data directory is DIR/data; its audit log is DIR/data/audit.
    let data = d.join("data/audit");
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
    // The entry the command writes (`signing_key.rotate`) keeps the auditors' contract, as
    // every entry of the log does.
    {
        let log =
            audit_log::AuditLog::open_read_only(&data, audit_log::StartupCheck::Full).unwrap();
        let all = testkit::audit::entries(&log).unwrap();
        assert_eq!(all.last().unwrap()["action"], "signing_key.rotate");
        testkit::audit::check_stored_schema(&all).unwrap();
    }
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
        text.contains(&format!(
            "Consistent with the saved checkpoint of {n} entries"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{0}/{0} entries valid", n + 1)),
        "{text}"
    );

    let proof = onboard(&[
        "audit",
        "proof",
        "--data-dir",
        p(&data),
        "--seq",
        &n.to_string(),
    ]);
    assert!(proof.status.success());
    let parsed = TlogProof::parse(&stdout(&proof)).unwrap();
    assert_eq!(parsed.index, n);
    let past = onboard(&[
        "audit",
        "proof",
        "--data-dir",
        p(&data),
        "--seq",
        &(n + 1).to_string(),
    ]);
    assert!(!past.status.success());
    assert!(String::from_utf8_lossy(&past.stderr).contains("does not exist"));
}

/// A private key given where a verifier key belongs is refused without being repeated: errors
/// reach terminals and logs.
#[test]
fn a_private_key_given_as_a_verifier_key_is_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("audit.key");
    let made = onboard(&["keygen", "--origin", "x.example/log", "--out", p(&key)]);
    assert!(made.status.success(), "{made:?}");
    let private = std::fs::read_to_string(&key).unwrap();
    let secret = private.trim().splitn(5, '+').last().unwrap().to_owned();
    for args in [
        vec!["audit", "verify", p(d), "--vkey", p(&key)],
        vec!["audit", "verify", p(d), "--vkey", private.trim()],
        vec![
            "audit",
            "verify",
            p(d),
            "--vkey",
            &format!("'{}'", private.trim()),
        ],
    ] {
        let o = onboard(&args);
        let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
        assert!(!o.status.success(), "{args:?}: {all}");
        assert!(
            !all.contains(&secret),
            "{args:?} printed the private key: {all}"
        );
        assert!(all.contains("a private key"), "{args:?}: {all}");
    }
}

/// `onboard witness` refuses a key file others may read, with the fix, and a private key given
/// as a log's verifier key without repeating it.
#[test]
fn the_witness_refuses_an_open_key_and_does_not_print_a_misplaced_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("witness.key");
    let made = onboard(&[
        "witness",
        "keygen",
        "--name",
        "w.example/w1",
        "--out",
        p(&key),
    ]);
    assert!(made.status.success(), "{made:?}");
    let log_key = d.join("log.key");
    let log_vkey = stdout(&onboard(&[
        "keygen",
        "--origin",
        "l.example/log",
        "--out",
        p(&log_key),
    ]));
    let private = std::fs::read_to_string(&log_key).unwrap();
    let secret = private.trim().splitn(5, '+').last().unwrap().to_owned();
    // A file where the state directory belongs: a witness that went past its key check would
    // stop there instead of serving (this test never starts one).
    let state = d.join("state");
    std::fs::write(&state, "").unwrap();
    let run = |log: &str| {
        let o = onboard(&[
            "witness",
            "--listen",
            "127.0.0.1:0",
            "--key",
            p(&key),
            "--state-dir",
            p(&state),
            "--log",
            log,
        ]);
        assert!(!o.status.success(), "{o:?}");
        format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr))
    };
    let misplaced = run(&format!("l.example/log={}", private.trim()));
    assert!(!misplaced.contains(&secret), "{misplaced}");
    assert!(misplaced.contains("a private key"), "{misplaced}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = run(&format!("l.example/log={}", log_vkey.trim()));
    assert!(
        open.contains(&format!("(mode 0644); fix: chmod 600 {}", key.display())),
        "{open}"
    );
}
