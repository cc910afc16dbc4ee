//! Witness cosigning end to end: two `onboard witness` processes cosign the checkpoints of a
//! live audit log while appends continue; one goes down and comes back; a submitter with a
//! stale view of the witnesses' sizes goes through the 409 path; `onboard audit verify
//! --witness … --witness-quorum 2` passes and fails as it should; and a rolled-back (or forked)
//! data directory is refused by the start-up check. An export or proof from a stopped data
//! directory with `--cosignatures` carries the cosigned checkpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use audit_log::{AuditLog, LogConfig, NoteSigner};
use serde_json::{Map, Value};
use testkit::copy_dir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use witness::{
    CosignedCheckpoint, CosignerVerifier, Submitter, SubmitterConfig, WitnessEndpoint,
    WitnessError, WitnessProbe, check_not_rolled_back, verify_cosigned,
};

const ORIGIN: &str = "e2e.onboard.invalid/audit";
const BIN: &str = env!("CARGO_BIN_EXE_onboard");
const WAIT: Duration = Duration::from_secs(30);

/// An `onboard witness` child process.
struct WitnessProc {
    /// The process (killed on drop).
    child: Child,
    /// Where it listens.
    addr: SocketAddr,
}

impl WitnessProc {
    /// Starts a witness trusting `log` and waits for its `listening on` line.
    async fn spawn(key: &Path, state: &Path, listen: &str, log: &NoteSigner) -> Result<Self> {
        let mut child = Command::new(BIN)
            .args(["witness", "--listen", listen, "--key"])
            .arg(key)
            .arg("--state-dir")
            .arg(state)
            .arg("--log")
            .arg(format!("{ORIGIN}={}", log.verifier()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting onboard witness")?;
        let stdout = child.stdout.take().context("witness stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(l) = lines.next_line().await? {
                if let Some(a) = l.strip_prefix("listening on http://") {
                    return Ok::<_, anyhow::Error>(a.parse::<SocketAddr>()?);
                }
            }
            bail!("witness exited before listening")
        })
        .await
        .context("witness did not start in time")??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, addr })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL, and wait until the process is gone.
    async fn kill(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// `onboard witness keygen`: the key file and its verifier key.
async fn keygen(dir: &Path, name: &str) -> Result<(PathBuf, CosignerVerifier)> {
    let out = dir.join(format!("{}.key", name.replace('/', "_")));
    let o = Command::new(BIN)
        .args(["witness", "keygen", "--name", name, "--out"])
        .arg(&out)
        .output()
        .await?;
    ensure!(
        o.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let vkey = CosignerVerifier::parse(String::from_utf8(o.stdout)?.trim())?;
    Ok((out, vkey))
}

/// A temporary directory, a new log key, and two `onboard witness` processes,
/// `witness-a.example/w1` and `witness-b.example/w1`, trusting its log, with state in
/// `state-a` and `state-b` of the directory: each one's key file, verifier key and process, and
/// their endpoints.
async fn two_witnesses() -> Result<(
    tempfile::TempDir,
    NoteSigner,
    [(PathBuf, CosignerVerifier, WitnessProc); 2],
    Vec<WitnessEndpoint>,
)> {
    let dir = tempfile::tempdir()?;
    let signer = NoteSigner::generate(ORIGIN)?;
    let mut started = Vec::new();
    for (name, state) in [
        ("witness-a.example/w1", "state-a"),
        ("witness-b.example/w1", "state-b"),
    ] {
        let (key, vkey) = keygen(dir.path(), name).await?;
        let w = WitnessProc::spawn(&key, &dir.path().join(state), "127.0.0.1:0", &signer).await?;
        started.push((key, vkey, w));
    }
    let started: [_; 2] = started
        .try_into()
        .map_err(|_| anyhow::anyhow!("two witnesses started"))?;
    let endpoints = started
        .iter()
        .map(|(_, v, w)| endpoint(w.url(), v))
        .collect();
    Ok((dir, signer, started, endpoints))
}

fn endpoint(url: String, verifier: &CosignerVerifier) -> WitnessEndpoint {
    WitnessEndpoint {
        url,
        verifier: verifier.clone(),
        // Long enough that a witness slowed by a busy machine is not counted as a failure;
        // the outage below is a refused connection, which needs no timeout.
        timeout: Duration::from_secs(10),
    }
}

/// Opens the log in `data`, signed with a copy of `signer`.
fn open_log(data: &Path, signer: &NoteSigner) -> Result<AuditLog> {
    let key = NoteSigner::from_go_private_key(&signer.to_go_private_key())?;
    Ok(AuditLog::open(LogConfig::new(data, ORIGIN), key)?)
}

/// The one place that appends (the log's append API is being renamed on main).
async fn append_one(log: &AuditLog, tag: &str, i: u64) -> Result<()> {
    let mut m = Map::new();
    m.insert("action".into(), Value::String(format!("{tag}.{i}")));
    log.append_fields(&m).await?;
    Ok(())
}

async fn append(log: &AuditLog, tag: &str, n: u64) -> Result<()> {
    for i in 0..n {
        append_one(log, tag, i).await?;
    }
    Ok(())
}

/// A submitter with short back-offs, stopped by dropping or sending on the returned sender.
fn submitter(
    log: &AuditLog,
    witnesses: Vec<WitnessEndpoint>,
    store: &Path,
) -> Result<(Submitter, JoinHandle<()>, oneshot::Sender<()>)> {
    let config = SubmitterConfig {
        min_interval: Duration::from_millis(10),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..SubmitterConfig::new(witnesses, store)
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let (s, task) = Submitter::spawn(log.clone(), config, async move {
        let _ = stopped.await;
    })?;
    Ok((s, task, stop))
}

/// With a submitter running on `log`: appends `n` entries tagged `tag`, waits until both
/// witnesses cosigned a checkpoint of `size`, then stops the submitter.
async fn append_cosigned_by_both(
    log: &AuditLog,
    witnesses: &[WitnessEndpoint],
    store: &Path,
    tag: &str,
    n: u64,
    size: u64,
) -> Result<()> {
    let (sub, task, stop) = submitter(log, witnesses.to_vec(), store)?;
    append(log, tag, n).await?;
    wait_cosigned(&sub, &format!("{size} cosigned"), |c| {
        c.checkpoint.size == size && c.cosigners.len() == 2
    })
    .await?;
    stop.send(()).ok();
    task.await?;
    Ok(())
}

/// Waits for a published cosigned checkpoint that satisfies `pred`.
async fn wait_cosigned(
    s: &Submitter,
    what: &str,
    pred: impl Fn(&CosignedCheckpoint) -> bool,
) -> Result<Arc<CosignedCheckpoint>> {
    let mut rx = s.subscribe();
    let got = tokio::time::timeout(WAIT, rx.wait_for(|c| c.as_ref().is_some_and(|c| pred(c))))
        .await
        .with_context(|| format!("waiting for {what}; status {:?}", s.status()))??;
    got.clone().context("a published checkpoint")
}

/// Appenders that run until stopped; counts acknowledged appends.
struct Appenders {
    /// Set to stop them.
    stop: Arc<AtomicBool>,
    /// Acknowledged appends so far.
    count: Arc<AtomicU64>,
    /// The appender tasks.
    tasks: Vec<JoinHandle<Result<()>>>,
}

impl Appenders {
    fn start(log: &AuditLog, n: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let tasks = (0..n)
            .map(|t| {
                let (log, stop, count) = (log.clone(), stop.clone(), count.clone());
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        append_one(&log, &format!("load{t}"), i).await?;
                        count.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        Self { stop, count, tasks }
    }

    /// Waits until `more` further appends were acknowledged.
    async fn progress(&self, more: u64) -> Result<()> {
        let want = self.count.load(Ordering::Relaxed) + more;
        tokio::time::timeout(WAIT, async {
            while self.count.load(Ordering::Relaxed) < want {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .context("appends stalled")
    }

    async fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await??;
        }
        Ok(())
    }
}

/// `onboard audit verify DIR --vkey … --witness … [--witness-quorum N] [--save-checkpoint F]`.
async fn audit_verify(
    dir: &Path,
    log: &NoteSigner,
    witnesses: &[&CosignerVerifier],
    quorum: Option<usize>,
    save: Option<&Path>,
) -> Result<(bool, String)> {
    let mut cmd = Command::new(BIN);
    cmd.args(["audit", "verify"])
        .arg(dir)
        .arg("--vkey")
        .arg(log.verifier().to_string());
    for w in witnesses {
        cmd.arg("--witness").arg(w.to_string());
    }
    if let Some(q) = quorum {
        cmd.arg("--witness-quorum").arg(q.to_string());
    }
    if let Some(p) = save {
        cmd.arg("--save-checkpoint").arg(p);
    }
    run(&mut cmd).await
}

/// Runs `cmd`: whether it succeeded, and what it printed (standard output, then error).
async fn run(cmd: &mut Command) -> Result<(bool, String)> {
    let o = cmd.output().await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok((o.status.success(), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_witness_processes_cosign_a_live_log_through_an_outage_and_a_stale_store() -> Result<()>
{
    let (dir, signer, [(_, va, a), (kb, vb, b)], witnesses) = two_witnesses().await?;
    let b_addr = b.addr;
    let trusted = [va.clone(), vb.clone()];
    let log = open_log(&dir.path().join("audit"), &signer)?;
    let store = dir.path().join("cosignatures.json");
    let (sub, task, stop) = submitter(&log, witnesses.clone(), &store)?;
    let load = Appenders::start(&log, 4);

    // Both witnesses cosign while appends run.
    load.progress(50).await?;
    let c = wait_cosigned(&sub, "a checkpoint cosigned by both", |c| {
        c.checkpoint.size >= 50 && c.cosigners.len() == 2
    })
    .await?;
    verify_cosigned(&c.note, &log.verifiers(), &trusted, 2)?;
    let stale = dir.path().join("stale.json");
    std::fs::copy(&store, &stale)?;

    // B is killed: appends continue, checkpoints get only A's cosignature, quorum 2 fails.
    b.kill().await?;
    let at_kill = log.size();
    load.progress(200).await?;
    let c = wait_cosigned(&sub, "a checkpoint after B died", |c| {
        c.checkpoint.size > at_kill
    })
    .await?;
    assert_eq!(c.cosigners, vec![va.to_string()]);
    println!(
        "B killed at size {at_kill}; cosigned by A alone at size {}",
        c.checkpoint.size
    );
    let e = verify_cosigned(&c.note, &log.verifiers(), &trusted, 2).unwrap_err();
    assert!(
        matches!(
            e,
            WitnessError::Quorum {
                have: 1,
                need: 2,
                ..
            }
        ),
        "{e}"
    );
    verify_cosigned(&c.note, &log.verifiers(), &trusted, 1)?;
    let st = &sub.status()[1];
    assert!(
        st.failures >= 1
            && st
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("unreachable")),
        "{st:?}"
    );

    // B comes back on the same address with its state: quorum 2 passes again.
    let b = WitnessProc::spawn(
        &kb,
        &dir.path().join("state-b"),
        &b_addr.to_string(),
        &signer,
    )
    .await?;
    let at_restart = log.size();
    let c = wait_cosigned(&sub, "both cosign again", |c| {
        c.checkpoint.size > at_restart && c.cosigners.len() == 2
    })
    .await?;
    verify_cosigned(&c.note, &log.verifiers(), &trusted, 2)?;
    println!(
        "B restarted at size {at_restart}; both cosigned size {}",
        c.checkpoint.size
    );

    // Quiesce and collect cosignatures on the final checkpoint.
    load.stop().await?;
    let size = log.size();
    let fin = wait_cosigned(&sub, "the final checkpoint cosigned by both", |c| {
        c.checkpoint.size == size && c.cosigners.len() == 2
    })
    .await?;
    stop.send(()).ok();
    task.await?;

    // The CLI verifies an export whose checkpoint carries the cosignatures.
    let export = dir.path().join("export");
    log.export_tiles(&export)?;
    std::fs::write(export.join("checkpoint"), &fin.note)?;
    let (ok, out) = audit_verify(&export, &signer, &[&va, &vb], Some(2), None).await?;
    assert!(ok, "{out}");
    assert!(
        out.contains("2/2 trusted witnesses cosigned the checkpoint (quorum 2)"),
        "{out}"
    );
    let (ok, out) = audit_verify(&export, &signer, &[&va, &vb], None, None).await?;
    assert!(ok, "default quorum is every --witness: {out}");
    let only_a: String = fin
        .note
        .lines()
        .filter(|l| !l.contains("witness-b.example"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(export.join("checkpoint"), &only_a)?;
    // A checkpoint short of the quorum is not saved as the next baseline; one that meets it is.
    let saved = dir.path().join("saved-checkpoint");
    let (ok, out) = audit_verify(&export, &signer, &[&va, &vb], Some(2), Some(&saved)).await?;
    assert!(!ok, "{out}");
    assert!(!saved.exists(), "saved although the quorum failed: {out}");
    assert!(
        out.contains("INVALID: witness quorum: checkpoint cosigned by 1 of the 2 trusted witnesses required (cosigned: witness-a.example/w1; missing: witness-b.example/w1)"),
        "{out}"
    );
    let (ok, out) = audit_verify(&export, &signer, &[&va, &vb], Some(1), Some(&saved)).await?;
    assert!(ok, "{out}");
    assert_eq!(std::fs::read_to_string(&saved)?, only_a);
    let (ok, out) = audit_verify(&export, &signer, &[&va, &vb], Some(3), None).await?;
    assert!(
        !ok && out.contains("needs at least 3 distinct --witness keys"),
        "{out}"
    );

    // A submitter whose store is stale believes both witnesses are at an old size: each
    // answers 409 with its real size once, and the submitter resubmits from there.
    let (sub, task, stop) = submitter(&log, witnesses, &stale)?;
    append(&log, "after", 3).await?;
    let size = log.size();
    wait_cosigned(&sub, "cosignatures after the 409s", |c| {
        c.checkpoint.size == size && c.cosigners.len() == 2
    })
    .await?;
    for st in sub.status() {
        println!(
            "stale store: {} conflicts, cosigned size {:?}",
            st.conflicts, st.cosigned_size
        );
        assert_eq!((st.conflicts, st.failures), (1, 0), "{st:?}");
    }
    stop.send(()).ok();
    task.await?;
    drop((a, b));
    log.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_or_forked_data_directory_is_refused_at_startup() -> Result<()> {
    let (dir, signer, [(_, _, a), (_, _, b)], witnesses) = two_witnesses().await?;
    let data = dir.path().join("audit");
    let store = dir.path().join("cosignatures.json");

    // 30 entries, cosigned by both; then a backup copy of the stopped data directory.
    let log = open_log(&data, &signer)?;
    append_cosigned_by_both(&log, &witnesses, &store, "before", 30, 30).await?;
    log.close();
    let backup = dir.path().join("backup");
    copy_dir(&data, &backup)?;

    // 20 more, cosigned by both.
    let log = open_log(&data, &signer)?;
    append_cosigned_by_both(&log, &witnesses, &store, "after", 20, 50).await?;
    let report = check_not_rolled_back(&log, &witnesses, Some(&store)).await?;
    assert_eq!(report.log_size, 50);
    assert!(report.stored_checked >= 2);
    for (_, p) in &report.probes {
        assert_eq!(*p, WitnessProbe::Consistent { witness_size: 50 });
    }
    log.close();

    // The backup is restored: the log opens without complaint (its head file is old too)...
    std::fs::remove_dir_all(&data)?;
    copy_dir(&backup, &data)?;
    let log = open_log(&data, &signer)?;
    assert_eq!(log.size(), 30);
    // ...but the stored cosignatures and each witness refuse it.
    let e = check_not_rolled_back(&log, &witnesses, Some(&store))
        .await
        .unwrap_err();
    assert!(matches!(e, WitnessError::RolledBack { .. }), "{e}");
    for w in &witnesses {
        let e = check_not_rolled_back(&log, std::slice::from_ref(w), None)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("cosigned a checkpoint of 50 entries but the log has only 30"),
            "{e}"
        );
    }

    // Appending other entries up to the same size is a fork, refused the same way.
    append(&log, "fork", 20).await?;
    assert_eq!(log.size(), 50);
    for w in &witnesses {
        let e = check_not_rolled_back(&log, std::slice::from_ref(w), None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("another root at size 50"), "{e}");
    }
    // With one witness down, the other still refuses; the down one is only reported.
    b.kill().await?;
    let e = check_not_rolled_back(&log, &witnesses, None)
        .await
        .unwrap_err();
    assert!(matches!(e, WitnessError::RolledBack { .. }), "{e}");
    drop(a);
    log.close();
    Ok(())
}

/// `onboard` with `args`: whether it succeeded, and what it printed.
async fn onboard<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<(bool, String)> {
    run(Command::new(BIN).args(args)).await
}

/// An export, a publication and a proof made from a stopped server's data directory with its
/// cosignature store (`--cosignatures`) are as of the latest checkpoint both witnesses
/// cosigned (30 of the log's 35 entries), carry their cosignatures and pass a quorum check;
/// without the store the export holds the log's own latest checkpoint, which fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_copy_with_the_store_carries_the_cosignatures() -> Result<()> {
    let (dir, signer, [(_, va, a), (_, vb, b)], witnesses) = two_witnesses().await?;
    let data = dir.path().join("audit");
    let store = dir.path().join("cosignatures.json");
    let log = open_log(&data, &signer)?;
    append_cosigned_by_both(&log, &witnesses, &store, "cosigned", 30, 30).await?;
    append(&log, "later", 5).await?;
    let vkeys = log.verifiers();
    log.close();
    let (data, store) = (data.display().to_string(), store.display().to_string());
    let trusted = [&va, &vb];

    let plain = dir.path().join("plain");
    let out = plain.display().to_string();
    let (ok, text) = onboard(&["audit", "export", "--data-dir", &data, "--out", &out]).await?;
    ensure!(ok, "{text}");
    let (ok, text) = audit_verify(&plain, &signer, &trusted, Some(2), None).await?;
    ensure!(
        !ok,
        "the log's own checkpoint passed a quorum check: {text}"
    );

    let cosigned = dir.path().join("cosigned");
    let out = cosigned.display().to_string();
    let export = [
        "audit",
        "export",
        "--data-dir",
        &data,
        "--cosignatures",
        &store,
    ];
    let (ok, text) = onboard(&[&export[..], &["--out", &out]].concat()).await?;
    ensure!(ok && text.contains("30 of the log's 35 entries"), "{text}");
    let (ok, text) = audit_verify(&cosigned, &signer, &trusted, Some(2), None).await?;
    ensure!(ok, "{text}");
    // The plain export is ahead of the cosigned checkpoint: a copy never moves back.
    let (ok, text) =
        onboard(&[&export[..], &["--out", &plain.display().to_string()]].concat()).await?;
    ensure!(!ok && text.contains("a later export of this log"), "{text}");

    // Published from the stopped server, the copy carries them too.
    let published = dir.path().join("published");
    let to = published.display().to_string();
    let publish = ["audit", "publish", "--data-dir", &data];
    let with_store = ["--cosignatures", &store, "--to", &to];
    let (ok, text) = onboard(&[&publish[..], &with_store[..]].concat()).await?;
    ensure!(ok && text.contains("published 30 entries"), "{text}");
    let (ok, text) = audit_verify(&published, &signer, &trusted, Some(2), None).await?;
    ensure!(ok, "{text}");

    let proof = [
        "audit",
        "proof",
        "--data-dir",
        &data,
        "--cosignatures",
        &store,
    ];
    let (ok, text) = onboard(&[&proof[..], &["--seq", "3"]].concat()).await?;
    ensure!(ok, "{text}");
    let p = audit_log::TlogProof::parse(&text).map_err(anyhow::Error::msg)?;
    let note = std::fs::read_to_string(cosigned.join("checkpoint"))?;
    ensure!(p.checkpoint_note == note, "{text}");
    verify_cosigned(&p.checkpoint_note, &vkeys, &[va.clone(), vb.clone()], 2)?;
    // Entry 32 is in the log, not in the cosigned checkpoint.
    let (ok, text) = onboard(&[&proof[..], &["--seq", "32"]].concat()).await?;
    ensure!(!ok && text.contains("not in the checkpoint"), "{text}");
    drop((a, b));
    Ok(())
}
