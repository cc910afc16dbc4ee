//! `onboard backup` from a running `onboard serve` and `onboard restore`, end to end over
//! loopback, as an operator runs them:
//! - a backup taken while 64 callers append audit entries (audited reads) and an onboarding
//!   provisions is restored into a fresh directory; the restored log verifies offline, and the
//!   restored server starts and has the onboarding completed;
//! - no key file's content and no client secret is in an archive;
//! - an archive with one byte flipped is refused with the member that fails its checksum, and
//!   nothing is written;
//! - an older snapshot is refused over a newer data directory, and accepted with
//!   `--force --reason` (recorded as a `store.restore` entry with `forced`);
//! - a backup is refused while a key lives in the state store, and to anyone but an admin;
//! - an archive older than what the witnesses cosigned is refused (`witnessed`).

mod witnessed;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use entra_sim::{Faults, Sim};
use onboard_proto::v1 as pb;
use onboard_proto::v1::audit_client::AuditClient;
use testkit::config::{ADMIN, AUDITOR};
use testkit::keys::write_key_file;
use testkit::onboard_binary;
use testkit::process::{Onboard, ServerFiles, ServerProc};
use testkit::server::{Authed, with_token};
use testkit::sim::{calm, users::GLOBAL_ADMIN};
use testkit::wizard::{claim, drain, invite, provision_stream, signed_in, wait_settled};

/// Concurrent appenders during the backup.
const APPENDERS: usize = 64;
/// The sealing key's hex (a test key; searched for in the archive).
const SEALING_HEX: &str = "5eabed5eabed5eabed5eabed5eabed5eabed5eabed5eabed5eabed5eabed5eab";
/// The invitation token key's hex (a test key; searched for in the archive).
const TOKEN_HEX: &str = "70c0e470c0e470c0e470c0e470c0e470c0e470c0e470c0e470c0e470c0e470c0";

/// A server set-up with key files (a backup refuses keys kept in the state store) and audited
/// reads unthrottled (they are the appenders).
struct Setup {
    /// Config, data directory, signing key.
    files: ServerFiles,
    /// Holds the sealing and token key files.
    keys: tempfile::TempDir,
}

fn setup(sim: &Sim) -> Result<Setup> {
    let keys = tempfile::tempdir()?;
    let sealing = keys.path().join("sealing.key");
    let token = keys.path().join("token.key");
    write_key_file(&sealing, SEALING_HEX.as_bytes())?;
    write_key_file(&token, TOKEN_HEX.as_bytes())?;
    let files = ServerFiles::with(sim, |b| {
        Ok(b.sealing_key(Some(&sealing))
            .token_key(&token)
            .limit("audited_reads_per_minute", 10_000_000)
            .limit("audited_reads_burst", 1_000_000))
    })?;
    Ok(Setup { files, keys })
}

/// The same configuration with another data directory (same keys).
fn config_for(files: &ServerFiles, data: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(&files.config)?;
    let old = files.data_dir().display().to_string();
    ensure!(text.contains(&old), "data_dir not in the config");
    let path = data.with_extension("toml");
    std::fs::write(&path, text.replace(&old, &data.display().to_string()))?;
    Ok(path)
}

/// `onboard ARGS` with `env`, checked to exit 0 (`what` names it in the error).
async fn run_ok(
    onboard: &Onboard,
    args: &[&str],
    env: &[(&str, &str)],
    what: &str,
) -> Result<testkit::process::Run> {
    let run = onboard.run(args, env, None).await?;
    ensure!(run.code == Some(0), "{what}:\n{run}");
    Ok(run)
}

async fn backup(onboard: &Onboard, server: &ServerProc, out: &Path) -> Result<()> {
    let out = out.display().to_string();
    let url = server.url();
    let env = [("ONBOARD_ADDR", url.as_str()), ("ONBOARD_TOKEN", ADMIN)];
    let args = ["backup", "--out", &out, "--reason", "test"];
    run_ok(onboard, &args, &env, "onboard backup").await?;
    // It holds the audit log and every state record: its owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out)?.permissions().mode() & 0o777;
    anyhow::ensure!(mode == 0o600, "the archive has mode {mode:o}");
    Ok(())
}

async fn restore(
    onboard: &Onboard,
    archive: &Path,
    config: &Path,
    extra: &[&str],
) -> Result<testkit::process::Run> {
    let mut args = vec![
        "restore".to_string(),
        "--archive".into(),
        archive.display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    onboard.run(&args, &[], None).await
}

/// `onboard audit export` of a stopped data directory, then `onboard audit verify`.
async fn verify_offline(onboard: &Onboard, data: &Path, vkey: &str) -> Result<String> {
    let (audit, export) = (
        data.join("audit").display().to_string(),
        data.with_extension("export").display().to_string(),
    );
    let args = ["audit", "export", "--data-dir", &audit, "--out", &export];
    run_ok(onboard, &args, &[], "export").await?;
    let args = ["audit", "verify", &export, "--vkey", vkey];
    let run = run_ok(onboard, &args, &[], "verify").await?;
    ensure!(!run.stdout.contains("INVALID"), "verify:\n{run}");
    Ok(run.stdout)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// No key file's content (whole, or its base64/hex body) and no secret in `archive`.
fn no_keys_or_secrets(archive: &[u8], s: &Setup, secrets: &[&str]) -> Result<()> {
    let signing = std::fs::read_to_string(s.files.dir.path().join("signing.key"))?;
    let body: String = signing
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for (what, needle) in [
        ("the signing key file", signing.as_str()),
        ("the signing key's base64", body.as_str()),
        ("the sealing key", SEALING_HEX),
        ("the token key", TOKEN_HEX),
    ] {
        ensure!(
            !contains(archive, needle.as_bytes()),
            "{what} is in the archive"
        );
    }
    for raw in [hex_decode(SEALING_HEX)?, hex_decode(TOKEN_HEX)?] {
        ensure!(
            !contains(archive, &raw),
            "a key's raw bytes are in the archive"
        );
    }
    for secret in secrets {
        ensure!(
            !contains(archive, secret.as_bytes()),
            "a client secret is in the archive"
        );
    }
    Ok(())
}

fn hex_decode(s: &str) -> Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("hex"))
        .collect()
}

/// 64 auditors reading the checkpoint in a loop (each read is an audit entry) until `stop`.
fn appenders(
    server: &ServerProc,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    (0..APPENDERS)
        .map(|_| {
            let (stop, done, url) = (stop.clone(), done.clone(), server.url());
            tokio::spawn(async move {
                let ch = testkit::server::connect(&url, None).await?;
                let mut audit = AuditClient::new(with_token(ch, Some(AUDITOR)));
                while !stop.load(Ordering::SeqCst) {
                    audit.get_checkpoint(pb::GetCheckpointRequest {}).await?;
                    done.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_load_restores_verifies_and_resumes() -> Result<()> {
    // Each Graph call takes 40 ms, so the onboarding is mid-run when the backup is taken.
    let sim = testkit::sim::start(Faults {
        latency_ms: 40,
        ..calm()
    })
    .await?;
    let onboard = onboard_binary!();
    let s = setup(&sim)?;
    let server = onboard.serve(&s.files).await?;
    let ch = server.channel().await?;

    let (token, _) = invite(ch.clone(), "dr-backup", "direct-routing", None).await?;
    let id = signed_in(ch.clone(), &sim, &token, GLOBAL_ADMIN)
        .await?
        .onboarding_id;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks = appenders(&server, stop.clone(), done.clone());
    let run = drain(provision_stream(ch.clone(), &token, &id, "Sbc-Backup").await?);
    let provision = tokio::spawn(run);
    while done.load(Ordering::SeqCst) < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let work = tempfile::tempdir()?;
    let archive = work.path().join("during.tar");
    backup(&onboard, &server, &archive).await?;
    // Appends go on after the backup (waited for, not assumed within a fixed time).
    let during = done.load(Ordering::SeqCst);
    testkit::wait::until_true(
        "an append after the backup",
        Duration::from_secs(30),
        async || Ok(done.load(Ordering::SeqCst) > during),
    )
    .await?;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await??;
    }
    let events = provision.await??;
    let secret = claim(ch.clone(), &id).await?.secret;
    ensure!(!secret.is_empty(), "no secret claimed");
    // A second backup after completion: the sealed secret is in the state store now.
    let after = work.path().join("after.tar");
    backup(&onboard, &server, &after).await?;
    server.terminate()?;

    let bytes = std::fs::read(&archive)?;
    ensure!(
        bytes.get(257..262) == Some(b"ustar".as_slice()),
        "not a tar file"
    );
    let manifest_at = bytes
        .windows(13)
        .position(|w| w == b"manifest.json")
        .context("no manifest")?;
    ensure!(manifest_at < 100, "manifest.json is not the first member");
    no_keys_or_secrets(&bytes, &s, &[&secret])?;
    no_keys_or_secrets(&std::fs::read(&after)?, &s, &[&secret])?;
    println!(
        "{} events; {during} audited reads before the backup ended",
        events.len()
    );

    // Restore into a fresh directory, verify offline, serve, and find the onboarding done.
    let data = work.path().join("restored");
    let config = config_for(&s.files, &data)?;
    let run = restore(&onboard, &archive, &config, &[]).await?;
    ensure!(run.code == Some(0), "restore:\n{run}");
    let report = verify_offline(&onboard, &data, &s.files.vkey).await?;
    println!("{report}");
    let mut files = testkit::process::ServerFiles::with(&sim, Ok)?;
    files.config = config;
    let restored = onboard.serve(&files).await?;
    let info = wait_settled(restored.channel().await?, &id, Duration::from_secs(120)).await?;
    ensure!(
        info.state() == pb::OnboardingState::Completed,
        "{info:?}\n{}",
        restored.log_tail()
    );
    restored.terminate()?;
    verify_offline(&onboard, &data, &s.files.vkey).await?;
    // Into a fresh directory without witnesses no checkpoint was known before: the entry
    // leaves the `known_*` fields out (not 0 and "").
    let log =
        audit_log::AuditLog::open_read_only(data.join("audit"), audit_log::StartupCheck::Full)?;
    let all = testkit::audit::entries(&log)?;
    let entry = all
        .iter()
        .find(|e| e["action"] == "store.restore")
        .context("no store.restore entry")?;
    ensure!(
        entry.get("known_size").is_none() && entry.get("known_root").is_none(),
        "{entry}"
    );
    testkit::audit::check_schema(std::slice::from_ref(entry))?;
    Ok(())
}

/// The emulator, the binary, a [`setup`] with its server serving, and an auditor's client.
async fn serving() -> Result<(Sim, Onboard, Setup, ServerProc, AuditClient<Authed>)> {
    let sim = testkit::sim::start(calm()).await?;
    let onboard = onboard_binary!();
    let s = setup(&sim)?;
    let server = onboard.serve(&s.files).await?;
    let audit = AuditClient::new(with_token(server.channel().await?, Some(AUDITOR)));
    Ok((sim, onboard, s, server, audit))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_older_archives_are_refused_unless_forced() -> Result<()> {
    let (sim, onboard, s, server, mut audit) = serving().await?;
    let work = tempfile::tempdir()?;
    let (older, newer) = (work.path().join("older.tar"), work.path().join("newer.tar"));
    audit.get_checkpoint(pb::GetCheckpointRequest {}).await?;
    backup(&onboard, &server, &older).await?;
    for _ in 0..20 {
        audit.get_checkpoint(pb::GetCheckpointRequest {}).await?;
    }
    backup(&onboard, &server, &newer).await?;
    // A backup that cannot be put in place (here: --out names a directory) leaves no
    // FILE.partial behind: it would hold the log and state records.
    let taken = work.path().join("taken");
    std::fs::create_dir(&taken)?;
    let url = server.url();
    let env = [("ONBOARD_ADDR", url.as_str()), ("ONBOARD_TOKEN", ADMIN)];
    let args = ["backup", "--out", taken.to_str().context("path")?];
    let run = onboard.run(&args, &env, None).await?;
    ensure!(
        run.code != Some(0) && run.stderr.contains("renaming"),
        "{run}"
    );
    ensure!(
        !work.path().join("taken.partial").exists(),
        "a failed backup left its partial archive"
    );
    server.terminate()?;

    // One byte flipped in the middle of the audit records: refused, naming the member.
    let mut bytes = std::fs::read(&older)?;
    let at = bytes
        .windows(10)
        .position(|w| w == b"audit.read")
        .context("no audit.read entry")?;
    bytes[at] ^= 0x01;
    let damaged = work.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes)?;
    let data = work.path().join("fresh");
    let config = config_for(&s.files, &data)?;
    let run = restore(&onboard, &damaged, &config, &[]).await?;
    ensure!(
        run.code != Some(0),
        "a damaged archive was restored:\n{run}"
    );
    ensure!(
        run.stderr
            .contains("member audit.records fails its checksum")
            && run.stderr.contains("nothing was written"),
        "{run}"
    );
    ensure!(
        !data.join("audit").exists() && !data.join("state").exists(),
        "something was written"
    );
    // Cut short (a copy interrupted): refused the same way, nothing written.
    let cut = work.path().join("cut.tar");
    let whole = std::fs::read(&older)?;
    std::fs::write(&cut, &whole[..whole.len() / 2])?;
    let run = restore(&onboard, &cut, &config, &[]).await?;
    ensure!(
        run.code != Some(0) && run.stderr.contains("nothing was written"),
        "a truncated archive:\n{run}"
    );
    ensure!(!data.join("audit").exists(), "something was written");

    // The newer archive into the fresh directory; then the older one over it.
    let run = restore(&onboard, &newer, &config, &[]).await?;
    ensure!(run.code == Some(0), "restore:\n{run}");

    // With another sealing key the restored state store's anchor does not open: refused
    // after the archive was written out, and still the data directory is left exactly as it
    // was (nothing moved aside, no scratch directory, the same log).
    let names = |dir: &Path| -> Result<Vec<String>> {
        let mut v: Vec<String> = std::fs::read_dir(dir)?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        v.sort();
        Ok(v)
    };
    let head = data.join("audit").join("audit-head.note");
    let (names_before, head_before) = (names(&data)?, std::fs::read(&head)?);
    let other_key = work.path().join("other-sealing.key");
    write_key_file(&other_key, "0f".repeat(32).as_bytes())?;
    let sealing = s.keys.path().join("sealing.key").display().to_string();
    let text = std::fs::read_to_string(&config)?;
    ensure!(text.contains(&sealing), "sealing key not in the config");
    let wrong = work.path().join("wrong-key.toml");
    std::fs::write(
        &wrong,
        text.replace(&sealing, &other_key.display().to_string()),
    )?;
    // (The data directory holds one entry more than `newer`: its own store.restore.)
    let all = ["--force", "--allow-rollback", "--reason", "drill"];
    let run = restore(&onboard, &newer, &wrong, &all).await?;
    ensure!(
        run.code != Some(0)
            && run
                .stderr
                .contains("does not open with storage.sealing_key"),
        "{run}"
    );
    ensure!(
        names(&data)? == names_before && std::fs::read(&head)? == head_before,
        "a failed restore changed {}: {:?}",
        data.display(),
        names(&data)?
    );
    let run = restore(&onboard, &older, &config, &[]).await?;
    ensure!(
        run.code != Some(0) && run.stderr.contains("refusing to restore an older snapshot"),
        "{run}"
    );
    let run = restore(&onboard, &older, &config, &["--force"]).await?;
    ensure!(run.code == Some(2), "--force without --reason:\n{run}");
    // --force replaces the directory but never accepts an older archive: that is
    // --allow-rollback, which the restore recipes do not pass.
    let reason = ["--reason", "drill: roll back to the morning"];
    let run = restore(
        &onboard,
        &older,
        &config,
        &[&["--force"], &reason[..]].concat(),
    )
    .await?;
    ensure!(
        run.code != Some(0) && run.stderr.contains("--allow-rollback"),
        "{run}"
    );
    let rollback = [&["--force", "--allow-rollback"], &reason[..]].concat();
    let run = restore(&onboard, &older, &config, &rollback).await?;
    ensure!(
        run.code == Some(0) && run.stdout.contains("forced"),
        "{run}"
    );
    let aside = std::fs::read_dir(&data)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".replaced-"))
        .count();
    ensure!(aside == 2, "the replaced stores were not moved aside");
    verify_offline(&onboard, &data, &s.files.vkey).await?;

    // The restored server starts (the anchor check passes) and the forced restore is audited.
    let mut files = ServerFiles::with(&sim, Ok)?;
    files.config = config.clone();
    let restored = onboard.serve(&files).await?;
    let mut audit = AuditClient::new(with_token(restored.channel().await?, Some(AUDITOR)));
    let size = audit
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await?
        .into_inner()
        .size;
    let entries = audit
        .list_entries(pb::ListEntriesRequest {
            from_seq: size.saturating_sub(10),
            to_seq: size,
            page_size: 10,
            ..Default::default()
        })
        .await?
        .into_inner();
    let restored_entry = entries
        .entries
        .iter()
        .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&e.leaf).ok())
        .find(|e| e["action"] == "store.restore")
        .context("no store.restore entry")?;
    // The entry `onboard restore` writes keeps the auditors' contract.
    testkit::audit::check_schema(std::slice::from_ref(&restored_entry))?;
    ensure!(
        restored_entry["forced"] == true
            && restored_entry["reason"] == "drill: roll back to the morning",
        "{restored_entry}"
    );
    restored.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_refused_while_a_key_lives_in_the_state_store() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let onboard = onboard_binary!();
    // The default test set-up: no sealing_key / token_key files (generated into the store).
    let (files, server) = onboard.start(&sim).await?;
    let out = files.dir.path().join("refused.tar");
    let backup_as = |token: &'static str| {
        let (onboard, out, url) = (&onboard, out.display().to_string(), server.url());
        async move {
            onboard
                .run(
                    &["backup", "--out", &out],
                    &[("ONBOARD_ADDR", &url), ("ONBOARD_TOKEN", token)],
                    None,
                )
                .await
        }
    };
    let run = backup_as(ADMIN).await?;
    ensure!(
        run.code == Some(1)
            && run.stderr.contains("FAILED_PRECONDITION")
            && run.stderr.contains("storage.sealing_key is not set"),
        "{run}"
    );
    ensure!(!out.exists(), "an archive was written");
    // Only an admin may take one.
    let run = backup_as(AUDITOR).await?;
    ensure!(
        run.code == Some(4) && run.stderr.contains("PERMISSION_DENIED"),
        "{run}"
    );
    server.terminate()?;
    Ok(())
}

/// An Admin service whose Backup streams bytes that are no archive (a server, network or disk
/// fault as `onboard backup` would meet it).
struct BrokenAdmin;

#[tonic::async_trait]
impl pb::admin_server::Admin for BrokenAdmin {
    type BackupStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<pb::BackupChunk, tonic::Status>>>;

    async fn backup(
        &self,
        _: tonic::Request<pb::BackupRequest>,
    ) -> Result<tonic::Response<Self::BackupStream>, tonic::Status> {
        let chunk = pb::BackupChunk {
            data: b"not an archive ".repeat(100),
        };
        Ok(tonic::Response::new(tokio_stream::iter(vec![Ok(chunk)])))
    }
}

/// `onboard backup` checks what it received as a restore would, before naming it: an archive
/// that does not check exits 1 saying so, and leaves neither FILE nor FILE.partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_archive_that_does_not_check_is_not_kept() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let serving = tonic::transport::Server::builder()
        .add_service(pb::admin_server::AdminServer::new(BrokenAdmin))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let serving = tokio::spawn(serving);
    let work = tempfile::tempdir()?;
    let out = work.path().join("broken.tar");
    let onboard = onboard_binary!();
    let run = onboard
        .run(
            &["backup", "--out", out.to_str().context("path")?],
            &[("ONBOARD_ADDR", url.as_str()), ("ONBOARD_TOKEN", ADMIN)],
            None,
        )
        .await?;
    serving.abort();
    ensure!(
        run.code == Some(1) && run.stderr.contains("does not check"),
        "{run}"
    );
    ensure!(!out.exists(), "an archive that does not check was kept");
    ensure!(
        !work.path().join("broken.tar.partial").exists(),
        "its partial file was left"
    );
    Ok(())
}
