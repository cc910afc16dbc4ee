//! `onboard audit …` against a running server's tiles API (`http(s)://…`) or a publication
//! target (`s3://…`, `gs://…`, `az://…`, `file://…`, a directory): verify (once, incrementally,
//! or following the log), export a copy, write a proof, and publish a stopped server's log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use audit_log::verify::{VerifyOptions, VerifyReport};
use audit_log::{AuditLog, StartupCheck};
use audit_remote::fetch::{copy_to_dir, tlog_proof_from_tiles, verify_source};
use audit_remote::{
    BlockingReader, ClientSettings, FollowStep, Follower, Publisher, Source, Target,
};
use clap::Args;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::audit_cli::{parse_vkeys, print_export, print_report, read_since};
use crate::audit_verdict::Verdict;

/// How to reach an `https://` tiles API that is not open to everyone.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Bearer token for a tiles API with `access = "bearer"` (better: the environment variable).
    #[arg(long, env = "ONBOARD_TILES_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,
    /// A CA certificate (PEM) to trust for an `https://` source, e.g. the server's private CA.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for an `https://` source with `access = "mtls"`.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

/// `--follow` and its poll interval.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// Time between two checkpoint fetches.
    pub interval: Duration,
}

/// A location is a URL when it has a scheme; otherwise it is a directory path.
pub fn is_url(location: &str) -> bool {
    location.contains("://")
}

/// `location` as printed: a URL without the credentials it may carry (`https://user:pw@host/`,
/// or a token as the user name: `https://TOKEN@host/`), anything else as given.
pub fn shown(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(u) if u.password().is_some() || !u.username().is_empty() => audit_remote::shown(&u),
        _ => location.to_owned(),
    }
}

/// Opens a tiles API, a publication target or a directory for reading.
pub fn open_source(location: &str, remote: &RemoteArgs) -> anyhow::Result<Arc<Source>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let identity = match (&remote.client_cert, &remote.client_key) {
        (Some(c), Some(k)) => {
            let mut pem = Zeroizing::new(read(c)?);
            pem.extend_from_slice(b"\n");
            pem.extend_from_slice(&Zeroizing::new(read(k)?));
            let text = String::from_utf8(pem.to_vec()).context("client certificate is not PEM")?;
            Some(SecretString::from(text))
        }
        _ => None,
    };
    let settings = ClientSettings {
        bearer_token: remote.token.clone(),
        ca_pem: remote.ca_cert.as_deref().map(read).transpose()?,
        identity_pem: identity,
        timeout: Some(Duration::from_secs(60)),
    };
    Ok(Arc::new(Source::parse(location, settings)?))
}

/// How many threads verifying uses: one per available CPU.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Writes `note` to `path` (through a temporary file and a rename: never half a note).
pub fn save(path: &Path, note: &str) -> anyhow::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, note).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// What else a checkpoint note must pass, beyond its log signature and the tiles it covers, to
/// count as verified (`onboard audit verify --origin`, `--witness`): `false` (having said why)
/// when it does not.
pub type NoteCheck<'a> = &'a dyn Fn(&str) -> anyhow::Result<bool>;

/// `onboard audit verify <URL>`: verifies once (incrementally with a saved checkpoint) or
/// follows the log. Prints the same summary as for an export directory; `false` when anything
/// failed. Verifying once, with the signed checkpoint that was checked (the caller checks it
/// with `check` and saves it to `save_to`). Following, every new checkpoint must pass `check`
/// too before it counts as verified and is saved to `save_to` here; the first that does not ends
/// the run as INVALID; no checkpoint is returned.
pub async fn verify_url(
    location: &str,
    vkeys: &[String],
    since: Option<&Path>,
    save_to: Option<&Path>,
    follow: Option<Follow>,
    check: NoteCheck<'_>,
    remote: &RemoteArgs,
) -> anyhow::Result<(Verdict, Option<String>)> {
    let keys = parse_vkeys(vkeys)?;
    let since = read_since(since)?;
    let source = open_source(location, remote)?;
    let label = format!("audit log {}", shown(location));
    let Some(follow) = follow else {
        let options = VerifyOptions {
            threads: threads(),
            incremental: since.is_some(),
        };
        // Saved by the caller, once the witness quorum has been checked on this note too.
        let (note, report) = verify_source(source, keys, since, options).await?;
        print_report(&label, &report);
        return Ok((Verdict::of(&report), Some(note)));
    };
    let mut follower = Follower::new(source, keys, since, threads())?;
    let mut first = true;
    loop {
        match follower.poll().await {
            FollowStep::Unchanged { .. } => {}
            FollowStep::Verified { report } => {
                if first {
                    print_report(&label, &report);
                    first = false;
                } else {
                    print_step(&report);
                }
                if let Some(note) = follower.last_note() {
                    if !check(note)? {
                        return Ok((Verdict::Invalid, None));
                    }
                    if let Some(p) = save_to {
                        save(p, note)?;
                    }
                }
            }
            FollowStep::Unreachable(e) => {
                println!("WARNING: {}: {e} (trying again)", shown(location));
            }
            FollowStep::NotRead { report } => {
                println!(
                    "WARNING: the checkpoint of {} entries could not be read in full; nothing read was wrong (trying again)",
                    report.size
                );
                for u in &report.unreadable {
                    println!("UNREADABLE: {u}");
                }
            }
            FollowStep::Suspect { report } => {
                if first {
                    print_report(&label, &report);
                    return Ok((Verdict::Invalid, None));
                }
                println!(
                    "WARNING: the checkpoint of {} entries did not verify; checking again at the next poll",
                    report.size
                );
                for p in &report.problems {
                    println!("INVALID: {p}");
                }
            }
            FollowStep::Alert { message, report } => {
                if let Some(r) = report {
                    for p in &r.problems {
                        println!("INVALID: {p}");
                    }
                }
                println!("ALERT: {message}");
                return Ok((Verdict::Invalid, None));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(follow.interval) => {}
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for Ctrl-C")?;
                // Each checkpoint was checked and saved as it verified.
                return Ok((Verdict::Verified, None));
            }
        }
    }
}

/// One line per new checkpoint while following.
fn print_step(r: &VerifyReport) {
    let since = match r.since {
        Some((s, true)) => format!(", consistent with the checkpoint of {s} entries"),
        _ => String::new(),
    };
    println!(
        "Checkpoint of {} entries verified: entries {} to {} valid{since}; root {}",
        r.size,
        r.first,
        r.size.saturating_sub(1),
        hex::encode(r.root)
    );
}

/// `onboard audit export --from …`: a local copy in the export layout, of a checkpoint that
/// verifies with `vkeys`.
pub async fn export_from(
    location: &str,
    out: &Path,
    vkeys: &[String],
    remote: &RemoteArgs,
) -> anyhow::Result<()> {
    let keys = parse_vkeys(vkeys)?;
    let source = open_source(location, remote)?;
    print_export(&copy_to_dir(&source, out, &keys).await?, out);
    Ok(())
}

/// `onboard audit proof --from …`: a tlog-proof computed from the tiles, against a checkpoint
/// that verifies with `vkeys`.
pub async fn proof_from(
    location: &str,
    seq: u64,
    vkeys: &[String],
    remote: &RemoteArgs,
) -> anyhow::Result<String> {
    let keys = parse_vkeys(vkeys)?;
    let source = open_source(location, remote)?;
    let note = source.checkpoint().await?;
    let reader = BlockingReader::new(source, tokio::runtime::Handle::current());
    let proof =
        tokio::task::spawn_blocking(move || tlog_proof_from_tiles(&reader, &note, &keys, seq))
            .await??;
    Ok(proof.to_text())
}

/// `onboard audit publish`: publishes a stopped server's log to a target once.
pub async fn publish(data_dir: &Path, to: &str, cosignatures: Option<&Path>) -> anyhow::Result<()> {
    let dir = crate::audit_cli::audit_dir(data_dir)?;
    let log = AuditLog::open_read_only(&dir, StartupCheck::NodesOnly)?;
    let target = Target::parse(to, true)?;
    let cosigned = crate::audit_cli::cosigned(&log, cosignatures)?;
    let mut publisher = Publisher::new(log.clone(), target);
    if let Some(cp) = &cosigned {
        log.check_own(&cp.checkpoint)?;
        // A feed that never changes: publish_once hands out what it holds now.
        let (_fixed, feed) = tokio::sync::watch::channel(Some(Arc::new(cp.clone())));
        publisher = publisher.with_feed(audit_log::CheckpointFeed::Vouched(feed));
    }
    let size = publisher.publish_once().await?;
    let to = shown(to);
    match cosigned {
        Some(cp) if size > cp.checkpoint.size => println!(
            "{to} already holds {size} entries, more than the cosigned checkpoint ({}): left \
             as it is",
            cp.checkpoint.size
        ),
        Some(_) => println!("published {size} entries to {to} (the latest cosigned checkpoint)"),
        None => println!("published {size} entries to {to}"),
    }
    Ok(())
}

/// Verifies a directory the way a URL is verified (used by `--follow` on a directory).
pub fn dir_as_url(dir: &Path) -> anyhow::Result<String> {
    let abs = std::fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
    match url::Url::from_directory_path(&abs) {
        Ok(u) => Ok(u.to_string()),
        Err(()) => bail!("{} cannot be named as a file:// URL", abs.display()),
    }
}
