//! The Audit service over a real socket with bearer tokens: every RPC, proofs checked with the
//! audit-log crate's RFC 9162 verifiers, filters, paging, Follow, and reads being audited.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use audit_log::merkle::{verify_consistency, verify_inclusion};
use audit_log::{Hash, NoteVerifier, SignedCheckpoint, leaf_hash};
use onboard_proto::v1 as pb;
use onboard_proto::v1::audit_client::AuditClient;
use serde_json::json;
use testkit::keys::ORIGIN;
use testkit::server::{ADMIN, AUDITOR, Authed, OPERATOR, TestServer, append, bad_fields};
use testkit::server_helpers::Refused;
use tokio_stream::StreamExt;
use tonic::{Code, Status};

fn hash(b: &[u8]) -> Result<Hash> {
    b.try_into().context("not 32 bytes")
}

fn hashes(v: &[Vec<u8>]) -> Result<Vec<Hash>> {
    v.iter().map(|h| hash(h)).collect()
}

/// Seeds entries for two tenants.
async fn seed(s: &TestServer) -> Result<()> {
    for i in 0..5 {
        let tenant = if i % 2 == 0 { "t-even" } else { "t-odd" };
        append(
            &s.app,
            json!({"action": "app_registration.create", "phase": "succeeded", "actor": "portal",
                   "tenant_id": tenant, "onboarding_id": format!("ob-{i}")}),
        )
        .await?;
    }
    append(
        &s.app,
        json!({"action": "secret.add", "actor": "portal", "tenant_id": "t-odd"}),
    )
    .await?;
    Ok(())
}

/// A server with the seeded entries, and an auditor's client.
async fn seeded() -> Result<(TestServer, AuditClient<Authed>)> {
    let s = TestServer::start().await?;
    seed(&s).await?;
    let c = s.audit(Some(AUDITOR)).await?;
    Ok((s, c))
}

#[tokio::test]
async fn checkpoint_and_keys_verify_and_proofs_check_out() -> Result<()> {
    let (s, mut c) = seeded().await?;

    let keys = c
        .get_verifier_keys(pb::GetVerifierKeysRequest {})
        .await?
        .into_inner();
    assert_eq!(keys.origin, ORIGIN);
    let verifiers: Vec<NoteVerifier> = keys
        .keys
        .iter()
        .map(|k| NoteVerifier::parse(k))
        .collect::<Result<_, _>>()?;
    ensure!(verifiers.len() == 1);

    let cp1 = c
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await?
        .into_inner();
    let opened = SignedCheckpoint::open(std::str::from_utf8(&cp1.note)?, &verifiers)?;
    assert_eq!(opened.checkpoint.size, cp1.size);
    assert_eq!(opened.checkpoint.root.to_vec(), cp1.root_hash);
    assert_eq!(cp1.origin, ORIGIN);
    // Six seeded entries, then the reads of GetVerifierKeys and GetCheckpoint.
    assert_eq!(cp1.size, 8);
    let root1 = hash(&cp1.root_hash)?;

    // Every entry with a proof against the signed root.
    let page = c
        .list_entries(pb::ListEntriesRequest {
            with_proofs: true,
            proof_tree_size: cp1.size,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(page.entries.len(), 8);
    for e in &page.entries {
        let lh = leaf_hash(&e.leaf);
        assert_eq!(e.leaf_hash, lh.to_vec());
        let p = e.inclusion_proof.as_ref().context("proof")?;
        assert_eq!(p.tree_size, cp1.size);
        verify_inclusion(e.seq, cp1.size, &lh, &hashes(&p.hashes)?, &root1)?;
    }

    // One proof by RPC, and a tampered leaf fails it.
    let p = c
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            seq: 3,
            tree_size: cp1.size,
        })
        .await?
        .into_inner();
    let leaf3 = &page.entries[3].leaf;
    verify_inclusion(3, cp1.size, &leaf_hash(leaf3), &hashes(&p.hashes)?, &root1)?;
    assert_eq!(p.root_hash, cp1.root_hash);
    let mut forged = leaf3.clone();
    forged[2] ^= 1;
    ensure!(
        verify_inclusion(
            3,
            cp1.size,
            &leaf_hash(&forged),
            &hashes(&p.hashes)?,
            &root1
        )
        .is_err()
    );

    // The log grows; the new signed checkpoint is consistent with the old one.
    append(&s.app, json!({"action": "role.assign", "actor": "portal"})).await?;
    let cp2 = c
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await?
        .into_inner();
    SignedCheckpoint::open(std::str::from_utf8(&cp2.note)?, &verifiers)?;
    let cons = c
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            first_size: cp1.size,
            second_size: cp2.size,
        })
        .await?
        .into_inner();
    assert_eq!(cons.first_root_hash, cp1.root_hash);
    assert_eq!(cons.second_root_hash, cp2.root_hash);
    verify_consistency(
        cp1.size,
        cp2.size,
        &cp1.root_hash,
        &cp2.root_hash,
        &hashes(&cons.hashes)?,
    )?;
    ensure!(
        verify_consistency(
            cp1.size,
            cp2.size,
            &cp2.root_hash,
            &cp2.root_hash,
            &hashes(&cons.hashes)?
        )
        .is_err()
    );
    // Admins may read too.
    s.audit(Some(ADMIN))
        .await?
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await?;
    s.stop().await
}

#[tokio::test]
async fn list_entries_filters_and_pages() -> Result<()> {
    let (s, mut c) = seeded().await?;
    let list =
        |filter: pb::EntryFilter, page_size: u32, page_token: String| pb::ListEntriesRequest {
            filter: Some(filter),
            page_size,
            page_token,
            ..Default::default()
        };
    let seqs = |r: &pb::ListEntriesResponse| r.entries.iter().map(|e| e.seq).collect::<Vec<_>>();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let ts = |s: i64| {
        Some(prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        })
    };
    let filter = pb::EntryFilter::default;
    // (what, the filter, the seqs it matches)
    let cases: Vec<(&str, pb::EntryFilter, Vec<u64>)> = vec![
        (
            "a tenant",
            pb::EntryFilter {
                tenant_id: "t-odd".into(),
                ..filter()
            },
            vec![1, 3, 5],
        ),
        (
            "an onboarding",
            pb::EntryFilter {
                onboarding_id: "ob-2".into(),
                ..filter()
            },
            vec![2],
        ),
        // An action prefix up to a dot matches; a partial word does not.
        (
            "an action prefix",
            pb::EntryFilter {
                action: "secret".into(),
                ..filter()
            },
            vec![5],
        ),
        (
            "a partial word",
            pb::EntryFilter {
                action: "secr".into(),
                ..filter()
            },
            vec![],
        ),
        // A time window in the future matches nothing; one around now the seeded entries.
        (
            "the future",
            pb::EntryFilter {
                since: ts(now + 3600),
                ..filter()
            },
            vec![],
        ),
        (
            "a tenant around now",
            pb::EntryFilter {
                tenant_id: "t-even".into(),
                since: ts(now - 600),
                until: ts(now + 600),
                ..filter()
            },
            vec![0, 2, 4],
        ),
    ];
    for (what, f, want) in cases {
        let got = c
            .list_entries(list(f, 0, String::new()))
            .await?
            .into_inner();
        assert_eq!(seqs(&got), want, "{what}");
    }

    // Pages of two over the action filter, followed to the end; a token continues only the
    // request it came from (AIP-158): with another filter it is refused.
    let mut got = Vec::new();
    let mut token = String::new();
    let mut refused_elsewhere = 0;
    loop {
        let page = c
            .list_entries(list(
                pb::EntryFilter {
                    action: "app_registration".into(),
                    ..Default::default()
                },
                2,
                token,
            ))
            .await?
            .into_inner();
        ensure!(page.entries.len() <= 2);
        got.extend(seqs(&page));
        if page.next_page_token.is_empty() {
            break;
        }
        let elsewhere = list(filter(), 2, page.next_page_token.clone());
        c.list_entries(elsewhere)
            .await
            .refused(Code::InvalidArgument, &["page_token"])?;
        refused_elsewhere += 1;
        token = page.next_page_token;
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert_eq!(refused_elsewhere, 2);

    // An explicit range.
    let range = c
        .list_entries(pb::ListEntriesRequest {
            from_seq: 2,
            to_seq: 4,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(seqs(&range), [2, 3]);
    s.stop().await
}

#[tokio::test]
async fn reads_are_audit_entries_naming_actor_rpc_and_range() -> Result<()> {
    let (s, mut c) = seeded().await?;
    c.list_entries(pb::ListEntriesRequest {
        from_seq: 1,
        to_seq: 3,
        ..Default::default()
    })
    .await?;
    c.get_inclusion_proof(pb::GetInclusionProofRequest {
        seq: 0,
        tree_size: 0,
    })
    .await?;
    // The seeded entries are free-form; the server's own read entries follow the schema.
    let reads = s.entries_with_action("audit.read")?;
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[0]["actor"], "auditor-1");
    assert_eq!(reads[0]["rpc"], "ListEntries");
    assert_eq!(reads[0]["request"]["from_seq"], 1);
    assert_eq!(reads[0]["request"]["to_seq"], 3);
    assert_eq!(reads[1]["rpc"], "GetInclusionProof");
    assert_eq!(reads[1]["request"]["seq"], 0);
    // A refused read is not answered and leaves no read entry behind.
    let before = s.app.audit().size();
    let e = s
        .audit(Some(OPERATOR))
        .await?
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await;
    assert_eq!(e.err().map(|e| e.code()), Some(Code::PermissionDenied));
    assert_eq!(s.app.audit().size(), before);
    s.stop().await
}

/// The next streamed entry, failing after ten seconds.
async fn next(stream: &mut tonic::Streaming<pb::Entry>) -> Result<pb::Entry> {
    Ok(tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .context("timed out")?
        .context("stream ended")??)
}

#[tokio::test]
async fn follow_replays_then_streams_new_entries() -> Result<()> {
    let (s, mut c) = seeded().await?;
    let mut stream = c
        .follow(pb::FollowRequest {
            from_seq: 4,
            filter: None,
        })
        .await?
        .into_inner();
    // Replay: 4, 5, then the Follow call's own read entry (6).
    assert_eq!(next(&mut stream).await?.seq, 4);
    assert_eq!(next(&mut stream).await?.seq, 5);
    let own = next(&mut stream).await?;
    assert_eq!(own.seq, 6);
    let v: serde_json::Value = serde_json::from_slice(&own.leaf)?;
    assert_eq!(v["rpc"], "Follow");
    // Live.
    let seq = append(
        &s.app,
        json!({"action": "secret.remove", "actor": "portal"}),
    )
    .await?;
    let live = next(&mut stream).await?;
    assert_eq!(live.seq, seq);
    assert_eq!(live.leaf_hash, leaf_hash(&live.leaf).to_vec());

    // A filtered follower sees only what matches.
    let mut filtered = c
        .follow(pb::FollowRequest {
            from_seq: 0,
            filter: Some(pb::EntryFilter {
                action: "secret".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert_eq!(next(&mut filtered).await?.seq, 5);
    assert_eq!(next(&mut filtered).await?.seq, seq);
    let seq2 = append(&s.app, json!({"action": "secret.add", "actor": "portal"})).await?;
    assert_eq!(next(&mut filtered).await?.seq, seq2);
    s.stop().await
}

/// A call the Audit service must refuse.
enum Call {
    Inclusion(pb::GetInclusionProofRequest),
    Consistency(pb::GetConsistencyProofRequest),
    List(pb::ListEntriesRequest),
    Follow(pb::FollowRequest),
}

impl Call {
    /// The status the call is refused with; an error if it is answered.
    async fn refusal(self, c: &mut AuditClient<Authed>) -> Result<Status> {
        let answer = match self {
            Call::Inclusion(r) => c.get_inclusion_proof(r).await.map(drop),
            Call::Consistency(r) => c.get_consistency_proof(r).await.map(drop),
            Call::List(r) => c.list_entries(r).await.map(drop),
            Call::Follow(r) => c.follow(r).await.map(drop),
        };
        answer.err().context("ok")
    }
}

#[tokio::test]
async fn bad_sizes_and_ranges_name_the_field() -> Result<()> {
    let (s, mut c) = seeded().await?;
    let far = 1_000_000;
    let inclusion =
        |seq, tree_size| Call::Inclusion(pb::GetInclusionProofRequest { seq, tree_size });
    let consistency = |first_size, second_size| {
        Call::Consistency(pb::GetConsistencyProofRequest {
            first_size,
            second_size,
        })
    };
    let list = pb::ListEntriesRequest::default;
    let (out_of_range, invalid) = (Code::OutOfRange, Code::InvalidArgument);
    // (the call, its code, the fields it names, a word its message has)
    let cases: Vec<(Call, Code, &[&str], &str)> = vec![
        (inclusion(0, far), out_of_range, &[], "tree_size"),
        (inclusion(3, 3), invalid, &["seq"], ""),
        (consistency(0, 3), invalid, &["first_size"], ""),
        (consistency(4, 3), invalid, &["first_size"], ""),
        (consistency(1, far), out_of_range, &[], ""),
        (
            Call::List(pb::ListEntriesRequest {
                to_seq: far,
                ..list()
            }),
            out_of_range,
            &[],
            "",
        ),
        (
            Call::List(pb::ListEntriesRequest {
                from_seq: 4,
                to_seq: 2,
                ..list()
            }),
            invalid,
            &["from_seq"],
            "",
        ),
        (
            Call::List(pb::ListEntriesRequest {
                page_token: "x".into(),
                ..list()
            }),
            invalid,
            &["page_token"],
            "",
        ),
        (
            Call::List(pb::ListEntriesRequest {
                page_size: 5000,
                ..list()
            }),
            invalid,
            &["page_size"],
            "",
        ),
        (
            Call::List(pb::ListEntriesRequest {
                with_proofs: true,
                proof_tree_size: far,
                ..list()
            }),
            out_of_range,
            &[],
            "",
        ),
        // "Must not be beyond it" without proofs too (it was taken, and kept in the token).
        (
            Call::List(pb::ListEntriesRequest {
                proof_tree_size: far,
                ..list()
            }),
            out_of_range,
            &[],
            "proof_tree_size",
        ),
        (
            Call::Follow(pb::FollowRequest {
                from_seq: far,
                filter: None,
            }),
            out_of_range,
            &[],
            "",
        ),
    ];
    for (i, (call, code, fields, word)) in cases.into_iter().enumerate() {
        let e = call.refusal(&mut c).await?;
        assert_eq!(e.code(), code, "case {i}: {e:?}");
        assert_eq!(bad_fields(&e), fields, "case {i}");
        assert!(e.message().contains(word), "case {i}: {e:?}");
    }
    s.stop().await
}
