//! `onboard.v1.Admin/Backup`: a consistent archive of a running server, streamed in chunks.
//!
//! How the snapshot is consistent:
//! 1. A `store.backup` intent is appended (so the archive holds the record of its making).
//! 2. Audit appends are paused ([`audit_log::AuditLog::pause`]): the writer commits what is
//!    queued, stores its last signed note and appends nothing more; the log stands at one
//!    signed checkpoint `N`. Appenders wait (nothing is refused), for at most
//!    `limits.backup_pause_max_ms`.
//! 3. Under the pause the state store is exported until two exports in a row agree byte for
//!    byte. Every workflow appends its intent before it changes anything and writes its record
//!    only after the outcome entry is durable, so with appends paused the state settles at
//!    once; two equal exports mean no record changed between the start of the first and the
//!    end of the second, so the export is one point in time, and every entry the state refers
//!    to is among the log's `N` (its anchor is at most `N`, and a prefix of it).
//! 4. The pause ends. Entries below `N` never change, so the log's records are read afterwards
//!    while appends go on: once to checksum them for the manifest, once to stream them (the
//!    second read is checksummed again and must agree).
//! 5. The outcome (`store.backup`, succeeded or failed) records the archive's SHA-256.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use onboard_core::audit::{Action, AuditEntry, Phase, Scope};
use onboard_proto::v1 as pb;
use onboard_proto::v1::admin_server::Admin;
use sha2::Digest;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::format::{self, AuditPart, Manifest, Member, StatePart};
use crate::App;
use crate::BoxStream;
use crate::auth::Role;
use crate::error::{Result, ServerError};

/// The size of the chunks the archive is streamed in.
const CHUNK: usize = 256 << 10;
/// How many state exports may disagree before the backup gives up.
const MAX_EXPORT_ROUNDS: u32 = 8;

/// The Admin service.
#[derive(Debug, Clone)]
pub struct AdminService {
    /// The audit log, the state store and the configuration.
    app: App,
}

impl AdminService {
    /// A service over `app`.
    pub fn new(app: App) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    type BackupStream = BoxStream<pb::BackupChunk>;

    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> std::result::Result<Response<Self::BackupStream>, Status> {
        let caller = self.app.auth().authorize(&req, &[Role::Admin])?;
        let reason = req.into_inner().reason;
        if reason.len() > 1024 {
            return Err(ServerError::invalid("reason", "at most 1024 bytes").into());
        }
        keys_outside_the_store(self.app.config())?;
        let scope = Scope::actor(&caller.identity);
        let intent = AuditEntry::new(Action::StoreBackup, Phase::Intent, &scope)
            .with_detail("reason", reason.clone());
        intent
            .append(self.app.audit())
            .await
            .map_err(ServerError::from)?;
        let (tx, rx) = mpsc::channel(4);
        let app = self.app.clone();
        tokio::spawn(async move {
            let result = take(&app, tx.clone()).await;
            let mut outcome = AuditEntry::new(Action::StoreBackup, Phase::Succeeded, &scope)
                .with_detail("reason", reason);
            match result {
                Ok(done) => {
                    outcome = outcome
                        .with_detail("size", done.size)
                        .with_detail("root", done.root)
                        .with_detail("archive_sha256", done.sha256)
                        .with_detail("archive_bytes", done.bytes);
                }
                Err(e) => {
                    outcome.phase = Phase::Failed;
                    outcome = outcome.with_error(e.to_string());
                    let _ = tx.send(Err(e.into())).await;
                }
            }
            if let Err(e) = outcome.append(app.audit()).await {
                tracing::error!(error = %e, "recording the backup's outcome failed");
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Refuses a backup while a key lives in the state store (it would enter the archive).
fn keys_outside_the_store(config: &crate::Config) -> Result<()> {
    let missing = if config.storage.sealing_key.is_none() {
        "storage.sealing_key"
    } else if config.invitations.token_key.is_none() {
        "invitations.token_key"
    } else {
        return Ok(());
    };
    Err(ServerError::FailedPrecondition(format!(
        "{missing} is not set, so the server keeps that key in its state store, and a backup of the store would carry the key next to what it protects; write the stored key to a file with `onboard keys export` (server stopped) and set {missing} to it (docs/operations.md, \"Keys: backup and rotation\") before taking backups"
    )))
}

/// What a finished backup streamed.
struct Done {
    /// The archived log's size.
    size: u64,
    /// Its root, hex.
    root: String,
    /// The archive's SHA-256, hex.
    sha256: String,
    /// The archive's length.
    bytes: u64,
}

/// Takes the snapshot and streams the archive into `tx`.
async fn take(
    app: &App,
    tx: mpsc::Sender<std::result::Result<pb::BackupChunk, Status>>,
) -> Result<Done> {
    let limit = Duration::from_millis(app.config().limits.backup_pause_max_ms);
    let started = Instant::now();
    let pause = app.audit().pause(limit).await?;
    let db = app.state_db().clone();
    let (state, rounds) = tokio::task::spawn_blocking(move || settled_export(&db))
        .await
        .map_err(|e| ServerError::Internal(format!("state export task: {e}")))??;
    let snap = app.audit().snapshot(&pause);
    let expired = pause.expired();
    drop(pause);
    let pause_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if expired {
        return Err(ServerError::ResourceExhausted {
            limit: format!("limits.backup_pause_max_ms = {}", limit.as_millis()),
            subject: "the state store export under the append pause".into(),
            retry_after: None,
        });
    }
    let log = app.audit().clone();
    tokio::task::spawn_blocking(move || stream(&log, &snap, state, rounds, pause_ms, tx))
        .await
        .map_err(|e| ServerError::Internal(format!("backup stream task: {e}")))?
}

/// The state store's records, framed: every tree, generated keys left out.
fn export_state(db: &sled::Db) -> Result<(Vec<u8>, std::collections::BTreeMap<String, u64>)> {
    let mut out = Vec::new();
    let mut trees = std::collections::BTreeMap::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let tname = String::from_utf8_lossy(&name).into_owned();
        let mut n = 0u64;
        for kv in tree.iter() {
            let (k, v) = kv?;
            if format::GENERATED_KEYS
                .iter()
                .any(|(t, key)| *t == tname && key.as_bytes() == &*k)
            {
                continue;
            }
            format::write_record(&mut out, &name, &k, &v)
                .map_err(|e| ServerError::io("framing a state record", e))?;
            n += 1;
        }
        trees.insert(tname, n);
    }
    Ok((out, trees))
}

/// Exports until two exports in a row agree (see the module docs).
fn settled_export(db: &sled::Db) -> Result<(StateExport, u32)> {
    let mut last = export_state(db)?;
    for round in 1..=MAX_EXPORT_ROUNDS {
        let next = export_state(db)?;
        if next.0 == last.0 {
            return Ok((next, round));
        }
        last = next;
    }
    Err(ServerError::Unavailable(format!(
        "the state store kept changing during {MAX_EXPORT_ROUNDS} exports while audit appends were paused; try again"
    )))
}

/// The framed state records and the records per tree.
type StateExport = (Vec<u8>, std::collections::BTreeMap<String, u64>);

/// The audit log's records of `snap`, framed, as a reader.
fn audit_reader(log: &audit_log::AuditLog, snap: &audit_log::snapshot::Snapshot) -> RecordReader {
    RecordReader {
        records: Box::new(log.snapshot_records(snap)),
        buf: Vec::new(),
        pos: 0,
        count: 0,
    }
}

/// A snapshot's records, as [`audit_log::AuditLog::snapshot_records`] yields them.
type AuditRecords = Box<
    dyn Iterator<Item = std::result::Result<audit_log::snapshot::Record, audit_log::AuditError>>
        + Send,
>;

/// Frames records as they are read.
struct RecordReader {
    /// The records still to frame.
    records: AuditRecords,
    /// The current record, framed.
    buf: Vec<u8>,
    /// How much of `buf` was read.
    pos: usize,
    /// Records framed so far (the manifest's `audit.records`).
    count: u64,
}

impl Read for RecordReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.records.next() {
                None => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
                Some(Ok((k, v))) => {
                    self.buf.clear();
                    self.pos = 0;
                    self.count += 1;
                    format::write_record(&mut self.buf, format::AUDIT_TREE.as_bytes(), &k, &v)?;
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Sends what is written as chunks, and hashes it.
struct ChunkWriter {
    /// The stream to the client.
    tx: mpsc::Sender<std::result::Result<pb::BackupChunk, Status>>,
    /// Bytes not sent yet.
    buf: Vec<u8>,
    /// SHA-256 of everything written.
    hasher: sha2::Sha256,
    /// Bytes written.
    bytes: u64,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(pb::BackupChunk { data }))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Builds the manifest and streams the archive (blocking).
fn stream(
    log: &audit_log::AuditLog,
    snap: &audit_log::snapshot::Snapshot,
    (state, trees): StateExport,
    export_rounds: u32,
    pause_ms: u64,
    tx: mpsc::Sender<std::result::Result<pb::BackupChunk, Status>>,
) -> Result<Done> {
    let io_err = |e: io::Error| ServerError::io("writing the backup archive", e);
    // First read of the log: its length, checksum and record count for the manifest.
    let mut first = format::Hashing::new(audit_reader(log, snap));
    io::copy(&mut first, &mut io::sink()).map_err(io_err)?;
    let records = first.inner.count;
    let (audit_sha, audit_bytes) = first.finish();
    let cp = &snap.checkpoint.checkpoint;
    let manifest = Manifest {
        format: format::FORMAT.into(),
        version: format::VERSION,
        created_at: onboard_core::time::now(),
        server_version: env!("CARGO_PKG_VERSION").into(),
        origin: snap.origin.clone(),
        audit: AuditPart {
            size: cp.size,
            root: hex::encode(cp.root),
            checkpoint: snap.checkpoint.note.clone(),
            records,
        },
        state: StatePart {
            trees,
            export_rounds,
            pause_ms,
        },
        members: vec![
            Member {
                name: format::AUDIT_MEMBER.into(),
                bytes: audit_bytes,
                sha256: audit_sha.clone(),
            },
            Member {
                name: format::STATE_MEMBER.into(),
                bytes: state.len() as u64,
                sha256: hex::encode(sha2::Sha256::digest(&state)),
            },
        ],
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ServerError::Internal(format!("encoding the manifest: {e}")))?;
    let writer = ChunkWriter {
        tx,
        buf: Vec::with_capacity(CHUNK),
        hasher: sha2::Sha256::new(),
        bytes: 0,
    };
    let mut tar = tar::Builder::new(writer);
    tar.append_data(
        &mut header(json.len() as u64),
        format::MANIFEST,
        json.as_slice(),
    )
    .map_err(io_err)?;
    // Second read of the log, checksummed again: entries below a signed size never change.
    let mut second = format::Hashing::new(audit_reader(log, snap));
    tar.append_data(&mut header(audit_bytes), format::AUDIT_MEMBER, &mut second)
        .map_err(io_err)?;
    if second.finish() != (audit_sha, audit_bytes) {
        return Err(ServerError::Internal(
            "the audit log's records changed between two reads of the same signed size".into(),
        ));
    }
    tar.append_data(
        &mut header(state.len() as u64),
        format::STATE_MEMBER,
        state.as_slice(),
    )
    .map_err(io_err)?;
    let mut writer = tar.into_inner().map_err(io_err)?;
    writer.flush().map_err(io_err)?;
    Ok(Done {
        size: cp.size,
        root: hex::encode(cp.root),
        sha256: hex::encode(writer.hasher.finalize()),
        bytes: writer.bytes,
    })
}
