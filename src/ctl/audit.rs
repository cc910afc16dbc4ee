//! `onboard ctl audit tail|list|checkpoint|proof`: the Audit service (auditor or admin role;
//! every call is itself an audit entry on the server).

use std::path::PathBuf;

use anyhow::Context;
use audit_log::{SignedCheckpoint, TlogProof};
use clap::{Args, Subcommand};
use onboard_proto::v1 as pb;
use onboard_proto::v1::audit_client::AuditClient;

use super::exit::{CtlError, Exit};
use super::output::{self, Output};
use super::{AuthChannel, Paged, all_pages, call, next_message};

/// Which entries (empty fields match everything).
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Only this Entra tenant's entries.
    #[arg(long, default_value = "")]
    tenant: String,
    /// Only this onboarding's entries.
    #[arg(long, default_value = "")]
    onboarding: String,
    /// Only this action or its sub-actions (`invitation` matches `invitation.create`).
    #[arg(long, default_value = "")]
    action: String,
    /// Only entries at or after this instant (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    since: Option<prost_types::Timestamp>,
    /// Only entries before this instant (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<prost_types::Timestamp>,
}

impl FilterArgs {
    fn to_pb(&self) -> pb::EntryFilter {
        pb::EntryFilter {
            tenant_id: self.tenant.clone(),
            onboarding_id: self.onboarding.clone(),
            action: self.action.clone(),
            since: self.since,
            until: self.until,
        }
    }
}

fn parse_time(s: &str) -> Result<prost_types::Timestamp, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))?;
    Ok(prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    })
}

/// `onboard ctl audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Shows the last entries, then follows new ones as they are checkpointed (Follow).
    Tail {
        /// Start at this entry (default: the last --lines entries of the latest checkpoint).
        #[arg(long)]
        from: Option<u64>,
        /// How many earlier entries to show first.
        #[arg(long, default_value_t = 10)]
        lines: u64,
        /// Stop after this many entries (0: follow until interrupted).
        #[arg(long, default_value_t = 0)]
        limit: u64,
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Lists entries `[from, to)` of the latest checkpoint.
    List {
        /// The first entry.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// One past the last entry (0: the latest checkpoint's size).
        #[arg(long, default_value_t = 0)]
        to: u64,
        /// At most this many entries (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Prints the latest signed checkpoint (the note verbatim); verifies it with --vkey.
    Checkpoint {
        /// Write the signed note to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A verifier key (`name+id+base64`) or a file of them; repeatable. Exit 1 unless one
        /// of them signed the checkpoint.
        #[arg(long)]
        vkey: Vec<String>,
    },
    /// Gets an entry's inclusion proof against the latest checkpoint, checks it here, and
    /// writes a C2SP tlog-proof file.
    Proof {
        /// The entry's index.
        #[arg(long)]
        seq: u64,
        /// The tlog-proof file to write (default: none).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Verifier keys for the checkpoint's signature (as for `checkpoint`).
        #[arg(long)]
        vkey: Vec<String>,
    },
}

/// The log's latest checkpoint and its signed note as text.
async fn checkpoint(
    c: &mut AuditClient<AuthChannel>,
) -> Result<(pb::Checkpoint, String), CtlError> {
    let cp = call(
        "GetCheckpoint",
        c.get_checkpoint(pb::GetCheckpointRequest {}),
    )
    .await?;
    let note = String::from_utf8(cp.note.clone())
        .map_err(|_| CtlError::failed("the checkpoint note is not UTF-8"))?;
    Ok((cp, note))
}

/// Runs one audit command.
pub async fn run(cmd: AuditCommand, ch: AuthChannel, out: Output) -> Result<Exit, CtlError> {
    let mut c = AuditClient::new(ch);
    match cmd {
        AuditCommand::Tail {
            from,
            lines,
            limit,
            filter,
        } => {
            let from = match from {
                Some(f) => f,
                None => {
                    let cp = call(
                        "GetCheckpoint",
                        c.get_checkpoint(pb::GetCheckpointRequest {}),
                    )
                    .await?;
                    cp.size.saturating_sub(lines)
                }
            };
            let mut stream = call(
                "Follow",
                c.follow(pb::FollowRequest {
                    from_seq: from,
                    filter: Some(filter.to_pb()),
                }),
            )
            .await?;
            let mut seen = 0u64;
            let mut next = from;
            if !out.is_json() {
                println!("{}", entry_header());
            }
            while limit == 0 || seen < limit {
                let Some(e) = next_message(&mut stream, "Follow").await? else {
                    return Err(CtlError::unreachable(format!(
                        "the Follow stream ended (server stopping?); resume with --from {}",
                        next
                    )));
                };
                seen += 1;
                next = e.seq + 1;
                if out.is_json() {
                    output::print_json_line(&e)?;
                } else {
                    println!("{}", entry_line(&e));
                }
            }
            Ok(Exit::Ok)
        }
        AuditCommand::List {
            from,
            to,
            limit,
            filter,
        } => {
            let resp: pb::ListEntriesResponse = all_pages(limit, |page_token| {
                let mut c = c.clone();
                let req = pb::ListEntriesRequest {
                    from_seq: from,
                    to_seq: to,
                    filter: Some(filter.to_pb()),
                    page_size: 0,
                    page_token,
                    with_proofs: false,
                    proof_tree_size: 0,
                };
                async move { call("ListEntries", c.list_entries(req)).await }
            })
            .await?;
            output::print_answer(out, &resp, |resp| {
                println!("{}", entry_header());
                for e in &resp.entries {
                    println!("{}", entry_line(e));
                }
            })
        }
        AuditCommand::Checkpoint { out: file, vkey } => {
            let (cp, note) = checkpoint(&mut c).await?;
            // Checked before it is saved: a checkpoint that fails its signature must not
            // replace the one an auditor kept. Written whole or not at all (rename).
            let signed = check_signature(&note, &vkey)?;
            if let Some(path) = &file {
                let part = path.with_extension("partial");
                std::fs::write(&part, &note)
                    .and_then(|()| std::fs::rename(&part, path))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if out.is_json() {
                output::print_json(&cp)?;
            } else {
                print!("{note}");
                if let Some(by) = signed {
                    println!("\nsignature verified: {by}");
                }
            }
            Ok(Exit::Ok)
        }
        AuditCommand::Proof {
            seq,
            out: file,
            vkey,
        } => {
            // Every read appends an entry, so the proof is asked for against the checkpoint
            // fetched first, by its size.
            let (cp, note) = checkpoint(&mut c).await?;
            let signed = check_signature(&note, &vkey)?;
            let proof = call(
                "GetInclusionProof",
                c.get_inclusion_proof(pb::GetInclusionProofRequest {
                    seq,
                    tree_size: cp.size,
                }),
            )
            .await?;
            let entries = call(
                "ListEntries",
                c.list_entries(pb::ListEntriesRequest {
                    from_seq: seq,
                    to_seq: seq.checked_add(1).ok_or_else(|| {
                        CtlError::usage(format!("--seq {seq} is past any log's end"))
                    })?,
                    page_size: 1,
                    proof_tree_size: cp.size,
                    ..Default::default()
                }),
            )
            .await?;
            let entry = entries
                .entries
                .first()
                .ok_or_else(|| CtlError::failed(format!("entry {seq} was not returned")))?;
            let hashes = to_hashes(&proof.hashes)?;
            let root = audit_log::merkle::root_from_inclusion_proof(
                seq,
                cp.size,
                &audit_log::leaf_hash(&entry.leaf),
                &hashes,
            )
            .map_err(|e| CtlError::failed(format!("the proof of entry {seq} is malformed: {e}")))?;
            if root.as_slice() != cp.root_hash.as_slice() {
                return Err(CtlError::failed(format!(
                    "the proof of entry {seq} does not lead to the checkpoint's root (size {})",
                    cp.size
                )));
            }
            if let Some(path) = &file {
                let text = TlogProof {
                    extra: None,
                    index: seq,
                    proof: hashes,
                    checkpoint_note: note,
                }
                .to_text();
                std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            output::print_answer(out, &proof, |proof| {
                println!(
                    "entry {seq} is in the log of {} entries: the {}-hash proof leads to the checkpoint's root {}",
                    cp.size,
                    proof.hashes.len(),
                    hex::encode(&cp.root_hash)
                );
                if let Some(by) = signed {
                    println!("checkpoint signature verified: {by}");
                }
                if let Some(path) = &file {
                    println!("tlog-proof written to {}", path.display());
                }
            })
        }
    }
}

/// Checks the note against `--vkey` keys when some were given; `Some(who)` when verified.
fn check_signature(note: &str, vkeys: &[String]) -> Result<Option<String>, CtlError> {
    if vkeys.is_empty() {
        return Ok(None);
    }
    let keys = crate::audit_cli::parse_vkeys(vkeys)?;
    match SignedCheckpoint::open(note, &keys) {
        Ok(s) => Ok(Some(format!(
            "{} (size {})",
            s.checkpoint.origin, s.checkpoint.size
        ))),
        Err(e) => Err(CtlError::failed(format!(
            "the checkpoint does not verify with the given keys: {e}"
        ))),
    }
}

fn to_hashes(raw: &[Vec<u8>]) -> Result<Vec<audit_log::Hash>, CtlError> {
    raw.iter()
        .map(|h| {
            h.as_slice()
                .try_into()
                .map_err(|_| CtlError::failed("a proof hash is not 32 bytes"))
        })
        .collect()
}

fn entry_header() -> String {
    format!(
        "{:>6}  {:24}  {:32}  {:10}  {:28}  TARGET",
        "SEQ", "TIME", "ACTION", "PHASE", "ACTOR"
    )
}

/// One entry on one line, from its JSON fields (the leaf bytes are shown as stored with
/// `--output json`).
fn entry_line(e: &pb::Entry) -> String {
    let v: serde_json::Value = serde_json::from_slice(&e.leaf).unwrap_or_default();
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
    let target = match &v["target"] {
        serde_json::Value::Object(t) => {
            let kind = t.get("kind").and_then(|x| x.as_str()).unwrap_or("");
            let id = t.get("id").and_then(|x| x.as_str()).unwrap_or("");
            format!("{kind} {id}").trim().to_owned()
        }
        serde_json::Value::String(t) => t.clone(),
        _ => "-".into(),
    };
    format!(
        "{:>6}  {:24}  {:32}  {:10}  {:28}  {}",
        e.seq,
        s("time"),
        s("action"),
        s("phase"),
        s("actor"),
        if target.is_empty() {
            "-".into()
        } else {
            target
        }
    )
}

impl Paged for pb::ListEntriesResponse {
    type Item = pb::Entry;
    fn parts(&mut self) -> (&mut Vec<pb::Entry>, &mut String) {
        (&mut self.entries, &mut self.next_page_token)
    }
}
