//! c2sp.org/tlog-tiles: "Logs MAY use `Content-Encoding: gzip` with no negotiation … Clients
//! SHOULD include `gzip` and `identity` in their `Accept-Encoding` headers." A static server
//! that gzips every tile whatever the request says: the HTTP source asks for both, hands back
//! the decoded bytes, and the whole log verifies through it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use audit_log::verify::VerifyOptions;
use audit_remote::fetch::verify_source;
use audit_remote::{ClientSettings, Source};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use testkit::audit::open_log;
use testkit::keys::log_signer;
use testkit::tiles::append_more;

/// What the server saw and serves.
#[derive(Clone)]
struct Served {
    /// The export directory.
    dir: PathBuf,
    /// Each request's path and `Accept-Encoding` (empty when absent).
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

/// A one-member gzip file (RFC 1952) of stored deflate blocks (RFC 1951 §3.2.4): valid for
/// every gzip decoder, with no compressor needed here.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(usize::from(u16::MAX)).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = u16::try_from(c.len()).unwrap();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

/// Serves the export; every tile and bundle gzipped with `Content-Encoding: gzip`, asked or not.
async fn serve(State(s): State<Served>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/').to_owned();
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    s.seen.lock().unwrap().push((path.clone(), accept));
    let Ok(bytes) = std::fs::read(s.dir.join(&path)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if path.starts_with("tile/") {
        ([(header::CONTENT_ENCODING, "gzip")], gzip_stored(&bytes)).into_response()
    } else {
        bytes.into_response()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_answers_are_decoded_even_unasked_and_both_encodings_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(&dir.path().join("log")).unwrap();
    append_more(&log, 300).await.unwrap();
    let export = dir.path().join("export");
    log.export_tiles(&export).unwrap();

    let served = Served {
        dir: export.clone(),
        seen: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(served.clone());
    let (addr, server) = testkit::http::serve(app).await.unwrap();

    let source =
        Arc::new(Source::parse(&format!("http://{addr}/"), ClientSettings::default()).unwrap());
    for path in ["tile/entries/001.p/44", "tile/0/000", "tile/1/000.p/1"] {
        let (got, want) = (
            source.get(path).await.unwrap(),
            std::fs::read(export.join(path)).unwrap(),
        );
        assert!(
            got == want,
            "{path}: {} bytes, want {}",
            got.len(),
            want.len()
        );
    }
    let options = VerifyOptions {
        threads: 2,
        incremental: false,
    };
    let (_, report) = verify_source(source, vec![log_signer().verifier()], None, options)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.size, 300);

    let seen = served.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|(p, _)| p == "tile/entries/000"),
        "{seen:?}"
    );
    for (path, accept) in &seen {
        assert_eq!(accept, "gzip, identity", "{path}");
    }
    server.abort();
}

#[test]
fn the_stored_gzip_helper_matches_a_known_answer() {
    // The trailer: CRC-32("abc") = 0x352441c2 and the size, both little-endian.
    let gz = gzip_stored(b"abc");
    assert_eq!(&gz[gz.len() - 8..], &[0xc2, 0x41, 0x24, 0x35, 3, 0, 0, 0]);
}
