//! `onboard keygen` and `onboard audit …`: key generation, export, offline verification,
//! per-entry proofs and signing-key rotation.

use onboard_core::audit::{Action, AuditEntry, Phase, Scope, Target, TargetKind, change};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use audit_log::verify::{VerifyReport, verify_export};
use audit_log::{AuditLog, LogConfig, NoteSigner, NoteVerifier, StartupCheck};
use clap::{Args, Subcommand, ValueEnum};

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

/// `onboard audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Writes the log in the C2SP tlog-tiles layout (the server must be stopped).
    Export {
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The export directory (created if needed; full tiles already there are kept).
        #[arg(long)]
        out: PathBuf,
    },
    /// Recomputes an export and checks its signature; exits non-zero on any problem.
    Verify {
        /// The export directory.
        dir: PathBuf,
        /// A verifier key (`name+id+base64`) or a file holding one; repeat for old keys.
        #[arg(long, required = true)]
        vkey: Vec<String>,
        /// A signed checkpoint saved earlier: the export must extend it.
        #[arg(long)]
        since_checkpoint: Option<PathBuf>,
        /// A trusted witness's verifier key, or a file of them; repeat for each witness.
        #[arg(long)]
        witness: Vec<String>,
        /// How many of the --witness keys must have cosigned the checkpoint (default: all).
        #[arg(long, requires = "witness")]
        witness_quorum: Option<usize>,
    },
    /// Writes a C2SP tlog-proof for one entry against the latest checkpoint.
    Proof {
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The entry's index.
        #[arg(long)]
        seq: u64,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Rotates the signing key: the rotation is an entry signed by both keys.
    RotateKey {
        /// The server's data directory.
        #[arg(long)]
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
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// Parses `--vkey` values: a key string, or a file holding one per line.
pub fn parse_vkeys(values: &[String]) -> anyhow::Result<Vec<NoteVerifier>> {
    let mut out = Vec::new();
    for v in values {
        let text = if Path::new(v).is_file() {
            std::fs::read_to_string(v).with_context(|| format!("reading {v}"))?
        } else {
            v.clone()
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            out.push(NoteVerifier::parse(line).with_context(|| format!("verifier key {line:?}"))?);
        }
    }
    Ok(out)
}

/// Prints a CloudTrail-style summary and one `INVALID:` line per problem.
pub fn print_report(dir: &Path, r: &VerifyReport) {
    println!(
        "Validating audit log export {} (origin {})",
        dir.display(),
        r.origin
    );
    if r.size == 0 {
        println!("Results requested for an empty log");
    } else {
        println!(
            "Results requested for entries 0 to {} (checkpoint size {})",
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
    println!("{}/{} entries valid", r.entries_valid, r.size);
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
}

/// Runs the verifier and prints its report; `Ok(false)` when anything failed.
pub fn verify(dir: &Path, vkeys: &[String], since: Option<&Path>) -> anyhow::Result<bool> {
    let keys = parse_vkeys(vkeys)?;
    let since = since
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = verify_export(dir, &keys, since.as_deref(), threads);
    print_report(dir, &report);
    Ok(report.ok())
}

/// Runs one `onboard audit …` command.
pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Export { data_dir, out } => {
            let log = AuditLog::open_read_only(&data_dir, StartupCheck::Full)?;
            let s = log.export_tiles(&out)?;
            println!(
                "exported {} entries to {} ({} entry bundles, {} hash tiles written, {} unchanged)",
                s.size,
                out.display(),
                s.bundles_written,
                s.hash_tiles_written,
                s.skipped
            );
        }
        AuditCommand::Verify {
            dir,
            vkey,
            since_checkpoint,
            witness,
            witness_quorum,
        } => {
            let mut ok = verify(&dir, &vkey, since_checkpoint.as_deref())?;
            if !witness.is_empty() {
                ok &= crate::witness_cli::check_quorum(&dir, &vkey, &witness, witness_quorum)?;
            }
            if !ok {
                bail!("the audit log export did not verify");
            }
        }
        AuditCommand::Proof { data_dir, seq, out } => {
            let log = AuditLog::open_read_only(&data_dir, StartupCheck::NodesOnly)?;
            let text = log.tlog_proof(seq)?.to_text();
            match out {
                Some(p) => {
                    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?
                }
                None => print!("{text}"),
            }
        }
        AuditCommand::RotateKey {
            data_dir,
            key,
            new_key,
            actor,
        } => {
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
