//! ListEntries and Follow at the edges of their contract, over a real socket: page tokens bound
//! to the filter as parsed (an empty filter is no filter; a timestamp's nanos count), ranges cut
//! by `proof_tree_size`, and timestamps that are not well formed refused naming their field.

use anyhow::{Context, Result};
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

fn at(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
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
