//! c2sp.org/tlog-tiles: "The Signed Tree Head MUST be served as a checkpoint at
//! `<prefix>/checkpoint`". With a feed of witness-cosigned checkpoints that has none yet, the
//! log's own latest is served (a reader requiring the cosignatures refuses it as it refused no
//! checkpoint at all); once the feed has one, the latest cosigned one is, never an own or a
//! smaller one again.

use audit_http::{Access, HttpConfig};
use audit_log::{AuditLog, CheckpointFeed};
use reqwest::StatusCode;
use testkit::audit::{open_log, send_fake_cosigned};
use testkit::tiles::{TilesApi, append_more};

/// Appends `n` entries to `log`; its checkpoint after them.
async fn append(log: &AuditLog, n: u64) -> String {
    append_more(log, n).await.unwrap();
    log.checkpoint().note.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_checkpoint_is_served_until_a_cosigned_one_and_never_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).unwrap();
    let at_10 = append(&log, 10).await;
    let (feed, rx) = tokio::sync::watch::channel(None);
    let config = HttpConfig {
        access: Access::Open,
        tls: None,
        feed: Some(CheckpointFeed::Vouched(rx)),
    };
    let api = TilesApi::start(log.clone(), config).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{}/checkpoint", api.addr);
    let served = async || {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.headers()["cache-control"], "public, max-age=2");
        r.text().await.unwrap()
    };

    // No cosigned checkpoint yet: the log's own, as it grows.
    assert_eq!(served().await, at_10);
    let at_20 = append(&log, 10).await;
    assert_eq!(served().await, at_20);

    // The first cosigned checkpoint lags the own one served: that one stays (a reader never
    // sees the log shrink), and no later own one is served (the cosigned one catches up).
    send_fake_cosigned(&feed, &at_10);
    let at_30 = append(&log, 10).await;
    assert_eq!(served().await, at_20);
    let cosigned_20 = send_fake_cosigned(&feed, &at_20);
    assert_eq!(served().await, cosigned_20);
    let cosigned_30 = send_fake_cosigned(&feed, &at_30);
    assert_eq!(served().await, cosigned_30);

    // The log grows past the cosigned checkpoint: never the own one again.
    append(&log, 10).await;
    assert_eq!(served().await, cosigned_30);
    api.stop().await.unwrap();
    log.close();
}
