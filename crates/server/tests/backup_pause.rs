//! The Backup RPC's limit on how long it pauses audit appends (`limits.backup_pause_max_ms`),
//! over loopback gRPC: a state store whose export takes longer ends the backup with
//! RESOURCE_EXHAUSTED naming the limit (admin.proto), appends go on, the failure is recorded
//! as `store.backup` failed, and the same store backs up within a limit it fits in.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use testkit::config::ServerConfigBuilder;
use testkit::server::{TestServer, append};
use testkit::server_helpers::{backup, exhausted};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_export_longer_than_the_pause_limit_is_resource_exhausted() -> Result<()> {
    // Key files, so the backup runs (it refuses keys kept in the state store).
    let s = TestServer::start_with(|b: ServerConfigBuilder| {
        Ok(b.key_files()?.limit("backup_pause_max_ms", 1))
    })
    .await?;
    // 10 MB of records: exported at least twice under the pause, far longer than 1 ms.
    let filler = s.app.state_db().open_tree("test-filler")?;
    for i in 0..50_000u32 {
        filler.insert(i.to_be_bytes(), vec![b'x'; 200])?;
    }
    // (The tree holds the store open: a restart below must be able to open it again.)
    drop(filler);

    let e = match backup(&s, "pause limit test").await? {
        Err(e) => e,
        Ok(chunks) => bail!("a backup of {chunks} chunks kept appends paused within 1 ms"),
    };
    exhausted(&e, "limits.backup_pause_max_ms = 1", false)?;
    // Appends went on, and the failure is on the log with its reason.
    append(
        &s.app,
        serde_json::json!({"action": "test", "after": "backup"}),
    )
    .await?;
    testkit::wait::until_true(
        "the backup's failure recorded",
        Duration::from_secs(30),
        async || {
            Ok(s.raw_entries()?.iter().any(|e| {
                e["action"] == "store.backup"
                    && e["phase"] == "failed"
                    && e["error"]
                        .as_str()
                        .is_some_and(|m| m.contains("limits.backup_pause_max_ms = 1"))
            }))
        },
    )
    .await?;

    // The same store, within the default limit (10 s): a whole archive.
    let s = s
        .restart_with(|c| c.limits.backup_pause_max_ms = 10_000)
        .await?;
    let chunks = backup(&s, "pause limit test").await?;
    ensure!(matches!(chunks, Ok(n) if n > 0), "{chunks:?}");
    s.stop().await
}
