//! `onboard witness`: runs a C2SP tlog witness for audit logs on another host;
//! `onboard witness keygen` makes its key; and the `--witness` quorum check of
//! `onboard audit verify`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use audit_log::note::NoteVerifier;
use clap::{Args, Subcommand};
use witness::{CosignerKey, CosignerVerifier, TrustedLog, Witness, WitnessServerConfig};

/// `onboard witness [--config FILE | --listen … --key … --state-dir … --log ORIGIN=VKEY…]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WitnessArgs {
    /// `keygen`, or nothing to run the witness.
    #[command(subcommand)]
    command: Option<WitnessCommand>,
    /// How to run the witness.
    #[command(flatten)]
    run: RunArgs,
}

/// `onboard witness …` subcommands.
#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Generates a witness key (Go's PRIVATE+KEY form, type 0x04) and prints its verifier key.
    Keygen {
        /// The witness name, a schema-less URL such as `witness.example.org/w1`.
        #[arg(long)]
        name: String,
        /// Where to write the private key (created with mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

/// The witness's settings, from a TOML file or from flags.
#[derive(Debug, Args)]
struct RunArgs {
    /// TOML file with `listen`, `key`, `state_dir` and `[[log]]` tables (`origin`, `vkeys`).
    #[arg(long, conflicts_with_all = ["listen", "key", "state_dir", "logs"])]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The witness key file from `onboard witness keygen`.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Directory for the per-log state (created if needed; locked while running).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// A trusted log: its origin, `=`, and a verifier key of the log; repeat the origin for
    /// several keys (origins containing `=` need the config file).
    #[arg(long = "log", value_name = "ORIGIN=VKEY")]
    logs: Vec<String>,
}

/// Runs `onboard witness …`.
pub async fn run(args: WitnessArgs) -> anyhow::Result<()> {
    if let Some(WitnessCommand::Keygen { name, out }) = args.command {
        let key = CosignerKey::generate(&name)?;
        crate::audit_cli::write_private(&out, key.to_go_private_key().as_bytes())?;
        println!("{}", key.verifier());
        return Ok(());
    }
    let (listen, key_path, state_dir, logs) = settings(args.run)?;
    let refusal = onboard_core::key_file::refusal(&key_path, "witness key")
        .with_context(|| format!("reading witness key {}", key_path.display()))?;
    if let Some(refusal) = refusal {
        bail!(refusal);
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading witness key {}", key_path.display()))?,
    );
    let key = CosignerKey::from_key_file_text(&text)
        .with_context(|| format!("parsing witness key {}", key_path.display()))?;
    let vkey = key.verifier();
    let witness = Arc::new(Witness::open(key, logs, &state_dir)?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read these two lines.
    println!("vkey {vkey}");
    println!("listening on http://{addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    tracing::info!(%addr, %vkey, "witness started");
    witness::server::serve(listener, witness, shutdown_signal()).await?;
    Ok(())
}

type Settings = (SocketAddr, PathBuf, PathBuf, Vec<TrustedLog>);

fn settings(a: RunArgs) -> anyhow::Result<Settings> {
    if let Some(path) = a.config {
        let c = WitnessServerConfig::load(&path)?;
        let logs = c.trusted_logs()?;
        return Ok((c.listen, c.key, c.state_dir, logs));
    }
    let (Some(listen), Some(key), Some(state_dir)) = (a.listen, a.key, a.state_dir) else {
        bail!("give --config FILE, or all of --listen, --key, --state-dir and at least one --log");
    };
    let mut logs: Vec<TrustedLog> = Vec::new();
    for l in &a.logs {
        let (origin, v) = log_arg(l)?;
        match logs.iter_mut().find(|t| t.origin == origin) {
            Some(t) => t.verifiers.push(v),
            None => logs.push(TrustedLog {
                origin: origin.to_owned(),
                verifiers: vec![v],
            }),
        }
    }
    if logs.is_empty() {
        bail!("no --log ORIGIN=VKEY given: the witness would refuse every checkpoint");
    }
    Ok((listen, key, state_dir, logs))
}

/// `--log ORIGIN=VKEY`. An origin may hold `=` (tlog-checkpoint leaves its form open) and so
/// may a key name, so the split is the one `=` after which a verifier key parses (its key id
/// is a hash of the name and key, which no other split matches).
fn log_arg(l: &str) -> anyhow::Result<(&str, NoteVerifier)> {
    let mut last = None;
    for (at, _) in l.match_indices('=').filter(|(at, _)| *at > 0) {
        match NoteVerifier::parse(&l[at + 1..]) {
            Ok(v) => return Ok((&l[..at], v)),
            Err(e) => last = Some(e),
        }
    }
    // A private key given by mistake is not repeated.
    let shown = audit_log::note::key_shown(l);
    match last {
        Some(e) => Err(anyhow::Error::new(e).context(format!("--log {shown}: verifier key"))),
        None => bail!("--log {shown}: want ORIGIN=VKEY (a non-empty origin)"),
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Parses `--witness` values: a key string, or a file holding one per line.
fn parse_witness_keys(values: &[String]) -> anyhow::Result<Vec<CosignerVerifier>> {
    let mut out: Vec<CosignerVerifier> = Vec::new();
    for line in crate::audit_cli::key_lines(values)? {
        let k = CosignerVerifier::parse(&line)
            .with_context(|| format!("witness key {}", audit_log::note::key_shown(&line)))?;
        if !out.contains(&k) {
            out.push(k);
        }
    }
    Ok(out)
}

/// `onboard audit verify … --witness VKEY… [--witness-quorum N]`: checks the verified
/// checkpoint `note` (an export's `checkpoint` file, or the one fetched from a URL) for
/// cosignatures by at least N of the trusted witnesses (default: all of them), prints the
/// result, and returns false (after an `INVALID:` line) when the quorum is not met.
pub fn check_quorum(
    note: &str,
    log_vkeys: &[String],
    witnesses: &[String],
    quorum: Option<usize>,
) -> anyhow::Result<bool> {
    let keys = crate::audit_cli::parse_vkeys(log_vkeys)?;
    let trusted = parse_witness_keys(witnesses)?;
    let quorum = quorum.unwrap_or(trusted.len());
    if quorum > trusted.len() {
        bail!(
            "--witness-quorum {quorum} needs at least {quorum} distinct --witness keys ({} given)",
            trusted.len()
        );
    }
    match witness::verify_cosigned(note, &keys, &trusted, quorum) {
        Ok(v) => {
            let names: Vec<String> = v
                .cosigners
                .iter()
                .map(|(k, t)| format!("{} (time {t})", k.split('+').next().unwrap_or(k)))
                .collect();
            println!(
                "{}/{} trusted witnesses cosigned the checkpoint (quorum {quorum}): {}",
                v.cosigners.len(),
                trusted.len(),
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            );
            Ok(true)
        }
        Err(e) => {
            println!("INVALID: witness quorum: {e}");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_arg;

    #[test]
    fn a_log_argument_splits_at_the_last_equals_sign() {
        let key = audit_log::NoteSigner::generate("log.example/a=b").unwrap();
        let vkey = key.verifier().to_string();
        let arg = format!("log.example/a=b={vkey}");
        let (origin, v) = log_arg(&arg).unwrap();
        assert_eq!((origin, v.to_string()), ("log.example/a=b", vkey.clone()));
        assert!(log_arg(&format!("={vkey}")).is_err(), "an empty origin");
        assert!(log_arg(&vkey).is_err(), "no origin at all");
    }
}
