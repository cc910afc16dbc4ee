//! Integrity across the stores of a data directory (crates/server/src/integrity.rs): the state
//! store anchors the audit log's signed size and root, and start-up refuses, with the recovery
//! in the message, when the log is missing, shorter, different, or its head note is gone; the
//! documented recovery (`reanchor`) is audited. State records carry MACs: a corrupted one is
//! refused, not used.

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use onboard_server::{App, Config};
use testkit::copy_dir;
use testkit::server::{OPERATOR, ServerConfigBuilder, TestServer};
use tonic::Code;

/// Runs a server on `config` and makes `n` invitations (two entries each), then stops it (which
/// closes the log and records the audit anchor).
async fn grow(config: &Config, n: usize) -> Result<()> {
    let s = TestServer::open(tempfile::tempdir()?, config.clone()).await?;
    for _ in 0..n {
        testkit::wizard::invite(s.channel().await?, "dr-1", "direct-routing", None).await?;
    }
    s.stop().await
}

fn refused(config: &Config, want: &[&str]) -> Result<()> {
    let err = App::open(config.clone())
        .err()
        .context("App::open accepted it")?;
    let text = err.to_string();
    for w in want {
        ensure!(text.contains(w), "missing {w:?} in: {text}");
    }
    ensure!(text.contains("onboard audit reanchor"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_an_audit_log_the_state_store_does_not_recognise() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfigBuilder::new(dir.path())?.build()?;
    let data = config.storage.data_dir.clone();
    let audit = data.join("audit");
    grow(&config, 2).await?;
    let short = dir.path().join("audit-short");
    copy_dir(&audit, &short)?;
    grow(&config, 2).await?;
    let full = dir.path().join("audit-full");
    copy_dir(&audit, &full)?;

    // Missing: the whole directory.
    std::fs::rename(&audit, dir.path().join("aside"))?;
    refused(&config, &["entries", "is missing"])?;
    std::fs::rename(dir.path().join("aside"), &audit)?;
    // Missing: only the head note.
    std::fs::rename(audit.join("audit-head.note"), dir.path().join("note"))?;
    refused(&config, &["head note", "is gone"])?;
    std::fs::rename(dir.path().join("note"), audit.join("audit-head.note"))?;
    // Shorter: an older copy of the log.
    std::fs::remove_dir_all(&audit)?;
    copy_dir(&short, &audit)?;
    refused(&config, &["shorter"])?;
    // Different: another server's log, longer than recorded, same key and origin.
    std::fs::remove_dir_all(&audit)?;
    let other_dir = tempfile::tempdir()?;
    let other = ServerConfigBuilder::new(other_dir.path())?
        .signing_key(&config.audit.signing_key)
        .build()?;
    grow(&other, 6).await?;
    copy_dir(&other_dir.path().join("data/audit"), &audit)?;
    refused(&config, &["not the log"])?;

    // The documented recovery: accept the log as it is, recorded in it.
    let said = onboard_server::reanchor(config.clone(), "restored the wrong backup; kept").await?;
    ensure!(said.contains("recorded"), "{said}");
    let app = App::open(config.clone())?;
    let last = app.audit().entry(app.audit().size() - 1)?;
    let v: serde_json::Value = serde_json::from_slice(&last)?;
    ensure!(
        v["action"] == "store.reanchor" && v["reason"] == "restored the wrong backup; kept",
        "{v}"
    );
    testkit::audit::check_schema(std::slice::from_ref(&v))?;
    app.close();
    drop(app);
    // And the right log, restored, is not the recorded one any more either: it is refused.
    std::fs::remove_dir_all(&audit)?;
    copy_dir(&full, &audit)?;
    refused(&config, &[])?;
    Ok(())
}

#[tokio::test]
async fn a_corrupted_state_record_is_refused_not_used() -> Result<()> {
    let s = TestServer::start().await?;
    let (_, id) =
        testkit::wizard::invite(s.channel().await?, "dr-1", "direct-routing", None).await?;
    let mut c = s.invitations(Some(OPERATOR)).await?;
    let get = |id: &str| pb::GetInvitationRequest {
        key: Some(pb::get_invitation_request::Key::Id(id.to_owned())),
    };
    c.get_invitation(get(&id)).await?;
    let tree = s.app.state_db().open_tree("invitations")?;
    let stored = tree.get(id.as_bytes())?.context("record")?;
    let mut bad = stored.to_vec();
    // "Contoso" → "Dontoso": valid JSON, wrong MAC.
    let at = bad
        .windows(7)
        .position(|w| w == b"Contoso")
        .context("customer name")?;
    bad[at] = b'D';
    tree.insert(id.as_bytes(), bad)?;
    let e = c
        .get_invitation(get(&id))
        .await
        .err()
        .context("corrupted record used")?;
    ensure!(e.code() == Code::Internal, "{e:?}");
    ensure!(!e.message().contains("Dontoso"));
    tree.insert(id.as_bytes(), stored)?;
    c.get_invitation(get(&id)).await?;
    s.stop().await
}
