//! The `onboard` binary: the service, its emulator and its command-line tools.

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
    /// Runs the Entra emulator (identity platform + Graph) over HTTPS.
    EntraSim(entra_sim::SimArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::EntraSim(args) => entra_sim::run_cli(args).await?,
    }
    Ok(())
}
