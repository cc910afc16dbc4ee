//! c2sp.org/tlog-tiles: "Entry bundles SHOULD be compressed at the HTTP layer. Logs MAY use
//! `Content-Encoding: gzip` with no negotiation". Publication to a store that keeps metadata
//! stores bundles gzip-coded with that attribute (hash tiles and the checkpoint as they are);
//! everything that reads the store back decodes by the attribute, never by the bytes, so the
//! store verifies, copies and proves from directly or served over HTTP, a publication begun
//! raw by an older release is appended to and still verifies, and a bundle that merely starts
//! with gzip's magic is read as it is.

use std::sync::Arc;

use audit_log::TileId;
use audit_log::verify::{VerifyOptions, VerifyReport};
use audit_remote::fetch::{copy_to_dir, verify_at, verify_source};
use audit_remote::{ClientSettings, Publisher, Source, Target};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions};
use testkit::audit::open_log;
use testkit::keys::log_signer;
use testkit::tiles::{append_more, assert_same_tiles};

const PREFIX: &str = "logs/prod";

fn options() -> VerifyOptions {
    VerifyOptions {
        threads: 2,
        incremental: false,
    }
}

async fn verify(source: Source) -> VerifyReport {
    verify_source(
        Arc::new(source),
        vec![log_signer().verifier()],
        None,
        options(),
    )
    .await
    .unwrap()
    .1
}

/// Every object under the prefix: its path below it, stored bytes and attributes.
async fn objects(store: &InMemory) -> Vec<(String, Vec<u8>, Attributes)> {
    let metas: Vec<_> = store
        .list(Some(&Path::from(PREFIX)))
        .try_collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for m in metas {
        let got = store.get(&m.location).await.unwrap();
        let attributes = got.attributes.clone();
        let bytes = got.bytes().await.unwrap().to_vec();
        let rel = m.location.as_ref()[PREFIX.len() + 1..].to_owned();
        out.push((rel, bytes, attributes));
    }
    out
}

fn encoding(a: &Attributes) -> Option<&str> {
    a.get(&Attribute::ContentEncoding).map(|v| v.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bundles_are_stored_gzip_coded_and_read_back_by_their_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(&dir.path().join("log")).unwrap();
    append_more(&log, 1000).await.unwrap();
    let store = Arc::new(InMemory::new());
    let target = Target::from_store(store.clone(), PREFIX, true).unwrap();
    assert_eq!(
        Publisher::new(log.clone(), target.clone())
            .publish_once()
            .await
            .unwrap(),
        1000
    );

    let (mut raw_total, mut stored_total, mut bundles) = (0, 0, 0);
    for (rel, stored, attributes) in objects(&store).await {
        let cache = attributes.get(&Attribute::CacheControl).map(|v| v.as_ref());
        if rel == "checkpoint" {
            assert_eq!(encoding(&attributes), None);
            assert_eq!(stored, log.checkpoint().note.as_bytes());
            continue;
        }
        let id = TileId::parse(&rel).unwrap();
        let raw = log.tile(&id).unwrap();
        assert_eq!(
            attributes.get(&Attribute::ContentType).map(|v| v.as_ref()),
            Some("application/octet-stream"),
            "{rel}"
        );
        assert_eq!(cache, Some("public, max-age=31536000, immutable"), "{rel}");
        if rel.starts_with("tile/entries/") {
            assert_eq!(encoding(&attributes), Some("gzip"), "{rel}");
            assert!(stored.len() < raw.len(), "{rel}: {} bytes", stored.len());
            bundles += 1;
            raw_total += raw.len();
            stored_total += stored.len();
        } else {
            assert_eq!(encoding(&attributes), None, "{rel}");
            assert_eq!(stored, raw, "{rel}");
        }
    }
    assert!(bundles >= 4, "{bundles} bundles");
    println!(
        "entry bundles at 1000 entries: {raw_total} bytes raw, {stored_total} gzip-coded ({:.1}×)",
        raw_total as f64 / stored_total as f64
    );

    // Read back directly: verified, copied byte for byte as the export, proven from.
    let r = verify(Source::Store(target.clone())).await;
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.entries_valid, 1000);
    let source = Arc::new(Source::Store(target.clone()));
    let export = dir.path().join("export");
    log.export_tiles(&export).unwrap();
    let copy = dir.path().join("copy");
    copy_to_dir(&source, &copy, &[log_signer().verifier()])
        .await
        .unwrap();
    assert_same_tiles(&export, &copy, 1000);

    // Served over HTTP as a bucket website serves it (the stored bytes with their
    // Content-Encoding), the HTTP source decodes and verifies it too.
    let app = axum::Router::new()
        .fallback(serve_store)
        .with_state(store.clone());
    let (addr, server) = testkit::http::serve(app).await.unwrap();
    let http = Source::parse(
        &format!("http://{addr}/{PREFIX}/"),
        ClientSettings::default(),
    )
    .unwrap();
    let r = verify(http).await;
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.entries_valid, 1000);
    server.abort();
    log.close();
}

/// A bucket website: each object's stored bytes with its Content-Type and Content-Encoding.
async fn serve_store(State(store): State<Arc<InMemory>>, uri: Uri) -> Response {
    let path = Path::from(uri.path().trim_start_matches('/'));
    let Ok(got) = store.get(&path).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut headers = Vec::new();
    for (k, name) in [
        (Attribute::ContentEncoding, header::CONTENT_ENCODING),
        (Attribute::ContentType, header::CONTENT_TYPE),
    ] {
        if let Some(v) = got.attributes.get(&k) {
            headers.push((name, v.as_ref().to_owned()));
        }
    }
    let body = got.bytes().await.unwrap();
    let mut resp = body.into_response();
    for (name, v) in headers {
        resp.headers_mut().insert(name, v.parse().unwrap());
    }
    resp
}

/// A target published raw (a release before gzip-coded bundles, or a store without metadata)
/// and then appended to gzip-coded holds both kinds of bundle; it verifies, and a partial bundle
/// deleted from it is cut from a gzip-coded full one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_raw_publication_appended_to_gzip_coded_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(&dir.path().join("log")).unwrap();
    append_more(&log, 300).await.unwrap();
    let at_300 = log.checkpoint().note.clone();
    let store = Arc::new(InMemory::new());
    let raw = Target::from_store(store.clone(), PREFIX, false).unwrap();
    Publisher::new(log.clone(), raw)
        .publish_once()
        .await
        .unwrap();
    append_more(&log, 700).await.unwrap();
    let coded = Target::from_store(store.clone(), PREFIX, true).unwrap();
    assert_eq!(
        Publisher::new(log.clone(), coded.clone())
            .publish_once()
            .await
            .unwrap(),
        1000
    );
    let kinds: Vec<(String, Option<String>)> = objects(&store)
        .await
        .into_iter()
        .filter(|(rel, ..)| rel.starts_with("tile/entries/"))
        .map(|(rel, _, a)| (rel, encoding(&a).map(str::to_owned)))
        .collect();
    let of = |rel: &str| kinds.iter().find(|(r, _)| r == rel).map(|(_, e)| e.clone());
    assert_eq!(of("tile/entries/000"), Some(None), "{kinds:?}");
    assert_eq!(of("tile/entries/001.p/44"), Some(None), "{kinds:?}");
    assert_eq!(
        of("tile/entries/001"),
        Some(Some("gzip".into())),
        "{kinds:?}"
    );
    let r = verify(Source::Store(coded.clone())).await;
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.entries_valid, 1000);

    // The checkpoint at 300 once its partial bundle is gone: cut from the gzip-coded full one.
    store
        .delete(&Path::from(format!("{PREFIX}/tile/entries/001.p/44")))
        .await
        .unwrap();
    let report = verify_at(
        Arc::new(Source::Store(coded)),
        at_300,
        vec![log_signer().verifier()],
        None,
        options(),
    )
    .await
    .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries_valid, 300);
    log.close();
}

/// A bundle whose first entry is 8,075 bytes long begins with 1f 8b, gzip's magic number.
/// Stored raw (no attribute) it is read as it is; stored gzip-coded it is decoded once.
#[tokio::test]
async fn a_bundle_that_starts_with_gzip_magic_is_read_as_its_attribute_says() {
    let mut bundle = 8075u16.to_be_bytes().to_vec();
    bundle.extend(std::iter::repeat_n(b' ', 8075));
    assert_eq!(&bundle[..2], &[0x1f, 0x8b]);
    let store = Arc::new(InMemory::new());
    let target = Target::from_store(store.clone(), PREFIX, true).unwrap();
    store
        .put(
            &Path::from(format!("{PREFIX}/tile/entries/000.p/1")),
            bundle.clone().into(),
        )
        .await
        .unwrap();
    let got = target.get("tile/entries/000.p/1").await.unwrap();
    assert!(got[..] == bundle[..], "{} bytes", got.len());

    // Published through the target: gzip-coded in the store, the same bytes read back.
    target
        .put(
            "tile/entries/001.p/1",
            bundle.clone().into(),
            audit_remote::Lifetime::Immutable,
        )
        .await
        .unwrap();
    let stored = store
        .get(&Path::from(format!("{PREFIX}/tile/entries/001.p/1")))
        .await
        .unwrap();
    assert_eq!(encoding(&stored.attributes), Some("gzip"));
    assert!(stored.bytes().await.unwrap().len() < 200);
    let got = target.get("tile/entries/001.p/1").await.unwrap();
    assert!(got[..] == bundle[..], "{} bytes", got.len());

    // A gzip coding put with the attribute by someone else is decoded too, once.
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentEncoding, "gzip".into());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bundle).unwrap();
    store
        .put_opts(
            &Path::from(format!("{PREFIX}/tile/entries/002.p/1")),
            gz.finish().unwrap().into(),
            PutOptions {
                attributes,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let got = target.get("tile/entries/002.p/1").await.unwrap();
    assert!(got[..] == bundle[..], "{} bytes", got.len());
}
