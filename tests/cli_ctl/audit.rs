//! `onboard ctl audit checkpoint|proof|list|tail` (auditor role).

use anyhow::{Context, Result, ensure};
use audit_log::{NoteSigner, NoteVerifier, SignedCheckpoint, TlogProof};
use onboard_proto::v1 as pb;
use onboard_proto::v1::audit_client::AuditClient;

use testkit::config::{AUDITOR, OPERATOR};
use testkit::keys::ORIGIN;
use testkit::onboard_binary;
use testkit::server::with_token;
use testkit::sim::calm;
use testkit::wizard::invite;

use crate::{ctl, ctl_json, json_lines, refused};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_read_proved_and_followed() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let (files, server) = onboard_binary!().start(&sim).await?;
    let ch = server.channel().await?;
    for svc in ["dr-1", "dr-2", "dr-3"] {
        invite(ch.clone(), svc, "direct-routing", None).await?;
    }
    let mut grpc = AuditClient::new(with_token(ch.clone(), Some(AUDITOR)));
    let range = |from_seq, to_seq| pb::ListEntriesRequest {
        from_seq,
        to_seq,
        ..Default::default()
    };

    // checkpoint: the signed note verbatim, verified with the right key only.
    let r = ctl(
        &server,
        AUDITOR,
        &["audit", "checkpoint", "--vkey", &files.vkey],
    )
    .await?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(
        r.stdout.starts_with(&format!("{ORIGIN}\n")) && r.stdout.contains("signature verified: "),
        "{r}"
    );
    // A checkpoint that does not verify leaves the one the auditor kept (--out) as it was.
    let kept = tempfile::tempdir()?;
    let saved = kept.path().join("checkpoint.note");
    std::fs::write(&saved, "the auditor's last checkpoint\n")?;
    let stranger = NoteSigner::generate(ORIGIN)?.verifier().to_string();
    let r = ctl(
        &server,
        AUDITOR,
        &[
            "audit",
            "checkpoint",
            "--vkey",
            &stranger,
            "--out",
            &saved.to_string_lossy(),
        ],
    )
    .await?;
    refused(&r, 1, "does not verify")?;
    ensure!(std::fs::read_to_string(&saved)? == "the auditor's last checkpoint\n");
    let (_, cp) = ctl_json::<pb::Checkpoint>(
        &server,
        AUDITOR,
        &["audit", "checkpoint", "-o", "json"],
        "onboard.v1.Checkpoint",
    )
    .await?;
    let opened = SignedCheckpoint::open(
        std::str::from_utf8(&cp.note)?,
        &[NoteVerifier::parse(&files.vkey)?],
    )?;
    ensure!(opened.checkpoint.size == cp.size && cp.origin == ORIGIN && cp.size >= 3);

    // proof: checked by the CLI, written as a C2SP tlog-proof that verifies here too.
    let file = files.dir.path().join("entry-1.tlog-proof");
    let r = ctl(
        &server,
        AUDITOR,
        &[
            "audit",
            "proof",
            "--seq",
            "1",
            "--out",
            file.to_str().context("path")?,
            "--vkey",
            &files.vkey,
        ],
    )
    .await?;
    ensure!(
        r.code == Some(0) && r.stdout.starts_with("entry 1 is in the log of "),
        "{r}"
    );
    let proof = TlogProof::parse(&std::fs::read_to_string(&file)?).map_err(anyhow::Error::msg)?;
    let signed =
        SignedCheckpoint::open(&proof.checkpoint_note, &[NoteVerifier::parse(&files.vkey)?])?;
    let leaf = grpc
        .list_entries(range(1, 2))
        .await?
        .into_inner()
        .entries
        .remove(0)
        .leaf;
    audit_log::merkle::verify_inclusion(
        1,
        signed.checkpoint.size,
        &audit_log::leaf_hash(&leaf),
        &proof.proof,
        &signed.checkpoint.root,
    )?;
    let r = ctl(&server, AUDITOR, &["audit", "proof", "--seq", "100000"]).await?;
    ensure!(
        r.code == Some(2)
            && r.stderr.contains("GetInclusionProof: INVALID_ARGUMENT")
            && r.stderr.contains("\n  field `seq`: "),
        "{r}"
    );

    // list: a table, and JSON holding the entries ListEntries returns.
    let r = ctl(
        &server,
        AUDITOR,
        &["audit", "list", "--from", "0", "--to", "4"],
    )
    .await?;
    ensure!(
        r.code == Some(0) && r.stdout.starts_with("   SEQ  TIME"),
        "{r}"
    );
    ensure!(
        r.stdout.lines().count() == 5 && r.stdout.contains("invitation.create"),
        "{r}"
    );
    let (r, listed) = ctl_json::<pb::ListEntriesResponse>(
        &server,
        AUDITOR,
        &["audit", "list", "--from", "0", "--to", "4", "-o", "json"],
        "onboard.v1.ListEntriesResponse",
    )
    .await?;
    let want = grpc.list_entries(range(0, 4)).await?.into_inner();
    ensure!(
        listed.entries == want.entries && listed.entries.len() == 4,
        "{r}"
    );
    let (r, created) = ctl_json::<pb::ListEntriesResponse>(
        &server,
        AUDITOR,
        &[
            "audit",
            "list",
            "--action",
            "invitation.create",
            "-o",
            "json",
        ],
        "onboard.v1.ListEntriesResponse",
    )
    .await?;
    // Intent and outcome of each of the three creations.
    ensure!(created.entries.len() == 6, "{r}");

    // tail: replay from 0, stop after the limit; JSON lines are the same entries.
    let r = ctl(
        &server,
        AUDITOR,
        &["audit", "tail", "--from", "0", "--limit", "3"],
    )
    .await?;
    ensure!(r.code == Some(0) && r.stdout.lines().count() == 4, "{r}");
    let r = ctl(
        &server,
        AUDITOR,
        &["audit", "tail", "--from", "0", "--limit", "4", "-o", "json"],
    )
    .await?;
    let followed: Vec<pb::Entry> = json_lines(&r, "onboard.v1.Entry")?;
    ensure!(followed == want.entries, "{r}");

    // Operators may not read the audit log.
    let r = ctl(&server, OPERATOR, &["audit", "checkpoint"]).await?;
    refused(&r, 4, "PERMISSION_DENIED")?;
    Ok(())
}
