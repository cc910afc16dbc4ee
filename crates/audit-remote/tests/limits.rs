//! A hostile or broken server or bucket cannot exhaust the reader's memory: a checkpoint is
//! read up to 128 KiB, a hash tile up to 8,192 bytes, an entry bundle up to 256 × (2 + 65,535)
//! bytes, each decided before the whole body is held (from Content-Length when there is one,
//! else as the body streams in, after decoding). Past the cap the log is invalid (a problem,
//! exit 1), not unreachable.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use audit_log::verify::VerifyOptions;
use audit_remote::fetch::verify_source;
use audit_remote::{ClientSettings, RemoteError, Source};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use testkit::audit::open_log;
use testkit::keys::log_signer;
use testkit::tiles::append_more;

/// What the hostile server serves.
#[derive(Clone)]
struct Hostile {
    /// An export of a real log; its files are served unless overridden below.
    dir: PathBuf,
    /// Bytes of the endless checkpoint handed to the connection so far.
    produced: Arc<AtomicU64>,
}

/// The checkpoint is 64 MiB streamed without Content-Length; `tile/0/000` is 9,000 bytes with
/// Content-Length; `tile/1/000.p/1` is 9,000 bytes streamed without it; `tile/0/001.p/44` is a
/// gzip coding of 1 MiB of zeros (a few KiB on the wire). The rest is the export.
async fn serve(State(s): State<Hostile>, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/').to_owned();
    match path.as_str() {
        "checkpoint" => {
            let produced = s.produced.clone();
            let chunks = futures_util::stream::iter(0..1024).map(move |_| {
                produced.fetch_add(65_536, Ordering::SeqCst);
                Ok::<_, std::io::Error>(Bytes::from(vec![b'a'; 65_536]))
            });
            Body::from_stream(chunks).into_response()
        }
        "tile/0/000" => vec![7u8; 9000].into_response(),
        "tile/1/000.p/1" => {
            let chunks = futures_util::stream::iter(0..9)
                .map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 1000])));
            Body::from_stream(chunks).into_response()
        }
        "tile/0/001.p/44" => {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&vec![0u8; 1 << 20]).unwrap();
            let coded = gz.finish().unwrap();
            ([(header::CONTENT_ENCODING, "gzip")], coded).into_response()
        }
        _ => match std::fs::read(s.dir.join(&path)) {
            Ok(b) => b.into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// A log of 300 entries exported to `dir/export`, then closed: the export and its checkpoint.
async fn export_of_300(dir: &std::path::Path) -> (PathBuf, String) {
    let log = open_log(&dir.join("log")).unwrap();
    append_more(&log, 300).await.unwrap();
    let export = dir.join("export");
    log.export_tiles(&export).unwrap();
    let note = log.checkpoint().note.clone();
    log.close();
    (export, note)
}

fn invalid_past(e: &RemoteError, cap: usize) -> bool {
    matches!(e, RemoteError::Invalid { detail, .. } if detail.contains(&format!("longer than {cap} bytes")))
        && !e.is_unreachable()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_source_reads_no_resource_past_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (export, note) = export_of_300(dir.path()).await;

    let hostile = Hostile {
        dir: export.clone(),
        produced: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(hostile.clone());
    let (addr, server) = testkit::http::serve(app).await.unwrap();
    let source =
        Arc::new(Source::parse(&format!("http://{addr}/"), ClientSettings::default()).unwrap());

    // The endless checkpoint: refused at 128 KiB, long before its 64 MiB are sent.
    let started = Instant::now();
    let e = source.checkpoint().await.map(|b| b.len()).unwrap_err();
    assert!(invalid_past(&e, 131_072), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let produced = hostile.produced.load(Ordering::SeqCst);
    assert!(produced < 16 << 20, "{produced} bytes produced");
    let options = VerifyOptions {
        threads: 2,
        incremental: false,
    };
    let keys = vec![log_signer().verifier()];
    let e = verify_source(source.clone(), keys.clone(), None, options)
        .await
        .map(|(note, _)| note.len())
        .unwrap_err();
    assert!(invalid_past(&e, 131_072), "{e:?}");

    // Tiles: announced, streamed, and decoded past the cap.
    for path in ["tile/0/000", "tile/1/000.p/1", "tile/0/001.p/44"] {
        let e = source.get(path).await.map(|b| b.len()).unwrap_err();
        assert!(invalid_past(&e, 8192), "{path}: {e:?}");
    }
    // The verifier reports them as problems of the log, not as reads that failed.
    let report = audit_remote::fetch::verify_at(source, note, keys, None, options)
        .await
        .unwrap();
    assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
    for path in ["tile/0/000", "tile/1/000.p/1", "tile/0/001.p/44"] {
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains(path) && p.contains("longer than 8192 bytes")),
            "{path}: {:?}",
            report.problems
        );
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_source_reads_no_object_past_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (export, _) = export_of_300(dir.path()).await;
    std::fs::write(export.join("tile/0/000"), vec![7u8; 9000]).unwrap();
    let source =
        Arc::new(Source::parse(export.to_str().unwrap(), ClientSettings::default()).unwrap());
    let e = source.get("tile/0/000").await.map(|b| b.len()).unwrap_err();
    assert!(invalid_past(&e, 8192), "{e:?}");
    // A full bundle of 256 entries of 65,535 bytes is the most a bundle holds.
    let most = 256 * (2 + 65_535);
    std::fs::write(export.join("tile/entries/000"), vec![0u8; most]).unwrap();
    assert_eq!(source.get("tile/entries/000").await.unwrap().len(), most);
    std::fs::write(export.join("tile/entries/000"), vec![0u8; most + 1]).unwrap();
    let e = source
        .get("tile/entries/000")
        .await
        .map(|b| b.len())
        .unwrap_err();
    assert!(invalid_past(&e, most), "{e:?}");
    std::fs::write(export.join("checkpoint"), vec![b'a'; 200 << 10]).unwrap();
    let e = source.checkpoint().await.map(|b| b.len()).unwrap_err();
    assert!(invalid_past(&e, 131_072), "{e:?}");
}
