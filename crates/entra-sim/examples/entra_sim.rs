//! The emulator on its own, without the `onboard` binary:
//! `cargo run -p entra-sim --example entra_sim -- --listen 127.0.0.1:0 --state-dir /tmp/sim`.
//! Same flags and output as `onboard entra-sim`.

use clap::Parser;

/// Command line of the standalone emulator.
#[derive(Parser)]
struct Cli {
    /// The emulator's own flags.
    #[command(flatten)]
    args: entra_sim::SimArgs,
}

#[tokio::main]
async fn main() -> Result<(), entra_sim::SimError> {
    entra_sim::run_cli(Cli::parse().args).await
}
