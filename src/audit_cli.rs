//! `onboard keygen` and `onboard audit …`: key generation, export, verification, per-entry
//! proofs, publication and signing-key rotation. Offline tools read the audit log's own sled
//! directory (`DATA_DIR/audit`) of a stopped server; the same tools read a running server's
//! tiles API or a publication target through `audit_fetch`.

use onboard_core::audit::{Action, AuditEntry, Phase, Scope, Target, TargetKind, change};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use audit_log::verify::{VerifyReport, verify_export};
use audit_log::{AuditLog, LogConfig, NoteSigner, NoteVerifier, StartupCheck};
use clap::{Args, Subcommand, ValueEnum};

use crate::audit_fetch::{self, Follow, RemoteArgs};
use crate::audit_verdict::Verdict;

/// Help text of `--data-dir`: which directory it is.
const DATA_DIR_HELP: &str = "The audit log's sled directory of a STOPPED server: `audit` inside the server's \
`[storage] data_dir` (the server's data directory itself is accepted too). sled locks it while \
the server runs; use --from for a running server";
/// Key file formats `keygen` can write.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyFormat {
    /// Go's `PRIVATE+KEY+<name>+<id>+<base64>` line (golang.org/x/mod/sumdb/note).
    Note,
    /// PKCS#8 PEM; the key name is the configured origin.
    Pem,
}

/// `onboard keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The log origin, which is also the key name (e.g. `onboard.example.net/audit`).
    #[arg(long)]
    pub origin: String,
    /// Where to write the private key (created with mode 0600; never inside the data directory).
    #[arg(long)]
    pub out: PathBuf,
    /// Key file format.
    #[arg(long, value_enum, default_value = "note")]
    pub format: KeyFormat,
}

/// Where `export` and `proof` read the log: a stopped server's data directory, or a running
/// server's tiles API or a publication target, with the log's key.
#[derive(Debug, Args)]
pub struct LogAt {
    #[arg(long, help = DATA_DIR_HELP, required_unless_present = "from", conflicts_with = "from")]
    data_dir: Option<PathBuf>,
    /// Read the log from a running server's tiles API (`https://host:port/`) or a publication
    /// target (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///dir`, a directory).
    #[arg(long)]
    from: Option<String>,
    /// With --from: the log's verifier key (`name+id+base64`) or a file holding one, repeat
    /// for old keys. The fetched checkpoint must verify before any tile is read.
    #[arg(long, requires = "from", required_unless_present = "data_dir")]
    vkey: Vec<String>,
    /// With --data-dir: the server's cosignature store (`[witnessing] store`). The copy or
    /// proof is made as of the latest checkpoint its witnesses cosigned, with their cosignature
    /// lines (what the tiles API serves), not the log's own latest, which only the log signed.
    #[arg(long, requires = "data_dir")]
    cosignatures: Option<PathBuf>,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// `onboard audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Writes the log in the C2SP tlog-tiles layout, from a stopped server's data directory
    /// or from a running server's tiles API or a publication target.
    Export {
        #[command(flatten)]
        log: LogAt,
        /// The export directory (created if needed; an earlier export of this log there is
        /// extended, keeping its full tiles; another log's or history's is refused).
        #[arg(long)]
        out: PathBuf,
    },
    /// Recomputes a log in the tlog-tiles layout and checks its signature. Exits 1 when the
    /// log fails verification (`INVALID:`/`ALERT:` lines), 3 when it could not be read in
    /// full and nothing read was wrong (`UNREADABLE:` lines: verify again later).
    Verify {
        /// An export directory, a running server's tiles API (`https://host:port/`), or a
        /// publication target (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///dir`).
        /// From a URL only the tiles needed are fetched.
        #[arg(value_name = "DIR_OR_URL")]
        source: String,
        /// A verifier key (`name+id+base64`) or a file holding one; repeat for old keys.
        #[arg(long, required = true)]
        vkey: Vec<String>,
        /// A signed checkpoint saved earlier: the log must extend it. From a URL, only the
        /// entries added since are fetched and checked, with a consistency proof computed from
        /// the tiles.
        #[arg(long)]
        since_checkpoint: Option<PathBuf>,
        /// Keep polling the checkpoint and verify each new one against the last (from a
        /// URL or directory); prints `ALERT:` and exits non-zero when the log forks or rewinds.
        /// Each new checkpoint must pass --origin and the --witness quorum too before it is
        /// saved; the first that does not ends the run as INVALID.
        #[arg(long)]
        follow: bool,
        /// Seconds between two polls with --follow.
        #[arg(long, default_value_t = 10.0, requires = "follow")]
        interval: f64,
        /// Write each checkpoint that verified to this file (for the next --since-checkpoint).
        #[arg(long)]
        save_checkpoint: Option<PathBuf>,
        /// A trusted witness's verifier key, or a file of them; repeat for each witness.
        #[arg(long)]
        witness: Vec<String>,
        /// How many of the --witness keys must have cosigned the checkpoint (default: all).
        #[arg(long, requires = "witness")]
        witness_quorum: Option<usize>,
        /// The log's origin (`[audit] origin`): a checkpoint naming another is INVALID, even
        /// when a --vkey verifies it (a key shared by two logs cannot pass one off as the
        /// other).
        #[arg(long)]
        origin: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Writes a C2SP tlog-proof for one entry against the latest checkpoint.
    Proof {
        #[command(flatten)]
        log: LogAt,
        /// The entry's index.
        #[arg(long)]
        seq: u64,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Publishes a stopped server's log to object storage once (a running server publishes
    /// continuously); resumes from what the target holds, checkpoint last.
    Publish {
        #[arg(long, help = DATA_DIR_HELP)]
        data_dir: PathBuf,
        /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, `file:///dir`
        /// or a directory; credentials from the cloud SDKs' environment (`AWS_*`, …).
        #[arg(long)]
        to: String,
        /// The server's cosignature store (`[witnessing] store`): publish the latest
        /// checkpoint its witnesses cosigned, with their cosignature lines, as the running
        /// server does, not the log's own latest.
        #[arg(long)]
        cosignatures: Option<PathBuf>,
    },
    /// Rotates the signing key: the rotation is an entry signed by both keys.
    RotateKey {
        #[arg(long, help = DATA_DIR_HELP)]
        data_dir: PathBuf,
        /// The current key file.
        #[arg(long)]
        key: PathBuf,
        /// The new key file (from `onboard keygen` with the same origin).
        #[arg(long)]
        new_key: PathBuf,
        /// Who asked for the rotation (recorded as the entry's actor).
        #[arg(long, default_value = "admin:cli")]
        actor: String,
    },
    /// After the audit log was lost (the server refuses to start because the state store
    /// recorded a longer or different log), accepts the log as it is: appends a
    /// `store.reanchor` entry with what was recorded and why, and anchors the state store to
    /// the log now. The server must be stopped. Restoring the log from a backup is better.
    Reanchor {
        /// The server's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Why the recorded log is gone (recorded in the entry).
        #[arg(long)]
        reason: String,
    },
}

/// Reads a key file; the origin is the Go key's own name, or `origin` for PEM.
pub fn read_key(path: &Path, origin: &str) -> anyhow::Result<NoteSigner> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?,
    );
    NoteSigner::from_key_file_text(&text, origin)
        .with_context(|| format!("parsing key {}", path.display()))
}

/// Writes a new key and returns its verifier key.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<NoteVerifier> {
    let signer = NoteSigner::generate(&args.origin)?;
    let text = match args.format {
        KeyFormat::Note => signer.to_go_private_key(),
        KeyFormat::Pem => signer.to_pkcs8_pem()?,
    };
    write_private(&args.out, text.as_bytes())?;
    Ok(signer.verifier())
}

/// Creates a file only its owner can read; refuses to overwrite a key.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    onboard_core::key_file::write_new(path, data).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            path.display()
        )
    })
}

/// The key strings that key options (`--vkey`, `--witness`) give: each value is a key string,
/// or a file holding one per line.
pub fn key_lines(values: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for v in values {
        let text = if Path::new(v).is_file() {
            std::fs::read_to_string(v).with_context(|| format!("reading {v}"))?
        } else {
            v.clone()
        };
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(out)
}

/// Parses `--vkey` values: a key string, or a file holding one per line.
pub fn parse_vkeys(values: &[String]) -> anyhow::Result<Vec<NoteVerifier>> {
    key_lines(values)?
        .iter()
        .map(|line| {
            NoteVerifier::parse(line)
                .with_context(|| format!("verifier key {}", audit_log::note::key_shown(line)))
        })
        .collect()
}

/// The audit log's sled directory: `dir` itself, or `dir/audit` when given the server's data
/// directory.
pub fn audit_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.join("conf").exists() {
        return Ok(dir.to_owned());
    }
    let inner = dir.join(onboard_server::AUDIT_DIR);
    if inner.join("conf").exists() {
        return Ok(inner);
    }
    bail!(
        "{} is not an audit log directory: give the server's `[storage] data_dir` or its `{}` subdirectory",
        dir.display(),
        onboard_server::AUDIT_DIR
    )
}

/// The one line an export prints, local (`audit export`) or from a remote log (`--from`).
pub fn print_export(s: &audit_log::ExportSummary, out: &Path) {
    println!(
        "exported {} entries to {} ({} entry bundles, {} hash tiles written, {} unchanged)",
        s.size,
        out.display(),
        s.bundles_written,
        s.hash_tiles_written,
        s.skipped
    );
}

/// Prints a CloudTrail-style summary and one `INVALID:` line per problem; `what` names the
/// log checked (`audit log export DIR`, `audit log URL`).
pub fn print_report(what: &str, r: &VerifyReport) {
    println!("Validating {what} (origin {})", r.origin);
    if r.size == 0 {
        println!("Results requested for an empty log");
    } else {
        println!(
            "Results requested for entries {} to {} (checkpoint size {})",
            r.first,
            r.size - 1,
            r.size
        );
    }
    if let Some((from, to)) = &r.time_range {
        println!("Results found for {from} to {to}:");
    }
    println!();
    println!(
        "{}/1 checkpoint signature valid{}",
        u8::from(r.checkpoint_valid),
        if r.signed_by.is_empty() {
            String::new()
        } else {
            format!(" (signed by {})", r.signed_by.join(", "))
        }
    );
    println!("{}/{} entries valid", r.entries_valid, r.size - r.first);
    println!("{}/{} hash tiles valid", r.tiles_valid, r.tiles_total);
    println!(
        "{}/{} entry bundles valid",
        r.bundles_valid, r.bundles_total
    );
    match r.since {
        Some((s, true)) => println!("Consistent with the saved checkpoint of {s} entries"),
        Some((s, false)) => println!("NOT consistent with the saved checkpoint of {s} entries"),
        None => {}
    }
    println!("Root hash {}", hex::encode(r.root));
    if !r.actions.is_empty() {
        let top: Vec<String> = r.actions.iter().map(|(a, n)| format!("{a}={n}")).collect();
        println!("Actions: {}", top.join(" "));
    }
    for p in &r.problems {
        println!("INVALID: {p}");
    }
    for u in &r.unreadable {
        println!("UNREADABLE: {u}");
    }
}

/// The saved checkpoint a verification starts from (`--since-checkpoint`), when given.
pub fn read_since(since: Option<&Path>) -> anyhow::Result<Option<String>> {
    since
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()
}

/// Runs the verifier on an export directory and prints its report.
pub fn verify(dir: &Path, vkeys: &[String], since: Option<&Path>) -> anyhow::Result<Verdict> {
    let keys = parse_vkeys(vkeys)?;
    let since = read_since(since)?;
    let report = verify_export(dir, &keys, since.as_deref(), audit_fetch::threads());
    print_report(&format!("audit log export {}", dir.display()), &report);
    Ok(Verdict::of(&report))
}

/// Runs one `onboard audit …` command.
pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Export {
            log:
                LogAt {
                    from: Some(from),
                    vkey,
                    remote,
                    ..
                },
            out,
        } => audit_fetch::export_from(&from, &out, &vkey, &remote).await?,
        AuditCommand::Export {
            log:
                LogAt {
                    data_dir: Some(data_dir),
                    cosignatures,
                    ..
                },
            out,
        } => {
            let log = AuditLog::open_read_only(audit_dir(&data_dir)?, StartupCheck::Full)?;
            match cosigned(&log, cosignatures.as_deref())? {
                Some(cp) => {
                    print_export(&log.export_tiles_at(&out, &cp)?, &out);
                    println!(
                        "as of the latest cosigned checkpoint: {} of the log's {} entries",
                        cp.checkpoint.size,
                        log.size()
                    );
                }
                None => print_export(&log.export_tiles(&out)?, &out),
            }
        }
        AuditCommand::Verify {
            source,
            vkey,
            since_checkpoint,
            follow,
            interval,
            save_checkpoint,
            witness,
            witness_quorum,
            origin,
            remote,
        } => {
            let follow = follow
                .then(|| {
                    Duration::try_from_secs_f64(interval)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .map(|interval| Follow { interval })
                        .context("--interval must be a positive number of seconds")
                })
                .transpose()?;
            // What a note that verified must pass too: the origin asked for, the witness
            // quorum; checked on exactly that note, which is saved as the next
            // `--since-checkpoint` only when all passed (following: each new one).
            let check = |note: &str| -> anyhow::Result<bool> {
                if let Some(want) = &origin {
                    let got = note.lines().next().unwrap_or("");
                    if got != want {
                        println!("INVALID: the checkpoint's origin is {got:?}, not {want:?}");
                        return Ok(false);
                    }
                }
                if witness.is_empty() {
                    return Ok(true);
                }
                crate::witness_cli::check_quorum(note, &vkey, &witness, witness_quorum)
            };
            let following = follow.is_some();
            let (mut verdict, note) = if audit_fetch::is_url(&source) || following {
                let url = if audit_fetch::is_url(&source) {
                    source
                } else {
                    audit_fetch::dir_as_url(Path::new(&source))?
                };
                audit_fetch::verify_url(
                    &url,
                    &vkey,
                    since_checkpoint.as_deref(),
                    save_checkpoint.as_deref(),
                    follow,
                    &check,
                    &remote,
                )
                .await?
            } else {
                let dir = Path::new(&source);
                let path = dir.join("checkpoint");
                let before = std::fs::read_to_string(&path).ok();
                let verdict = verify(dir, &vkey, since_checkpoint.as_deref())?;
                let after = std::fs::read_to_string(&path).ok();
                if before != after {
                    bail!(
                        "{} changed while it was being verified; verify again",
                        path.display()
                    );
                }
                (verdict, after)
            };
            // Following, each checkpoint was checked and saved as it verified.
            if !following {
                verdict = verdict.and(match &note {
                    Some(note) => check(note)?,
                    None if origin.is_some() || !witness.is_empty() => {
                        println!("INVALID: no checkpoint to check the origin or witnesses of");
                        false
                    }
                    None => true,
                });
                if let (Verdict::Verified, Some(p), Some(n)) = (verdict, &save_checkpoint, &note) {
                    audit_fetch::save(p, n)?;
                }
            }
            verdict.into_result()?;
        }
        AuditCommand::Proof {
            log:
                LogAt {
                    data_dir,
                    from,
                    vkey,
                    cosignatures,
                    remote,
                },
            seq,
            out,
        } => {
            let text = match (from, data_dir) {
                (Some(from), _) => audit_fetch::proof_from(&from, seq, &vkey, &remote).await?,
                (None, Some(dir)) => {
                    let log = AuditLog::open_read_only(audit_dir(&dir)?, StartupCheck::NodesOnly)?;
                    match cosigned(&log, cosignatures.as_deref())? {
                        Some(cp) => log.tlog_proof_at(seq, &cp)?.to_text(),
                        None => log.tlog_proof(seq)?.to_text(),
                    }
                }
                (None, None) => bail!("give --data-dir or --from"),
            };
            match out {
                Some(p) => {
                    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?
                }
                None => print!("{text}"),
            }
        }
        AuditCommand::Export { .. } => bail!("give --data-dir or --from"),
        AuditCommand::Publish {
            data_dir,
            to,
            cosignatures,
        } => audit_fetch::publish(&data_dir, &to, cosignatures.as_deref()).await?,
        AuditCommand::RotateKey {
            data_dir,
            key,
            new_key,
            actor,
        } => {
            let data_dir = audit_dir(&data_dir)?;
            let reader = AuditLog::open_read_only(&data_dir, StartupCheck::NodesOnly)?;
            let origin = reader.origin().to_owned();
            drop(reader);
            let old = read_key(&key, &origin)?;
            let new = read_key(&new_key, &origin)?;
            let (old_vkey, new_vkey) = (old.verifier(), new.verifier());
            let record = AuditEntry::new(
                Action::SigningKeyRotate,
                Phase::Succeeded,
                &Scope::actor(&actor),
            )
            .with_target(Target::new(TargetKind::SigningKey, new_vkey.to_string()))
            .with_changes(vec![change(
                "verifier_key",
                old_vkey.to_string(),
                new_vkey.to_string(),
            )]);
            let log = AuditLog::open(LogConfig::new(&data_dir, &origin), old)?;
            let a = log.rotate_key(new, record.prepare()?).await?;
            log.close();
            println!("rotated: entry {} records it; new verifier key:", a.seq);
            println!("{new_vkey}");
        }
        AuditCommand::Reanchor { config, reason } => {
            let config = onboard_server::Config::load(&config)?;
            println!("{}", onboard_server::reanchor(config, &reason).await?);
        }
    }
    Ok(())
}

/// The latest checkpoint of `log` that its witnesses cosigned, from the cosignature store at
/// `store` (`None`: no store given). Its log signature is checked with the log's own keys;
/// the caller checks that it is this log's (`AuditLog::check_own`).
pub fn cosigned(
    log: &AuditLog,
    store: Option<&Path>,
) -> anyhow::Result<Option<audit_log::SignedCheckpoint>> {
    let Some(path) = store else {
        return Ok(None);
    };
    if !path.is_file() {
        bail!("{}: no such cosignature store", path.display());
    }
    let state = witness::CosignatureStore::new(path).load(log.origin(), &log.verifiers(), &[])?;
    let cp = state.latest.with_context(|| {
        format!(
            "{} holds no cosigned checkpoint yet: the witnesses have cosigned none",
            path.display()
        )
    })?;
    Ok(Some(cp))
}
