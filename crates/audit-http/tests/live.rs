//! The tiles API over real loopback sockets: served live while 64 appenders write, a client
//! that polls the checkpoint and fetches every tile always verifies, and every full tile it
//! ever fetched stays byte-identical; headers, 404s, bearer and mTLS access.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use audit_http::{Access, HttpConfig};
use audit_log::merkle::{consistency_proof, verify_consistency};
use audit_log::tile_id::tiles_of_size;
use audit_log::verify::{VerifyOptions, verify_tiles};
use audit_log::{AuditLog, Hash, SignedCheckpoint, TileNodes};
use reqwest::StatusCode;
use testkit::audit::{open_log, sample_fields};
use testkit::keys::log_signer;
use testkit::pki::{Ca, San};
use testkit::tiles::{TileMap, TilesApi};

fn key() -> audit_log::NoteSigner {
    log_signer()
}

fn open(dir: &std::path::Path) -> AuditLog {
    open_log(dir).unwrap()
}

fn fields(i: u64) -> serde_json::Map<String, serde_json::Value> {
    sample_fields(i)
}

fn open_access() -> HttpConfig {
    HttpConfig {
        access: Access::Open,
        tls: None,
        feed: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_following_the_live_api_always_verifies_and_full_tiles_never_change() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let api = TilesApi::start(log.clone(), open_access()).await.unwrap();
    let addr = api.addr;
    let base = format!("http://{addr}");

    // 64 appenders write until the client has verified enough checkpoints while they ran.
    let enough = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let appenders: Vec<_> = (0..64u64)
        .map(|t| {
            let (log, enough, appended) = (log.clone(), enough.clone(), appended.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !enough.load(Ordering::SeqCst) || appended.load(Ordering::SeqCst) < 3000 {
                    log.append_fields(&fields(t * 1_000_000 + i)).await.unwrap();
                    appended.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect();

    let client = reqwest::Client::new();
    let keys = [key().verifier()];
    let mut full_tiles: HashMap<String, Vec<u8>> = HashMap::new();
    let mut last: Option<SignedCheckpoint> = None;
    let mut verified_while_writing = 0;
    let mut refetched = 0;
    loop {
        let writing = appenders.iter().any(|a| !a.is_finished());
        let note = client
            .get(format!("{base}/checkpoint"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let cp = SignedCheckpoint::open(&note, &keys).unwrap();
        let size = cp.checkpoint.size;
        if last.as_ref().is_some_and(|l| l.checkpoint.size == size) {
            if !writing {
                break;
            }
            tokio::task::yield_now().await;
            continue;
        }
        // Every tile of this tree, as a fresh client would fetch it.
        let mut fetched = HashMap::new();
        for id in tiles_of_size(size) {
            let path = id.path();
            let resp = client.get(format!("{base}/{path}")).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path} at size {size}");
            let bytes = resp.bytes().await.unwrap().to_vec();
            if id.is_full() {
                if let Some(before) = full_tiles.get(&path) {
                    assert_eq!(before, &bytes, "full tile {path} changed");
                    refetched += 1;
                } else {
                    full_tiles.insert(path.clone(), bytes.clone());
                }
            }
            fetched.insert(path, bytes);
        }
        let fetched = TileMap(fetched);
        let since = last.as_ref().map(|l| l.note.clone());
        let options = VerifyOptions {
            threads: 2,
            incremental: false,
        };
        let r = verify_tiles(&fetched, &note, &keys, since.as_deref(), options);
        assert!(r.ok(), "size {size}: {:?}", r.problems);
        assert_eq!(r.entries_valid, size);
        // And a consistency proof computed from the tiles alone (there is none from the
        // empty tree, which the first fetch may have seen).
        if let Some(l) = last.as_ref().filter(|l| l.checkpoint.size > 0) {
            let nodes = TileNodes::new(&fetched, size);
            let proof: Vec<Hash> = consistency_proof(&nodes, l.checkpoint.size, size).unwrap();
            verify_consistency(
                l.checkpoint.size,
                size,
                &l.checkpoint.root,
                &cp.checkpoint.root,
                &proof,
            )
            .unwrap();
        }
        if writing {
            verified_while_writing += 1;
            if verified_while_writing >= 10 {
                enough.store(true, Ordering::SeqCst);
            }
        }
        last = Some(cp);
    }
    for a in appenders {
        a.await.unwrap();
    }
    assert!(verified_while_writing >= 10);
    assert!(refetched > 0, "no full tile was fetched twice");
    assert_eq!(last.unwrap().checkpoint.size, log.size());
    api.stop().await.unwrap();
    log.close();
}

/// While it serves, the API keeps every full bundle as a file beside sled, written after each
/// checkpoint with no reader asking (a reader's request would write its bundle's file too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_bundles_become_files_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..300 {
        log.append_fields(&fields(i)).await.unwrap();
    }
    let api = TilesApi::start(log.clone(), open_access()).await.unwrap();
    for i in 300..800 {
        log.append_fields(&fields(i)).await.unwrap();
    }
    let file = |n: u64| {
        dir.path()
            .join("bundles")
            .join(audit_log::tiles::index_path(n))
    };
    // Bundle 0 was full before serving began (an older data directory), 1 and 2 filled since.
    let limit = std::time::Duration::from_secs(20);
    testkit::wait::until_true("a file for each full bundle", limit, async || {
        Ok((0..3).all(|n| file(n).is_file()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!file(3).exists(), "the partial bundle 3 has a file");
    let served = reqwest::get(format!("http://{}/tile/entries/001", api.addr))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(served[..] == log.tile(&audit_log::TileId::entries(1, 256)).unwrap()[..]);
    assert!(std::fs::read(file(1)).unwrap().starts_with(&served));
    api.stop().await.unwrap();
    log.close();
}

#[tokio::test]
async fn headers_and_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..300 {
        log.append_fields(&fields(i)).await.unwrap();
    }
    let api = TilesApi::start(log.clone(), open_access()).await.unwrap();
    let addr = api.addr;
    // The server's own encoding, undecoded: reqwest's `gzip` feature (on in the workspace for
    // the tiles client) would ask for gzip and strip `Content-Encoding` from the answer.
    let client = reqwest::Client::builder().no_gzip().build().unwrap();
    let get = |p: &str| client.get(format!("http://{addr}/{p}")).send();

    let r = get("checkpoint").await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "public, max-age=2");
    // A public log may be read from a web page on another origin (a browser-based monitor).
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.text().await.unwrap(), log.checkpoint().note);

    for (path, len) in [
        ("tile/0/000", 8192),
        ("tile/0/001.p/44", 44 * 32),
        ("tile/0/001.p/2", 2 * 32),
        ("tile/1/000.p/1", 32),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(r.bytes().await.unwrap().len(), len, "{path}");
    }
    let r = get("tile/entries/000").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("content-encoding").is_none());
    let plain = r.bytes().await.unwrap();
    // Bundles are gzipped for clients that accept it; hash tiles never are.
    let gz = client
        .get(format!("http://{addr}/tile/entries/000"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert!(gz.bytes().await.unwrap().len() < plain.len());
    let tile = client
        .get(format!("http://{addr}/tile/0/000"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(tile.headers().get("content-encoding").is_none());

    for path in [
        "tile/0/001",
        "tile/0/001.p/45",
        "tile/1/000",
        "tile/2/000.p/1",
        "tile/entries/001.p/45",
        "tile/0/0001",
        "tile/00/000",
        "tile/0/x000/000",
        "tile/64/000",
        "tile/entries/",
        "tile/",
        "nope",
        // Percent-encoded spellings of tiles that exist are not their names.
        "tile/0/%30%30%30",
        "tile/0/001.p%2F44",
        "tile/entries/%30%30%30",
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        // No cache keeps a 404: the tile may exist a moment later.
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
    let head = client
        .head(format!("http://{addr}/tile/0/000"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    api.stop().await.unwrap();
    log.close();
}

#[tokio::test]
async fn bearer_access_needs_a_configured_token() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_fields(&fields(0)).await.unwrap();
    let config = HttpConfig {
        access: Access::bearer_tokens(["s3cret-token"]),
        tls: None,
        feed: None,
    };
    let api = TilesApi::start(log.clone(), config).await.unwrap();
    let addr = api.addr;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/checkpoint");
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"audit log\""
    );
    assert!(!r.text().await.unwrap().contains("s3cret"));
    let r = client.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client
        .get(format!("http://{addr}/tile/entries/000.p/1"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Authenticated answers are not for shared caches, nor for other origins' pages.
    assert_eq!(
        r.headers()["cache-control"],
        "private, max-age=31536000, immutable"
    );
    assert!(r.headers().get("access-control-allow-origin").is_none());
    api.stop().await.unwrap();
    log.close();
}

#[tokio::test]
async fn mtls_access_needs_a_client_certificate_from_the_ca() {
    let ca = Ca::new("audit-http test CA").unwrap();
    let server_pem = ca.server("tiles").unwrap();
    let client_pem = ca.client("auditor", San::Dns("auditor.example")).unwrap();
    let (cert, key_pem) = (server_pem.cert, server_pem.key);
    let (client_cert, client_key) = (client_pem.cert, client_pem.key);
    let ca = ca.pem;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_fields(&fields(0)).await.unwrap();
    let tls =
        audit_http::server_tls(cert.as_bytes(), key_pem.as_bytes(), Some(ca.as_bytes())).unwrap();
    let config = HttpConfig {
        access: Access::Mtls,
        tls: Some(tls),
        feed: None,
    };
    let api = TilesApi::start(log.clone(), config).await.unwrap();
    let addr = api.addr;
    let url = format!("https://{addr}/checkpoint");
    let ca_cert = reqwest::Certificate::from_pem(ca.as_bytes()).unwrap();
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(ca_cert.clone())
        .build()
        .unwrap();
    assert!(anonymous.get(&url).send().await.is_err());
    let identity =
        reqwest::Identity::from_pem(format!("{client_cert}{client_key}").as_bytes()).unwrap();
    let auditor = reqwest::Client::builder()
        .add_root_certificate(ca_cert)
        .identity(identity)
        .build()
        .unwrap();
    let r = auditor.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), log.checkpoint().note);
    api.stop().await.unwrap();
    log.close();
}
