//! The witness server, client, submitter and rollback check over real loopback sockets, in one
//! process (the `onboard witness` binary is tested end to end in the root package).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use audit_log::{AuditLog, LogConfig, NoteSigner, SignedCheckpoint};
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use witness::protocol::{AddCheckpointRequest, MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE};
use witness::{
    AddOutcome, CosignerKey, Submitter, SubmitterConfig, TrustedLog, Witness, WitnessClient,
    WitnessEndpoint, WitnessError, WitnessProbe, WitnessStatus, check_not_rolled_back,
    verify_cosigned,
};

const ORIGIN: &str = "loopback.onboard.invalid/audit";

/// A witness served on 127.0.0.1 until the test drops `stop`.
struct Served {
    /// Where it listens.
    addr: SocketAddr,
    /// How clients reach it.
    endpoint: WitnessEndpoint,
    /// The witness, for inspecting its state.
    witness: Arc<Witness>,
    /// Dropping it stops the server.
    _stop: oneshot::Sender<()>,
    /// Its state directory.
    _dir: tempfile::TempDir,
}

async fn serve(name: &str, logs: Vec<TrustedLog>) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let key = CosignerKey::generate(name).unwrap();
    let verifier = key.verifier();
    let witness = Arc::new(Witness::open(key, logs, dir.path()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(witness::server::serve(
        listener,
        witness.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Served {
        addr,
        endpoint: WitnessEndpoint {
            url: format!("http://{addr}"),
            verifier,
            timeout: Duration::from_secs(5),
        },
        witness,
        _stop: stop,
        _dir: dir,
    }
}

fn trusting(signer: &NoteSigner) -> Vec<TrustedLog> {
    vec![TrustedLog {
        origin: signer.name().to_owned(),
        verifiers: vec![signer.verifier()],
    }]
}

fn open_log(dir: &Path, signer: NoteSigner) -> AuditLog {
    AuditLog::open(LogConfig::new(dir, ORIGIN), signer).unwrap()
}

/// The one place that appends (the log's append API is being renamed on main).
async fn append(log: &AuditLog, tag: &str, n: u64) {
    for i in 0..n {
        let mut m = Map::new();
        m.insert("action".into(), Value::String(format!("{tag}.{i}")));
        log.append_fields(&m).await.unwrap();
    }
}

fn key_copy(k: &NoteSigner) -> NoteSigner {
    NoteSigner::from_go_private_key(&k.to_go_private_key()).unwrap()
}

fn checkpoint(signer: &NoteSigner, size: u64, root: [u8; 32]) -> String {
    testkit::audit::checkpoint_note(signer, size, root)
}

#[tokio::test]
async fn every_answer_over_http_has_the_status_and_content_type_of_the_spec() {
    let log = NoteSigner::generate(ORIGIN).unwrap();
    let w = serve("w.example/1", trusting(&log)).await;
    let url = format!("http://{}/add-checkpoint", w.addr);
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.post(&url).body(body).send().await.unwrap();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), ct, r.text().await.unwrap())
        }
    };
    let req = |old: u64, note: String| {
        AddCheckpointRequest {
            old_size: old,
            proof: vec![],
            checkpoint_note: note,
        }
        .encode()
        .into_bytes()
    };
    let leaf = audit_log::leaf_hash(b"x");
    let (s, _, body) = post(req(0, checkpoint(&log, 1, leaf))).await;
    assert_eq!(s, 200);
    assert!(body.starts_with("\u{2014} w.example/1 ") && body.ends_with('\n'));
    assert_eq!(body.lines().count(), 1);
    let (s, ct, body) = post(req(0, checkpoint(&log, 1, leaf))).await;
    assert_eq!(
        (s, ct.as_deref(), body.as_str()),
        (409, Some(SIZE_CONTENT_TYPE), "1\n")
    );
    let (s, ct, _) = post(req(1, checkpoint(&log, 1, [7; 32]))).await;
    assert_eq!(s, 409);
    assert_ne!(
        ct.as_deref(),
        Some(SIZE_CONTENT_TYPE),
        "a fork is not a size conflict"
    );
    let mut bad_proof = AddCheckpointRequest::parse(&req(1, checkpoint(&log, 2, [1; 32]))).unwrap();
    bad_proof.proof = vec![[0; 32]];
    assert_eq!(post(bad_proof.encode().into_bytes()).await.0, 422);
    let stranger = NoteSigner::generate(ORIGIN).unwrap();
    assert_eq!(post(req(1, checkpoint(&stranger, 2, [1; 32]))).await.0, 403);
    let other = NoteSigner::generate("other.example/log").unwrap();
    assert_eq!(post(req(0, checkpoint(&other, 2, [1; 32]))).await.0, 404);
    assert_eq!(post(b"old 00\n\n".to_vec()).await.0, 400);
    // The body limit is MAX_REQUEST_BYTES exactly: at it the body is read (and is malformed).
    assert_eq!(post(vec![b'a'; MAX_REQUEST_BYTES]).await.0, 400);
    assert_eq!(post(vec![b'a'; MAX_REQUEST_BYTES + 1]).await.0, 413);
    let get = http.get(&url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(w.witness.latest(ORIGIN).unwrap().size(), 1);
}

#[tokio::test]
async fn the_client_verifies_cosignatures_and_reports_each_outcome() {
    let log = NoteSigner::generate(ORIGIN).unwrap();
    let w = serve("w.example/1", trusting(&log)).await;
    let client = WitnessClient::new(w.endpoint.clone()).unwrap();
    let leaf = audit_log::leaf_hash(b"x");
    match client
        .add_checkpoint(0, &[], &checkpoint(&log, 1, leaf))
        .await
        .unwrap()
    {
        AddOutcome::Cosigned(_) => {}
        o => panic!("{o:?}"),
    }
    let again = client
        .add_checkpoint(0, &[], &checkpoint(&log, 1, leaf))
        .await
        .unwrap();
    assert_eq!(again, AddOutcome::Conflict { size: 1 });
    let fork = client
        .add_checkpoint(1, &[], &checkpoint(&log, 1, [2; 32]))
        .await
        .unwrap();
    assert!(matches!(fork, AddOutcome::RootMismatch(_)));
    let other = NoteSigner::generate("other.example/log").unwrap();
    let unknown = client
        .add_checkpoint(0, &[], &checkpoint(&other, 1, leaf))
        .await
        .unwrap();
    assert!(matches!(unknown, AddOutcome::Rejected { status: 404, .. }));
    // A client expecting another key does not accept this witness's answer.
    let wrong = WitnessEndpoint {
        verifier: CosignerKey::generate("w.example/1").unwrap().verifier(),
        ..w.endpoint.clone()
    };
    let e = add_via(wrong, 1, &checkpoint(&log, 1, leaf))
        .await
        .unwrap_err();
    assert!(matches!(e, WitnessError::BadResponse { .. }), "{e}");
    // Nobody listening, and a listener that never answers.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    for (addr, what) in [(closed_addr, "refused"), (silent_addr, "timeout")] {
        let unreachable = WitnessEndpoint {
            url: format!("http://{addr}"),
            timeout: Duration::from_millis(300),
            ..w.endpoint.clone()
        };
        let e = add_via(unreachable, 0, &checkpoint(&log, 1, leaf))
            .await
            .unwrap_err();
        assert!(matches!(e, WitnessError::Unreachable { .. }), "{what}: {e}");
    }
    drop(silent);
}

/// c2sp.org/signed-note: verifiers "MUST accept at least up to 16 signatures. Remember that
/// post-quantum signatures can be up to nearly 5kB". A checkpoint carrying 16 such lines (from
/// keys the witness does not know) is cosigned, and an answer carrying them is read.
#[tokio::test]
async fn sixteen_post_quantum_sized_signatures_fit_both_ways() {
    use base64::Engine;
    let log = NoteSigner::generate(ORIGIN).unwrap();
    let w = serve("w.example/1", trusting(&log)).await;
    // ML-DSA-87 signatures are 4,627 bytes; with the key id, 6,176 base64 characters a line.
    let pq: String = (0..16u8)
        .map(|i| {
            let raw = base64::engine::general_purpose::STANDARD.encode(vec![i; 4 + 4627]);
            format!("\u{2014} pq.example/w{i} {raw}\n")
        })
        .collect();
    assert!(pq.len() > 96 * 1024);
    let note = format!("{}{pq}", checkpoint(&log, 1, audit_log::leaf_hash(b"x")));
    let AddOutcome::Cosigned(c) = add_via(w.endpoint.clone(), 0, &note).await.unwrap() else {
        panic!("not cosigned");
    };
    let answer: &'static str = Box::leak(format!("{pq}{}", c.to_line()).into_boxed_str());
    let fake = fake(200, "text/plain", answer).await;
    let endpoint = WitnessEndpoint {
        url: format!("http://{fake}"),
        ..w.endpoint.clone()
    };
    let again = add_via(endpoint, 0, &note).await.unwrap();
    assert_eq!(again, AddOutcome::Cosigned(c));
}

/// Submits checkpoint `note` (the witness holding `old_size`, no proof) through a client of
/// `endpoint`.
async fn add_via(
    endpoint: WitnessEndpoint,
    old_size: u64,
    note: &str,
) -> Result<AddOutcome, WitnessError> {
    WitnessClient::new(endpoint)
        .unwrap()
        .add_checkpoint(old_size, &[], note)
        .await
}

fn fast(witnesses: Vec<WitnessEndpoint>, store: &Path) -> SubmitterConfig {
    SubmitterConfig {
        min_interval: Duration::from_millis(5),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..SubmitterConfig::new(witnesses, store)
    }
}

/// Waits until the submitter publishes a checkpoint of at least `size` with `n` cosignatures.
async fn cosigned(s: &Submitter, size: u64, n: usize) -> Arc<witness::CosignedCheckpoint> {
    let mut rx = s.subscribe();
    let r = tokio::time::timeout(Duration::from_secs(20), async {
        rx.wait_for(|c| {
            c.as_ref()
                .is_some_and(|c| c.checkpoint.size >= size && c.cosigners.len() == n)
        })
        .await
        .unwrap()
        .clone()
        .unwrap()
    })
    .await;
    r.unwrap_or_else(|_| {
        panic!(
            "no checkpoint ≥ {size} with {n} cosignatures: {:?}",
            s.status()
        )
    })
}

/// A submitter over `log` with `config`, running until [`stop`] is given what comes with it.
fn submit(
    log: &AuditLog,
    config: SubmitterConfig,
) -> (Submitter, (oneshot::Sender<()>, JoinHandle<()>)) {
    let (stop, stopped) = oneshot::channel::<()>();
    let (sub, task) = Submitter::spawn(log.clone(), config, async move {
        let _ = stopped.await;
    })
    .unwrap();
    (sub, (stop, task))
}

/// Asserts `holds` of the submitter's status for every witness.
fn every_witness(sub: &Submitter, holds: impl Fn(&WitnessStatus) -> bool) {
    let status = sub.status();
    assert!(status.iter().all(holds), "{status:?}");
}

/// Stops a submitter [`submit`] started, and waits for its task to end.
async fn stop((stop, task): (oneshot::Sender<()>, JoinHandle<()>)) {
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_submitter_collects_a_quorum_and_resumes_from_its_store() {
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    let (a, b) = (
        serve("w.example/a", trusting(&signer)).await,
        serve("w.example/b", trusting(&signer)).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cosignatures.json");
    let log = open_log(&dir.path().join("audit"), key_copy(&signer));
    let witnesses = vec![a.endpoint.clone(), b.endpoint.clone()];
    let (sub, running) = submit(&log, fast(witnesses.clone(), &store));
    // The empty log is cosigned too, so a tile client gets a checkpoint before any entry.
    let empty = cosigned(&sub, 0, 2).await;
    assert_eq!(empty.checkpoint.size, 0);
    assert_eq!(a.witness.latest(ORIGIN).unwrap().size(), 0);
    append(&log, "first", 20).await;
    let c = cosigned(&sub, 20, 2).await;
    let trusted: Vec<_> = witnesses.iter().map(|w| w.verifier.clone()).collect();
    let v = verify_cosigned(&c.note, &log.verifiers(), &trusted, 2).unwrap();
    assert_eq!(v.checkpoint.size, 20);
    assert_eq!(a.witness.latest(ORIGIN).unwrap().size(), 20);
    every_witness(&sub, |s| s.conflicts == 0 && s.failures == 0);
    stop(running).await;
    // A new submitter starts from the stored sizes: no 409 on its first round.
    let (sub, running) = submit(&log, fast(witnesses.clone(), &store));
    assert_eq!(
        sub.cosigned().unwrap().checkpoint.size,
        20,
        "the stored note is served at once"
    );
    append(&log, "second", 5).await;
    cosigned(&sub, 25, 2).await;
    every_witness(&sub, |s| s.conflicts == 0);
    stop(running).await;
    // A submitter with no store learns each witness's size from a 409 and resubmits.
    let fresh = dir.path().join("fresh.json");
    let (sub, running) = submit(&log, fast(witnesses, &fresh));
    append(&log, "third", 1).await;
    cosigned(&sub, 26, 2).await;
    every_witness(&sub, |s| s.conflicts == 1 && s.failures == 0);
    stop(running).await;
    log.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_and_forks_are_refused_and_an_honest_log_passes() {
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    let w = serve("w.example/a", trusting(&signer)).await;
    let endpoints = [w.endpoint.clone()];
    let dir = tempfile::tempdir().unwrap();
    let honest = open_log(&dir.path().join("honest"), key_copy(&signer));
    append(&honest, "honest", 5).await;
    let r = check_not_rolled_back(&honest, &endpoints, None)
        .await
        .unwrap();
    assert_eq!(r.probes[0].1, WitnessProbe::New);
    assert_eq!(w.witness.latest(ORIGIN).unwrap().size(), 5);
    // Shorter (rolled back), same size with other entries, longer with other entries.
    for (name, n) in [("short", 3), ("same", 5), ("long", 7)] {
        let forked = open_log(&dir.path().join(name), key_copy(&signer));
        append(&forked, name, n).await;
        let e = check_not_rolled_back(&forked, &endpoints, None)
            .await
            .unwrap_err();
        assert!(matches!(e, WitnessError::RolledBack { .. }), "{name}: {e}");
        forked.close();
        assert_eq!(
            w.witness.latest(ORIGIN).unwrap().size(),
            5,
            "{name}: the witness kept its state"
        );
    }
    append(&honest, "honest-more", 3).await;
    let r = check_not_rolled_back(&honest, &endpoints, None)
        .await
        .unwrap();
    assert_eq!(r.probes[0].1, WitnessProbe::Consistent { witness_size: 5 });
    assert_eq!(r.confirmed(), 1);
    assert_eq!(w.witness.latest(ORIGIN).unwrap().size(), 8);
    // A witness that does not know the log is no evidence either way.
    let stranger = serve("w.example/z", vec![]).await;
    let r = check_not_rolled_back(&honest, std::slice::from_ref(&stranger.endpoint), None)
        .await
        .unwrap();
    assert!(matches!(
        r.probes[0].1,
        WitnessProbe::Refused { status: 404, .. }
    ));
    // A stored cosignature beyond the log is evidence even with every witness down.
    let store = dir.path().join("store.json");
    let mut state = witness::StoredState::default();
    let big = w.witness.latest(ORIGIN).unwrap();
    let (text, _) = witness::protocol::split_note(&big.note).unwrap();
    let line = big.note[text.len() + 1..]
        .lines()
        .last()
        .map(|l| format!("{l}\n"))
        .unwrap();
    state.witnesses.insert(
        w.endpoint.verifier.to_string(),
        witness::WitnessRecord {
            checkpoint: big.checkpoint.clone(),
            text: text.to_owned(),
            cosignature: line,
        },
    );
    state.latest = Some(SignedCheckpoint::open(&big.note, &honest.verifiers()).unwrap());
    witness::CosignatureStore::new(&store)
        .save(ORIGIN, &state)
        .unwrap();
    let short = open_log(&dir.path().join("short"), key_copy(&signer));
    let down = WitnessEndpoint {
        url: "http://127.0.0.1:9".into(),
        timeout: Duration::from_millis(200),
        ..w.endpoint.clone()
    };
    let e = check_not_rolled_back(&short, std::slice::from_ref(&down), Some(&store))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("stored cosignature"), "{e}");
    let r = check_not_rolled_back(&honest, &[down], Some(&store))
        .await
        .unwrap();
    assert_eq!(r.stored_checked, 2);
    assert!(matches!(r.probes[0].1, WitnessProbe::Unavailable(_)));
    assert_eq!(r.confirmed(), 0);
    short.close();
    honest.close();
}

/// A fake witness that answers every request with `status`, `content_type` and `body`.
async fn fake(status: u16, content_type: &'static str, body: &'static str) -> SocketAddr {
    use axum::http::{StatusCode, header};
    let app = axum::Router::new().route(
        "/add-checkpoint",
        axum::routing::post(move || async move {
            (
                StatusCode::from_u16(status).unwrap(),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
        }),
    );
    testkit::http::serve(app).await.unwrap().0
}

#[tokio::test]
async fn the_client_tells_protocol_violations_from_conflicts_and_forks() {
    let log = NoteSigner::generate(ORIGIN).unwrap();
    let note = checkpoint(&log, 5, [1; 32]);
    let verifier = CosignerKey::generate("w.example/1").unwrap().verifier();
    let client = |addr: SocketAddr| {
        WitnessClient::new(WitnessEndpoint {
            url: format!("http://{addr}/"),
            verifier: verifier.clone(),
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    };
    // The size type compared as a media type; the body still strict.
    let c = client(fake(409, "Text/X.Tlog.Size; charset=utf-8", "7\n").await);
    assert_eq!(
        c.add_checkpoint(3, &[], &note).await.unwrap(),
        AddOutcome::Conflict { size: 7 }
    );
    let c = client(fake(409, SIZE_CONTENT_TYPE, "07\n").await);
    assert!(matches!(
        c.add_checkpoint(3, &[], &note).await,
        Err(WitnessError::BadResponse { .. })
    ));
    // A plain 409 is a fork only when the sizes were equal.
    let c = client(fake(409, "text/plain", "7\n").await);
    assert!(matches!(
        c.add_checkpoint(3, &[], &note).await,
        Err(WitnessError::BadResponse { .. })
    ));
    assert!(matches!(
        c.add_checkpoint(5, &[], &note).await.unwrap(),
        AddOutcome::RootMismatch(_)
    ));
    // A size naming the old size sent is no "resubmit from there": the same request would
    // meet the same answer. At the checkpoint's size it is a fork; below it, a witness that
    // holds that size and refuses what extends it (evidence, as a 422 is); from 0, nothing.
    let c = client(fake(409, SIZE_CONTENT_TYPE, "5\n").await);
    assert!(matches!(
        c.add_checkpoint(5, &[], &note).await.unwrap(),
        AddOutcome::RootMismatch(_)
    ));
    assert_eq!(
        c.add_checkpoint(3, &[], &note).await.unwrap(),
        AddOutcome::Conflict { size: 5 }
    );
    let c = client(fake(409, SIZE_CONTENT_TYPE, "3\n").await);
    assert!(matches!(
        c.add_checkpoint(3, &[], &note).await.unwrap(),
        AddOutcome::RootMismatch(_)
    ));
    let c = client(fake(409, SIZE_CONTENT_TYPE, "0\n").await);
    assert!(matches!(
        c.add_checkpoint(0, &[], &note).await,
        Err(WitnessError::BadResponse { .. })
    ));
    // The empty tree has one root: a 409 for it, sized or not, is never a fork (a witness
    // that never cosigned may answer the start-up probe of an empty log so).
    let empty = checkpoint(&log, 0, audit_log::empty_root());
    assert!(matches!(
        c.add_checkpoint(0, &[], &empty).await,
        Err(WitnessError::BadResponse { .. })
    ));
    let c = client(fake(409, "text/plain", "conflict\n").await);
    assert!(matches!(
        c.add_checkpoint(0, &[], &empty).await,
        Err(WitnessError::BadResponse { .. })
    ));
    // A 200 without a valid cosignature line by the configured key.
    let c = client(fake(200, "text/plain", "not a signature\n").await);
    assert!(matches!(
        c.add_checkpoint(0, &[], &note).await,
        Err(WitnessError::BadResponse { .. })
    ));
    let c = client(fake(429, "text/plain", "slow down").await);
    assert!(matches!(
        c.add_checkpoint(0, &[], &note).await.unwrap(),
        AddOutcome::Rejected { status: 429, .. }
    ));
    // More than 63 proof hashes are never sent.
    assert!(matches!(
        c.add_checkpoint(1, &[[0; 32]; 64], &note).await,
        Err(WitnessError::InvalidProof(_))
    ));
}

/// A witness that answers a same-size fork with `409` and its size (the spec leaves that body
/// open): the start-up check and the submitter both take it as the fork it is, where they
/// used to resubmit from the same size until they gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_naming_the_size_sent_is_a_fork_not_a_retry() {
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(&dir.path().join("audit"), key_copy(&signer));
    append(&log, "forked", 5).await;
    let endpoint = WitnessEndpoint {
        url: format!("http://{}", fake(409, SIZE_CONTENT_TYPE, "5\n").await),
        verifier: CosignerKey::generate("w.example/1").unwrap().verifier(),
        timeout: Duration::from_secs(5),
    };
    let e = check_not_rolled_back(&log, std::slice::from_ref(&endpoint), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WitnessError::RolledBack { detail, .. } if detail.contains("another root at size 5")),
        "{e}"
    );
    let (sub, running) = submit(&log, fast(vec![endpoint], &dir.path().join("store.json")));
    let status = testkit::wait::until("a submission error", Duration::from_secs(20), async || {
        let status = sub.status();
        let failed = status[0].last_error.is_some();
        Ok(testkit::wait::settled(failed, status.clone(), status))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let err = status[0].last_error.as_deref().unwrap_or_default();
    assert!(err.contains("the log forked"), "{err}");
    // One 409 to learn the size, then the fork: no resubmission from the same size.
    assert_eq!(status[0].conflicts, 1, "{status:?}");
    stop(running).await;
    log.close();
}
