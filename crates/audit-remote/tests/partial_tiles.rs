//! c2sp.org/tlog-tiles: "Logs MUST serve partial tiles corresponding to tree sizes for which a
//! checkpoint was produced, but MAY delete any partial tile once the corresponding full tile is
//! available". A source whose checkpoint is older than its full tiles, its partial tiles
//! deleted: the copy and a tlog-proof cut them from the full tiles.

use audit_log::tile_id::tiles_of_size;
use audit_log::{DirReader, TileId};
use audit_remote::fetch::{copy_to_dir, tlog_proof_from_tiles};
use audit_remote::{ClientSettings, Source};
use testkit::audit::open_log;
use testkit::tiles::append_more;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_partial_tiles_are_cut_from_their_full_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(&dir.path().join("log")).unwrap();
    append_more(&log, 300).await.unwrap();
    let at_300 = log.checkpoint().note.clone();
    let want = dir.path().join("want");
    log.export_tiles(&want).unwrap();
    append_more(&log, 300).await.unwrap();
    // The log at 600 entries serves the checkpoint at 300: of that size's partial tiles it
    // keeps only tile/1/000.p/1, whose full tile does not exist yet.
    let src = dir.path().join("src");
    log.export_tiles(&src).unwrap();
    log.close();
    let kept = TileId::hash(1, 0, 1).path();
    std::fs::copy(want.join(&kept), src.join(&kept)).unwrap();
    std::fs::write(src.join("checkpoint"), &at_300).unwrap();
    for gone in ["tile/0/001.p/44", "tile/entries/001.p/44"] {
        assert!(!src.join(gone).exists(), "{gone}");
    }

    let source = Source::parse(src.to_str().unwrap(), ClientSettings::default()).unwrap();
    let copy = dir.path().join("copy");
    let s = copy_to_dir(&source, &copy).await.unwrap();
    assert_eq!(s.size, 300);
    for id in tiles_of_size(300) {
        let p = id.path();
        assert_eq!(
            std::fs::read(want.join(&p)).unwrap(),
            std::fs::read(copy.join(&p)).unwrap(),
            "{p}"
        );
    }
    // Entry 299 is in the deleted bundle tile/entries/001.p/44.
    let proof = tlog_proof_from_tiles(&DirReader(&src), &at_300, 299).unwrap();
    assert_eq!(proof.index, 299);
    assert_eq!(proof.checkpoint_note, at_300);
}
