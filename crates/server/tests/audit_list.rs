//! ListEntries and Follow at the edges of their contract, over a real socket: page tokens bound
//! to the filter as parsed (an empty filter is no filter; a timestamp's nanos count), ranges cut
//! by `proof_tree_size`, a listing bound to the tree its first page found, and timestamps that
//! are not well formed refused naming their field.

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use onboard_proto::v1::audit_client::AuditClient;
use serde_json::json;
use testkit::server::{AUDITOR, Authed, TestServer, append, bad_fields};
use testkit::server_helpers::Refusal;
use tonic::Code;

/// A server with twelve entries, and an auditor's client.
async fn seeded() -> Result<(TestServer, AuditClient<Authed>)> {
    let s = TestServer::start().await?;
    for i in 0..12 {
        append(
            &s.app,
            json!({"action": "secret.add", "actor": "portal", "tenant_id": format!("t-{i}")}),
        )
        .await?;
    }
    let c = s.audit(Some(AUDITOR)).await?;
    Ok((s, c))
}

fn seqs(r: &pb::ListEntriesResponse) -> Vec<u64> {
    r.entries.iter().map(|e| e.seq).collect()
}

fn at(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

/// The Unix time now, in seconds.
fn now() -> Result<i64> {
    Ok(i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?)
}

/// A generated client may always send the filter message: an empty `EntryFilter` is no filter,
/// so a token from either continues the other. A timestamp's nanos are part of the filter: a
/// token from `since = t` does not continue `since = t + 5 ns`.
#[tokio::test]
async fn page_tokens_are_bound_to_the_filter_as_parsed() -> Result<()> {
    let (s, mut c) = seeded().await?;
    let list = |filter: Option<pb::EntryFilter>, page_token: String| pb::ListEntriesRequest {
        to_seq: 12,
        filter,
        page_size: 2,
        page_token,
        ..Default::default()
    };
    let empty = || Some(pb::EntryFilter::default());
    let first = c
        .list_entries(list(None, String::new()))
        .await?
        .into_inner();
    assert_eq!(seqs(&first), [0, 1]);
    let second = c
        .list_entries(list(empty(), first.next_page_token))
        .await?
        .into_inner();
    assert_eq!(seqs(&second), [2, 3]);
    let third = c
        .list_entries(list(None, second.next_page_token))
        .await?
        .into_inner();
    assert_eq!(seqs(&third), [4, 5]);

    let since = now()? - 600;
    let from = |nanos| {
        Some(pb::EntryFilter {
            since: at(since, nanos),
            ..Default::default()
        })
    };
    let page = c
        .list_entries(list(from(0), String::new()))
        .await?
        .into_inner();
    assert_eq!(seqs(&page), [0, 1]);
    let token = page.next_page_token;
    let same = c.list_entries(list(from(0), token.clone())).await?;
    assert_eq!(seqs(same.get_ref()), [2, 3]);
    let e = c
        .list_entries(list(from(5), token))
        .refused(Code::InvalidArgument, &["page_token"])
        .await?;
    assert_eq!(bad_fields(&e), ["page_token"]);
    s.stop().await
}

/// With proofs the range ends at `proof_tree_size`; a range reversed as requested is
/// INVALID_ARGUMENT on `from_seq`, one starting at or after the proof tree is OUT_OF_RANGE
/// naming `from_seq` and the size, and `tree_size` is never below the range served; a range
/// starting past the log's end is OUT_OF_RANGE, one starting at its end an empty page.
#[tokio::test]
async fn ranges_cut_by_the_proof_tree_size() -> Result<()> {
    let (s, mut c) = seeded().await?;
    let proofs = |from_seq, to_seq, proof_tree_size| pb::ListEntriesRequest {
        from_seq,
        to_seq,
        with_proofs: true,
        proof_tree_size,
        ..Default::default()
    };
    for (from, to) in [(7, 10), (5, 10), (5, 0)] {
        c.list_entries(proofs(from, to, 5))
            .refused(Code::OutOfRange, &["from_seq", "proof_tree_size", "5"])
            .await
            .with_context(|| format!("[{from}, {to}) against 5"))?;
    }
    let e = c
        .list_entries(proofs(4, 2, 5))
        .refused(Code::InvalidArgument, &["from_seq"])
        .await?;
    assert_eq!(bad_fields(&e), ["from_seq"]);
    // A range that reaches past the proof tree ends at it, every entry with its proof.
    let page = c.list_entries(proofs(2, 10, 5)).await?.into_inner();
    assert_eq!(seqs(&page), [2, 3, 4]);
    for e in &page.entries {
        let p = e.inclusion_proof.as_ref().context("proof")?;
        assert_eq!(p.tree_size, 5);
    }
    ensure!(page.tree_size >= 5, "{}", page.tree_size);
    // An empty range asks for nothing: an empty page, not an error.
    let empty = c.list_entries(proofs(5, 5, 5)).await?.into_inner();
    ensure!(empty.entries.is_empty() && empty.next_page_token.is_empty());
    // Without proofs, `tree_size` is the end of the range when `to_seq` is 0.
    let all = c
        .list_entries(pb::ListEntriesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    let last = all.entries.last().context("entries")?.seq;
    assert_eq!(all.tree_size, last + 1);
    // From the end: what came since (the audited calls themselves). Past it: OUT_OF_RANGE, as
    // Follow answers.
    let at_end = pb::ListEntriesRequest {
        from_seq: all.tree_size,
        ..Default::default()
    };
    let tail = c.list_entries(at_end.clone()).await?.into_inner();
    ensure!(seqs(&tail).iter().all(|&s| s >= all.tree_size), "{tail:?}");
    let past = pb::ListEntriesRequest {
        from_seq: tail.tree_size + 1000,
        ..at_end
    };
    c.list_entries(past)
        .refused(
            Code::OutOfRange,
            &["from_seq", "beyond the latest checkpoint"],
        )
        .await?;
    s.stop().await
}

/// A listing of "up to the latest checkpoint" (`to_seq` and `proof_tree_size` 0) pages through
/// the log as its first page found it, one entry a page: it ends although each page appends
/// its own `audit.read` entry, every page names the same `tree_size`, and every proof is
/// against that one tree. A token naming a tree larger than the log is refused.
#[tokio::test]
async fn a_listing_pages_through_the_log_as_its_first_page_found_it() -> Result<()> {
    let (s, mut c) = seeded().await?;
    let list = |page_token: String| pb::ListEntriesRequest {
        page_size: 1,
        with_proofs: true,
        page_token,
        ..Default::default()
    };
    let first = c.list_entries(list(String::new())).await?.into_inner();
    let size = first.tree_size;
    let second = first.next_page_token.clone();
    let (mut seen, mut token, mut pages) = (seqs(&first), first.next_page_token, 1);
    while !token.is_empty() {
        ensure!(
            pages <= size,
            "{pages} pages for {size} entries: the listing does not end"
        );
        let page = c.list_entries(list(token)).await?.into_inner();
        assert_eq!(
            page.tree_size, size,
            "every page names the first page's tree"
        );
        for e in &page.entries {
            let p = e.inclusion_proof.as_ref().context("proof")?;
            assert_eq!(p.tree_size, size, "entry {}", e.seq);
        }
        seen.extend(seqs(&page));
        token = page.next_page_token;
        pages += 1;
    }
    assert_eq!(seen, (0..size).collect::<Vec<_>>());
    ensure!(
        s.app.audit().size() > size + 1,
        "the pages were recorded meanwhile"
    );
    // A token is a position in one listing: a tree the log does not have yet is not one.
    let larger = format!("-{}.", s.app.audit().size() + 10);
    let forged = second.replace(&format!("-{size}."), &larger);
    ensure!(forged != second, "{second}");
    let e = c
        .list_entries(list(forged))
        .refused(Code::InvalidArgument, &["page_token"])
        .await?;
    assert_eq!(bad_fields(&e), ["page_token"]);
    s.stop().await
}

/// Timestamps a client could not have made from a valid instant (nanos outside
/// 0..=999,999,999, or before 0001-01-01 or after 9999-12-31) are INVALID_ARGUMENT naming the
/// field, in ListEntries and in Follow; the bounds themselves are accepted.
#[tokio::test]
async fn timestamps_that_are_not_well_formed_name_their_field() -> Result<()> {
    let (s, mut c) = seeded().await?;
    const FIRST: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let since = |t| pb::EntryFilter {
        since: t,
        ..Default::default()
    };
    let until = |t| pb::EntryFilter {
        until: t,
        ..Default::default()
    };
    let bad = [
        (since(at(0, 1_000_000_000)), "filter.since"),
        (since(at(0, -1)), "filter.since"),
        (since(at(FIRST - 1, 0)), "filter.since"),
        (until(at(LAST + 1, 0)), "filter.until"),
        (until(at(LAST, i32::MAX)), "filter.until"),
        (until(at(i64::MIN, 0)), "filter.until"),
    ];
    for (filter, field) in bad {
        let what = format!("{filter:?}");
        let list = pb::ListEntriesRequest {
            filter: Some(filter.clone()),
            ..Default::default()
        };
        let e = c
            .list_entries(list)
            .refused(Code::InvalidArgument, &[field])
            .await
            .context(what.clone())?;
        assert_eq!(bad_fields(&e), [field], "{what}");
        let follow = pb::FollowRequest {
            from_seq: 0,
            filter: Some(filter),
        };
        let e = c
            .follow(follow)
            .refused(Code::InvalidArgument, &[field])
            .await
            .context(what.clone())?;
        assert_eq!(bad_fields(&e), [field], "{what}");
    }
    let bounds = pb::EntryFilter {
        since: at(FIRST, 0),
        until: at(LAST, 999_999_999),
        ..Default::default()
    };
    let all = c
        .list_entries(pb::ListEntriesRequest {
            to_seq: 12,
            filter: Some(bounds),
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(all.entries.len(), 12);
    s.stop().await
}

/// Entries of up to 64 KiB with a `page_size` of 1000: a page ends before it outgrows the 4 MiB
/// message limit and carries a token; the pages together hold every entry once, in order.
#[tokio::test]
async fn a_page_of_large_entries_is_cut_to_fit_one_message() -> Result<()> {
    let s = TestServer::start().await?;
    let big = "x".repeat(60 * 1024);
    let n = 100u64;
    for i in 0..n {
        append(
            &s.app,
            json!({"action": "secret.add", "actor": "portal", "tenant_id": format!("t-{i}"), "note": big}),
        )
        .await?;
    }
    let mut c = s.audit(Some(AUDITOR)).await?;
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = c
            .list_entries(pb::ListEntriesRequest {
                to_seq: n,
                page_size: 1000,
                with_proofs: true,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        let bytes = prost::Message::encoded_len(&page);
        ensure!(bytes <= 4 * 1024 * 1024, "a page of {bytes} bytes");
        ensure!(!page.entries.is_empty(), "a page without entries");
        seen.extend(seqs(&page));
        pages += 1;
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    ensure!(seen == (0..n).collect::<Vec<_>>(), "{seen:?}");
    ensure!(pages >= 2, "{pages} page(s) for 6 MB of entries");
    Ok(())
}
