//! Follow: replay entries from a sequence number, then stream new ones as checkpoints cover
//! them. A task per stream feeds a bounded channel, so a slow client slows only its own task,
//! and the task stops as soon as the client hangs up.

use std::pin::Pin;

use audit_log::{AuditLog, leaf_hash};
use onboard_core::Shutdown;
use onboard_proto::v1 as pb;
use serde_json::json;
use tokio_stream::Stream;
use tonic::{Request, Status};

use super::{AuditService, Filter};
use crate::error::{Result, ServerError};
use crate::limits::Sender;

/// The stream type of Follow.
pub type FollowStream = Pin<Box<dyn Stream<Item = Result<pb::Entry, Status>> + Send + 'static>>;

/// Entries read from the log at once (the stream's own buffer is `[limits] stream_buffer`;
/// a reader that leaves it full for `slow_reader_secs` is disconnected).
const BUFFER: usize = 64;

impl AuditService {
    /// Starts a follow stream.
    pub(super) async fn follow_rpc(&self, req: Request<pb::FollowRequest>) -> Result<FollowStream> {
        let from = req.get_ref().from_seq;
        self.begin(&req, "Follow", json!({"from_seq": from}))
            .await?;
        let r = req.into_inner();
        let filter = Filter::parse(r.filter, "filter")?;
        let size = self.log().size();
        if from > size {
            return Err(ServerError::OutOfRange(format!(
                "from_seq {from} is beyond the latest checkpoint ({size} entries)"
            )));
        }
        let (tx, stream) = self.app.guards().stream();
        let log = self.log().clone();
        let stop = self.app.shutdown();
        tokio::spawn(async move {
            if let Err(status) = pump(log, from, filter, stop, &tx).await {
                // The client may already be gone; nothing else to tell.
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(stream)
    }
}

/// Sends entries from `next` on until the client hangs up, the server shuts down or the log
/// closes.
async fn pump(
    log: AuditLog,
    mut next: u64,
    filter: Filter,
    stop: Shutdown,
    tx: &Sender<pb::Entry>,
) -> Result<(), Status> {
    // Subscribe before the first read so no checkpoint between the two is missed.
    let mut checkpoints = log.subscribe();
    loop {
        let size = log.size();
        while next < size {
            // Read in bounded chunks so one sled iterator is never held across a slow send.
            let chunk_end = size.min(next + BUFFER as u64);
            let chunk: Vec<_> = log
                .entries(next, chunk_end)
                .collect::<Result<_, _>>()
                .map_err(|e| Status::from(ServerError::from(e)))?;
            for (seq, leaf) in chunk {
                next = seq + 1;
                if !filter.matches(&leaf) {
                    continue;
                }
                let entry = pb::Entry {
                    seq,
                    leaf_hash: leaf_hash(&leaf).to_vec(),
                    leaf,
                    inclusion_proof: None,
                };
                // A slow client must not hold up shutdown either.
                tokio::select! {
                    sent = tx.send(Ok(entry)) => {
                        if sent.is_err() {
                            return Ok(());
                        }
                    }
                    () = stop.recv() => return Err(shutting_down()),
                }
            }
        }
        tokio::select! {
            changed = checkpoints.changed() => {
                if changed.is_err() {
                    return Err(ServerError::Unavailable("the audit log was closed".into()).into());
                }
            }
            () = tx.closed() => return Ok(()),
            () = stop.recv() => return Err(shutting_down()),
        }
    }
}

fn shutting_down() -> Status {
    ServerError::Unavailable("the server is shutting down; follow again from the next seq".into())
        .into()
}
