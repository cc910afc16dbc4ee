//! c2sp.org/tlog-tiles: "Logs MUST serve partial tiles corresponding to tree sizes for which a
//! checkpoint was produced, but MAY delete any partial tile once the corresponding full tile is
//! available". A source whose checkpoint is older than its full tiles, its partial tiles
//! deleted: the copy and a tlog-proof cut them from the full tiles.

use audit_log::tile_id::tiles_of_size;
use audit_log::{DirReader, TileId};
use audit_remote::fetch::{copy_to_dir, tlog_proof_from_tiles};
use audit_remote::{ClientSettings, Publisher, Source, Target};
use testkit::audit::open_log;
use testkit::keys::log_signer;
use testkit::tiles::{append_more, assert_same_tiles};

/// A log at 600 entries exported to `DIR/src` serving its checkpoint at 300 (returned): of
/// that size's partial tiles it keeps only tile/1/000.p/1, whose full tile does not exist
/// yet. `DIR/want` is the export at 300, every tile there.
async fn at_300_partials_deleted(dir: &std::path::Path) -> String {
    let log = open_log(&dir.join("log")).unwrap();
    append_more(&log, 300).await.unwrap();
    let at_300 = log.checkpoint().note.clone();
    let want = dir.join("want");
    log.export_tiles(&want).unwrap();
    append_more(&log, 300).await.unwrap();
    let src = dir.join("src");
    log.export_tiles(&src).unwrap();
    log.close();
    let kept = TileId::hash(1, 0, 1).path();
    std::fs::copy(want.join(&kept), src.join(&kept)).unwrap();
    std::fs::write(src.join("checkpoint"), &at_300).unwrap();
    for gone in ["tile/0/001.p/44", "tile/entries/001.p/44"] {
        assert!(!src.join(gone).exists(), "{gone}");
    }
    at_300
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_partial_tiles_are_cut_from_their_full_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let at_300 = at_300_partials_deleted(dir.path()).await;
    let (src, want) = (dir.path().join("src"), dir.path().join("want"));

    let source = std::sync::Arc::new(
        Source::parse(src.to_str().unwrap(), ClientSettings::default()).unwrap(),
    );
    let copy = dir.path().join("copy");
    let s = copy_to_dir(&source, &copy, &[log_signer().verifier()])
        .await
        .unwrap();
    assert_eq!(s.size, 300);
    assert_same_tiles(&want, &copy, 300);
    // Entry 299 is in the deleted bundle tile/entries/001.p/44.
    let proof =
        tlog_proof_from_tiles(&DirReader(&src), &at_300, &[log_signer().verifier()], 299).unwrap();
    assert_eq!(proof.index, 299);
    assert_eq!(proof.checkpoint_note, at_300);
}

/// The same over HTTP from a static bucket whose anonymous readers may not list it: S3 then
/// answers a GET of a missing object 403 AccessDenied, not 404. The deleted partial tiles are
/// still cut from their full tiles; a tile missing altogether stays an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_answering_403_for_a_deleted_partial_tile_is_read_from_the_full_one() {
    use axum::http::{StatusCode, Uri};
    let dir = tempfile::tempdir().unwrap();
    let at_300 = at_300_partials_deleted(dir.path()).await;
    let src = dir.path().join("src");
    let kept = TileId::hash(1, 0, 1).path();
    let root = src.clone();
    let bucket = axum::Router::new().fallback(move |uri: Uri| {
        let path = root.join(uri.path().trim_start_matches('/'));
        async move {
            match std::fs::read(&path) {
                Ok(body) => (StatusCode::OK, body),
                Err(_) => (
                    StatusCode::FORBIDDEN,
                    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
                        .to_vec(),
                ),
            }
        }
    });
    let (addr, _server) = testkit::http::serve(bucket).await.unwrap();
    let url = format!("http://{addr}/");
    let source = std::sync::Arc::new(Source::parse(&url, ClientSettings::default()).unwrap());
    let copy = dir.path().join("copy");
    let s = copy_to_dir(&source, &copy, &[log_signer().verifier()])
        .await
        .unwrap();
    assert_eq!(s.size, 300);
    assert!(missing_tiles(&copy, 300).is_empty());
    // The verifier reads the bucket the same way (it failed on the 403).
    let options = audit_log::verify::VerifyOptions {
        threads: 2,
        incremental: false,
    };
    let report = audit_remote::fetch::verify_at(
        source.clone(),
        at_300,
        vec![log_signer().verifier()],
        None,
        options,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries_valid, 300);
    // A partial tile missing with no full tile to cut it from is the error it was.
    std::fs::remove_file(src.join(&kept)).unwrap();
    let again = dir.path().join("again");
    let e = copy_to_dir(&source, &again, &[log_signer().verifier()])
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|m| m.contains("403") && m.contains(&kept)),
        "{e:?}"
    );
}

/// Whether a reader that never cuts a full tile finds every tile of a checkpoint of `size` in
/// `dir`: each is there, or it is a partial one whose full tile is there (a log may delete it
/// then). Returns what is missing.
fn missing_tiles(dir: &std::path::Path, size: u64) -> Vec<String> {
    tiles_of_size(size)
        .filter(|id| {
            let full = TileId { width: 256, ..*id };
            !dir.join(id.path()).exists() && !dir.join(full.path()).exists()
        })
        .map(|id| id.path())
        .collect()
}

/// c2sp.org/tlog-tiles: the partial tiles of every tree size the log signed a checkpoint for,
/// not only of the sizes a publication round (or an export) was made at. A checkpoint from a
/// witness or the gRPC API is of any size the log signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signed_checkpoint_finds_its_partial_tiles_in_the_copies() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(&dir.path().join("log")).unwrap();
    let bucket = dir.path().join("bucket");
    let target = Target::parse(bucket.to_str().unwrap(), true).unwrap();
    let publisher = Publisher::new(log.clone(), target);
    // One append at a time, so every size is a signed checkpoint; publication rounds at three
    // of them only (level-1 tile 0 grows from 1 to 2 hashes between the last two).
    let mut notes = vec![String::new()];
    for i in 0..530u64 {
        let appended = log
            .append_fields(&testkit::audit::sample_fields(i))
            .await
            .unwrap();
        assert_eq!(appended.checkpoint.checkpoint.size, i + 1);
        notes.push(appended.checkpoint.note.clone());
        if [100, 260, 300].contains(&(i + 1)) {
            assert_eq!(publisher.publish_once().await.unwrap(), i + 1);
        }
    }
    assert_eq!(publisher.publish_once().await.unwrap(), 530);
    let export = dir.path().join("export");
    log.export_tiles(&export).unwrap();
    log.close();
    let keys = [log_signer().verifier()];
    for copy in [&bucket, &export] {
        for size in 1..=530u64 {
            let missing = missing_tiles(copy, size);
            assert!(missing.is_empty(), "{copy:?} at {size}: {missing:?}");
            let seq = size - 1;
            let proof = tlog_proof_from_tiles(&DirReader(copy), &notes[size as usize], &keys, seq)
                .unwrap_or_else(|e| panic!("{copy:?} at {size}: {e}"));
            assert_eq!(
                (proof.index, &proof.checkpoint_note),
                (seq, &notes[size as usize])
            );
        }
        // Sizes 256..=511 hold one level-1 hash; at 530 that tile holds two.
        assert!(copy.join("tile/1/000.p/1").exists());
    }
    // Sizes 257..=259 were never published; the round at 260 uploaded their partial tiles (a
    // log may delete them once tile 1 is full, as it is at 530; the export has no need to).
    assert!(bucket.join("tile/0/001.p/2").exists());
    assert!(bucket.join("tile/entries/001.p/3").exists());
    assert!(!export.join("tile/0/001.p/2").exists());
}
