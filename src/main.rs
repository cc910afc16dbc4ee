//! The `onboard` binary: the service, its emulator and its command-line tools.

mod audit_cli;
mod audit_fetch;
mod demo;
mod verify_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Onboard: onboards a Microsoft 365 tenant onto the platform and keeps a signed audit log.
#[derive(Debug, Parser)]
#[command(name = "onboard", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the demo (see README); leaves DIR/export and DIR/audit.vkey behind.
    Demo(demo::DemoArgs),
    /// Generates an audit signing key and prints its verifier key.
    Keygen(audit_cli::KeygenArgs),
    /// Audit log tools: export, verify, proof, publish, rotate-key.
    #[command(subcommand)]
    Audit(audit_cli::AuditCommand),
    /// Runs the Entra emulator (identity platform + Graph) over HTTPS.
    EntraSim(entra_sim::SimArgs),
    /// Asks a server to verify a registration and prints the report (exit 1 on any FAIL, 2
    /// when the call fails).
    Verify(verify_cli::VerifyArgs),
    /// Runs the gRPC service until Ctrl-C or SIGTERM.
    Serve {
        /// The TOML configuration file (see deploy/onboard.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // Has its own exit codes; handled in `main`.
        Command::Verify(_) => Ok(()),
        Command::Demo(args) => demo::run(args).await,
        Command::Keygen(args) => {
            let vkey = audit_cli::keygen(&args)?;
            println!("{vkey}");
            Ok(())
        }
        Command::Audit(cmd) => audit_cli::run(cmd).await,
        Command::EntraSim(args) => Ok(entra_sim::run_cli(args).await?),
        Command::Serve { config } => Ok(onboard_server::run_from_config(&config).await?),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::Verify(args) = cli.command {
        return verify_cli::run(args).await;
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
