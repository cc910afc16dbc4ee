//! `onboard restore` against the witnesses' record: an archive older than the latest checkpoint
//! the configured `[witnessing] store` holds is refused, even into an empty directory (no head
//! note to compare with), and taken only with `--allow-rollback --reason`.

use anyhow::{Result, ensure};
use audit_log::SignedCheckpoint;
use audit_log::note::NoteVerifier;
use onboard_proto::v1 as pb;
use witness::{CosignatureStore, CosignerKey, StoredState};

use super::{backup, config_for, restore, serving};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_older_than_what_the_witnesses_cosigned_is_refused() -> Result<()> {
    let (_sim, onboard, s, server, mut audit) = serving().await?;
    let work = tempfile::tempdir()?;
    let older = work.path().join("older.tar");
    backup(&onboard, &server, &older).await?;
    // The log grows past the archive (audited reads), and the store records its checkpoint
    // now as the latest the witnesses cosigned, as the server's witnessing would.
    for _ in 0..5 {
        audit.get_checkpoint(pb::GetCheckpointRequest {}).await?;
    }
    let checkpoint = audit.get_checkpoint(pb::GetCheckpointRequest {}).await?;
    server.terminate()?;
    let note = String::from_utf8(checkpoint.into_inner().note)?;
    let latest = SignedCheckpoint::open(&note, &[NoteVerifier::parse(&s.files.vkey)?])?;
    let store = work.path().join("cosignatures.json");
    let state = StoredState {
        witnesses: Default::default(),
        latest: Some(latest.clone()),
    };
    CosignatureStore::new(&store).save(&latest.checkpoint.origin, &state)?;
    let witness = CosignerKey::generate("witness.test/w1")?
        .verifier()
        .to_string();
    let data = work.path().join("fresh");
    let config = config_for(&s.files, &data)?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        "\n[witnessing]\nstore = {:?}\nquorum = 1\nmin_interval_ms = 1000\n\n\
         [[witness]]\nurl = \"http://127.0.0.1:9/\"\nvkey = {witness:?}\n",
        store.display().to_string()
    ));
    std::fs::write(&config, text)?;

    let run = restore(&onboard, &older, &config, &[]).await?;
    ensure!(
        run.code != Some(0)
            && run.stderr.contains("refusing to restore an older snapshot")
            && run.stderr.contains("the witness store"),
        "{run}"
    );
    ensure!(!data.join("audit").exists(), "something was written");
    let rollback = ["--allow-rollback", "--reason", "drill"];
    let run = restore(&onboard, &older, &config, &rollback).await?;
    ensure!(
        run.code == Some(0) && run.stdout.contains("forced"),
        "{run}"
    );
    Ok(())
}
