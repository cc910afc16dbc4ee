//! The `onboard.v1.Audit` gRPC service: checkpoints, entries, proofs, verifier keys and a
//! follow stream over [`audit_log::AuditLog`] (roles: auditor, admin).
//!
//! Every call is itself recorded as an `audit.read` entry (actor, RPC, requested range) before it
//! is answered, so a read that cannot be recorded is not answered. Sizes and ranges are checked
//! against the latest checkpoint after that entry is appended.

mod filter;
mod follow;

use audit_log::{AuditLog, leaf_hash};
use onboard_core::audit::{Action, AuditEntry, Phase, Scope};
use onboard_proto::v1 as pb;
use onboard_proto::v1::audit_server::Audit as AuditRpc;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::App;
use crate::auth::{Caller, Role};
use crate::error::{Result, ServerError};
use crate::paging::{next_page_token, page_size, page_start};
pub use filter::Filter;

/// Who may read the log.
const READERS: &[Role] = &[Role::Auditor, Role::Admin];
/// Most entries one ListEntries page examines, so a narrow filter over a long log still
/// answers quickly; the client continues with `next_page_token`.
const MAX_SCAN: u64 = 10_000;
/// Bytes of a ListEntries response kept for what is not an entry (the page token and the tree
/// size, with their tags), when a page is cut to fit `limits.max_message_bytes`.
const PAGE_OVERHEAD: usize = 1024;

/// Serves the audit log from the shared [`App`].
#[derive(Debug, Clone)]
pub struct AuditService {
    /// Authentication and the audit log.
    app: App,
}

impl AuditService {
    /// A service over `app`.
    pub fn new(app: App) -> Self {
        Self { app }
    }

    fn log(&self) -> &AuditLog {
        self.app.audit()
    }

    /// Authorizes the caller and records the read; returns the caller.
    async fn begin<T>(&self, req: &Request<T>, rpc: &str, request: Value) -> Result<Caller> {
        let caller = self.app.auth().authorize(req, READERS)?;
        // Each read is an entry: one caller may not grow the log faster than its bucket
        // (`[limits] audited_reads_per_minute`; rate-limited, not coalesced).
        self.app.guards().audited_read(&caller.identity)?;
        AuditEntry::new(
            Action::AuditRead,
            Phase::Succeeded,
            &Scope::actor(&caller.identity),
        )
        .with_detail("rpc", rpc)
        .with_detail("request", request)
        .append(self.log())
        .await?;
        Ok(caller)
    }

    /// Resolves a size where 0 means "the latest checkpoint" and checks it is not beyond it.
    fn size_or_latest(&self, field: &str, size: u64) -> Result<u64> {
        size_or(field, size, self.log().size())
    }

    fn inclusion(&self, seq: u64, size: u64) -> Result<pb::InclusionProof> {
        let hashes = self.log().inclusion_proof(seq, size)?;
        Ok(pb::InclusionProof {
            seq,
            tree_size: size,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            root_hash: self.log().root_at(size)?.to_vec(),
        })
    }

    async fn checkpoint(&self, req: Request<pb::GetCheckpointRequest>) -> Result<pb::Checkpoint> {
        self.begin(&req, "GetCheckpoint", json!({})).await?;
        let cp = self.log().checkpoint();
        Ok(pb::Checkpoint {
            note: cp.note.as_bytes().to_vec(),
            origin: cp.checkpoint.origin.clone(),
            size: cp.checkpoint.size,
            root_hash: cp.checkpoint.root.to_vec(),
        })
    }

    async fn list(&self, req: Request<pb::ListEntriesRequest>) -> Result<pb::ListEntriesResponse> {
        // Who asks before what is asked: a stranger's oversized field is UNAUTHENTICATED.
        self.app.auth().authorize(&req, READERS)?;
        let r = req.get_ref();
        // What is recorded with the read stays small; longer values cannot be valid anyway.
        ServerError::at_most("page_token", &r.page_token, 256)?;
        if let Some(f) = &r.filter {
            ServerError::at_most("filter.tenant_id", &f.tenant_id, 256)?;
            ServerError::at_most("filter.onboarding_id", &f.onboarding_id, 256)?;
            ServerError::at_most("filter.action", &f.action, 256)?;
        }
        // What is recorded with the read: the request as given.
        let request = json!({
            "from_seq": r.from_seq, "to_seq": r.to_seq,
            "with_proofs": r.with_proofs, "proof_tree_size": r.proof_tree_size,
            "filter": r.filter.as_ref().map(|f| json!({
                "tenant_id": f.tenant_id, "onboarding_id": f.onboarding_id, "action": f.action,
                "since": f.since.map(|t| t.seconds), "until": f.until.map(|t| t.seconds),
            })),
            "page_token": r.page_token,
        });
        self.begin(&req, "ListEntries", request).await?;
        let mut r = req.into_inner();
        let filter = Filter::parse(r.filter.take(), "filter")?;
        let limit = page_size(r.page_size)?;
        // What a page token is bound to: the request but its paging, with the filter as parsed
        // (none and an empty one are the same; instants to the nanosecond).
        let fields = json!({
            "from_seq": r.from_seq, "to_seq": r.to_seq,
            "with_proofs": r.with_proofs, "proof_tree_size": r.proof_tree_size,
            "filter": filter.key(),
        });
        let latest = self.log().size();
        let foreign = || ServerError::invalid("page_token", "not a token for this request");
        let (resume, pinned) = match page_start(&r.page_token, &fields)? {
            None => (None, None),
            Some(at) => {
                let (start, size) = parse_position(at, latest).ok_or_else(foreign)?;
                (Some(start), size)
            }
        };
        // The listing's one look at the log's size, taken by its first page and carried in its
        // page tokens: the range (when `to_seq` is 0), the proofs' tree (when
        // `proof_tree_size` is 0) and `tree_size` are the same on every page, so a listing
        // ends even while entries are appended (each page appends its own `audit.read`), and
        // every proof is against one tree.
        let tree_size = pinned.unwrap_or(latest);
        let (end, proof_size) = list_range(&r, tree_size)?;
        let start = match resume {
            None => r.from_seq,
            Some(at) if at >= r.from_seq && at <= end => at,
            Some(_) => return Err(foreign()),
        };
        let scan_end = end.min(start.saturating_add(MAX_SCAN));
        let mut entries = Vec::new();
        let mut next = None;
        // A page also ends before it outgrows the largest message the server sends, so any
        // `page_size` of large entries (up to 64 KiB each, with proofs) is answered in pages.
        let mut room = self
            .app
            .guards()
            .config
            .max_message_bytes
            .saturating_sub(PAGE_OVERHEAD);
        for item in self.log().entries(start, scan_end) {
            let (seq, leaf) = item?;
            if !filter.matches(&leaf) {
                continue;
            }
            if entries.len() == limit {
                next = Some(seq);
                break;
            }
            let inclusion_proof = if r.with_proofs {
                Some(self.inclusion(seq, proof_size)?)
            } else {
                None
            };
            let entry = pb::Entry {
                seq,
                leaf_hash: leaf_hash(&leaf).to_vec(),
                leaf,
                inclusion_proof,
            };
            let size = prost::Message::encoded_len(&entry);
            let size = 1 + prost::encoding::encoded_len_varint(size as u64) + size;
            // The first entry goes in whatever its size, so a page always makes progress (one
            // larger than the limit itself fails to send, as any message over it does).
            if size > room && !entries.is_empty() {
                next = Some(seq);
                break;
            }
            room = room.saturating_sub(size);
            entries.push(entry);
        }
        if next.is_none() && scan_end < end {
            next = Some(scan_end);
        }
        Ok(pb::ListEntriesResponse {
            entries,
            next_page_token: next
                .map(|n| next_page_token(&format!("{n}-{tree_size}"), &fields))
                .unwrap_or_default(),
            tree_size,
        })
    }

    async fn inclusion_rpc(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> Result<pb::InclusionProof> {
        let (seq, size) = (req.get_ref().seq, req.get_ref().tree_size);
        self.begin(
            &req,
            "GetInclusionProof",
            json!({"seq": seq, "tree_size": size}),
        )
        .await?;
        let size = self.size_or_latest("tree_size", size)?;
        if seq >= size {
            return Err(ServerError::invalid(
                "seq",
                format!("entry {seq} is not in a tree of {size} entries"),
            ));
        }
        self.inclusion(seq, size)
    }

    async fn consistency(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<pb::ConsistencyProof> {
        let (first, second) = (req.get_ref().first_size, req.get_ref().second_size);
        self.begin(
            &req,
            "GetConsistencyProof",
            json!({"first_size": first, "second_size": second}),
        )
        .await?;
        let second = self.size_or_latest("second_size", second)?;
        if first == 0 || first > second {
            return Err(ServerError::invalid(
                "first_size",
                format!("must be between 1 and second_size ({second})"),
            ));
        }
        let hashes = self.log().consistency_proof(first, second)?;
        Ok(pb::ConsistencyProof {
            first_size: first,
            second_size: second,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            first_root_hash: self.log().root_at(first)?.to_vec(),
            second_root_hash: self.log().root_at(second)?.to_vec(),
        })
    }

    async fn verifier_keys(
        &self,
        req: Request<pb::GetVerifierKeysRequest>,
    ) -> Result<pb::VerifierKeys> {
        self.begin(&req, "GetVerifierKeys", json!({})).await?;
        Ok(pb::VerifierKeys {
            keys: self
                .log()
                .verifiers()
                .iter()
                .map(ToString::to_string)
                .collect(),
            origin: self.log().origin().to_owned(),
        })
    }
}

/// Resolves `size` where 0 means `latest` (the latest checkpoint's size) and checks it is not
/// beyond it (OUT_OF_RANGE naming `field`).
fn size_or(field: &str, size: u64, latest: u64) -> Result<u64> {
    if size == 0 {
        return Ok(latest);
    }
    if size > latest {
        return Err(ServerError::OutOfRange(format!(
            "{field} {size} is beyond the latest checkpoint ({latest} entries)"
        )));
    }
    Ok(size)
}

/// ListEntries' range against a log of `latest` entries: where it ends, and the tree size the
/// proofs are against (0 without proofs). The range as requested is checked first (`to_seq`
/// within the log, `from_seq` not after it); with proofs it then ends at `proof_tree_size`,
/// and a range that asks for entries but starts at or after that size is OUT_OF_RANGE on
/// `from_seq` (none of its entries has a proof in that tree).
/// A ListEntries page token's position: `<next seq>-<tree size of the first page>`, or
/// `<next seq>` as the previous release wrote it (the tree size then is the latest). `None`
/// when it does not parse, or names a tree larger than the log (`latest`).
fn parse_position(at: &str, latest: u64) -> Option<(u64, Option<u64>)> {
    // Decimal digits only (`u64::from_str` also takes a leading `+`).
    let number = |s: &str| {
        let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| s.parse::<u64>().ok()).flatten()
    };
    let (start, size) = match at.split_once('-') {
        Some((start, size)) => (start, Some(number(size)?)),
        None => (at, None),
    };
    let start = number(start)?;
    (size.unwrap_or(latest) <= latest && start <= size.unwrap_or(latest)).then_some((start, size))
}

fn list_range(r: &pb::ListEntriesRequest, latest: u64) -> Result<(u64, u64)> {
    let requested_end = size_or("to_seq", r.to_seq, latest)?;
    if r.to_seq != 0 && r.from_seq > r.to_seq {
        return Err(ServerError::invalid("from_seq", "must not be after to_seq"));
    }
    // Reading past the end, as Follow answers it; starting at the end is an empty page (a
    // poller's "anything new?").
    if r.from_seq > latest {
        return Err(ServerError::OutOfRange(format!(
            "from_seq {} is beyond the latest checkpoint ({latest} entries)",
            r.from_seq
        )));
    }
    // Checked with or without proofs: "must not be beyond it" holds for any request.
    let proof_size = size_or("proof_tree_size", r.proof_tree_size, latest)?;
    if !r.with_proofs {
        return Ok((requested_end, 0));
    }
    if r.from_seq >= proof_size && r.from_seq < requested_end {
        return Err(ServerError::OutOfRange(format!(
            "from_seq {} is not below proof_tree_size ({proof_size}): with proofs the range ends \
             there, and no entry from {} on has a proof in a tree of {proof_size} entries",
            r.from_seq, r.from_seq
        )));
    }
    Ok((requested_end.min(proof_size), proof_size))
}

#[tonic::async_trait]
impl AuditRpc for AuditService {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        Ok(Response::new(self.checkpoint(request).await?))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        Ok(Response::new(self.inclusion_rpc(request).await?))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        Ok(Response::new(self.consistency(request).await?))
    }

    async fn get_verifier_keys(
        &self,
        request: Request<pb::GetVerifierKeysRequest>,
    ) -> Result<Response<pb::VerifierKeys>, Status> {
        Ok(Response::new(self.verifier_keys(request).await?))
    }

    type FollowStream = follow::FollowStream;

    async fn follow(
        &self,
        request: Request<pb::FollowRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        Ok(Response::new(self.follow_rpc(request).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(from_seq: u64, to_seq: u64, proof_tree_size: Option<u64>) -> pb::ListEntriesRequest {
        pb::ListEntriesRequest {
            from_seq,
            to_seq,
            with_proofs: proof_tree_size.is_some(),
            proof_tree_size: proof_tree_size.unwrap_or(0),
            ..Default::default()
        }
    }

    #[test]
    fn page_positions_read_back_and_never_name_a_tree_the_log_lacks() {
        assert_eq!(parse_position("7-12", 20), Some((7, Some(12))));
        assert_eq!(parse_position("12-12", 12), Some((12, Some(12))));
        // As the previous release wrote them: against the latest.
        assert_eq!(parse_position("7", 20), Some((7, None)));
        for bad in [
            "7-21", "13-12", "21", "", "-", "7-", "-12", "x-1", "7-12-1", "+7-12",
        ] {
            assert_eq!(parse_position(bad, 20), None, "{bad:?}");
        }
    }

    #[test]
    fn list_ranges_are_checked_as_requested_then_cut_by_the_proof_tree() {
        let range = |r| list_range(&r, 20).ok();
        // (end, proof tree size): never beyond the one size read (20).
        assert_eq!(range(req(0, 0, None)), Some((20, 0)));
        assert_eq!(range(req(0, 0, Some(0))), Some((20, 20)));
        assert_eq!(range(req(2, 10, Some(5))), Some((5, 5)));
        // Empty ranges ask for nothing: an empty page.
        assert_eq!(range(req(5, 5, Some(5))), Some((5, 5)));
        assert_eq!(range(req(20, 0, None)), Some((20, 0)));
        let out_of_range = |r| matches!(list_range(&r, 20), Err(ServerError::OutOfRange(_)));
        assert!(out_of_range(req(7, 10, Some(5))));
        assert!(out_of_range(req(5, 10, Some(5))));
        assert!(out_of_range(req(5, 0, Some(5))));
        assert!(out_of_range(req(0, 21, None)));
        assert!(out_of_range(req(0, 0, Some(21))));
        // Past the end of the log, with or without proofs (as Follow).
        assert!(out_of_range(req(21, 0, None)));
        assert!(out_of_range(req(25, 0, Some(5))));
        let reversed = |r| match list_range(&r, 20) {
            Err(ServerError::InvalidArgument(v)) => v.first().map(|v| v.field.clone()),
            _ => None,
        };
        assert_eq!(reversed(req(4, 2, Some(5))).as_deref(), Some("from_seq"));
        assert_eq!(reversed(req(4, 2, None)).as_deref(), Some("from_seq"));
    }
}
