//! The state store is durable on power loss: a change the server reports (here an invitation,
//! whose record holds a unique customer name) reaches the disk through an `fdatasync` of the
//! state store's `db` file that starts after its bytes were written and ends before the caller
//! hears back. sled 0.34's own flush is a `sync_file_range` only (see `audit_log::durable`).
//!
//! Traced with `strace -f -y` on a child process (this test binary running the ignored
//! `state_child`), through `testkit::strace`.

use std::io::Write;
use std::path::PathBuf;

use onboard_proto::v1 as pb;
use testkit::server::{OPERATOR, TestServer};
use testkit::strace::{is_sync, traced_child};

/// Where the parent tells the child to work.
const CHILD_DIR: &str = "STATE_DURABLE_CHILD_DIR";
/// Invitations the child creates.
const COUNT: u32 = 12;

fn nonce(i: u32) -> String {
    format!("nonce-{i:03}-state")
}

#[test]
#[ignore = "child process of every_reported_state_change_is_fdatasynced_before_the_answer"]
fn state_child() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("run by the parent test"));
    let mut acks = std::fs::File::create(dir.join("acks")).expect("acks file");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let config = testkit::config::ServerConfigBuilder::new(&dir)
            .expect("config")
            .build()
            .expect("config");
        let tmp = tempfile::tempdir().expect("tmp");
        let server = TestServer::open(tmp, config).await.expect("server");
        let mut inv = server.invitations(Some(OPERATOR)).await.expect("client");
        for i in 0..COUNT {
            inv.create_invitation(pb::CreateInvitationRequest {
                customer: nonce(i),
                service_id: "dr-1".into(),
                profile: "direct-routing".into(),
                ..Default::default()
            })
            .await
            .expect("create");
            acks.write_all(format!("ack {};\n", nonce(i)).as_bytes())
                .expect("ack");
        }
        server.stop().await.expect("stop");
    });
}

#[test]
fn every_reported_state_change_is_fdatasynced_before_the_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let calls = traced_child(&dir, "state_child", CHILD_DIR);
    let db = dir
        .join("data")
        .join("state")
        .join("db")
        .display()
        .to_string();
    let acks = dir.join("acks").display().to_string();
    let writes: Vec<_> = calls
        .iter()
        .filter(|c| c.name == "pwrite64" && c.path == db)
        .collect();
    let syncs: Vec<_> = calls
        .iter()
        .filter(|c| is_sync(c) && c.path == db)
        .collect();
    assert!(!writes.is_empty(), "no pwrite64 on {db}");
    for i in 0..COUNT {
        let n = nonce(i);
        let ack = calls
            .iter()
            .find(|c| c.name == "write" && c.path == acks && c.args.contains(&format!("ack {n};")))
            .unwrap_or_else(|| panic!("{n} never acknowledged"));
        let written = writes
            .iter()
            .find(|w| w.args.contains(&n))
            .unwrap_or_else(|| panic!("{n} acknowledged but never written to {db}"));
        assert!(written.end < ack.start, "{n} acknowledged before its write");
        assert!(
            syncs
                .iter()
                .any(|s| s.start > written.end && s.end < ack.start),
            "{n} acknowledged (trace line {}) with no fdatasync/fsync of {db} after its write \
             (line {}): only sled's sync_file_range, not durable on power loss",
            ack.start,
            written.end
        );
    }
}
