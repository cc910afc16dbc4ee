//! An HTTPS emulator of the Microsoft identity platform and Microsoft Graph v1.0.
//!
//! (Skeleton: filled in by the emulator work of issue 3.)

use std::net::SocketAddr;
use std::path::PathBuf;

/// Command-line arguments of `onboard entra-sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (use port 0 for any free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Directory for the emulator's state and its CA certificate (`ca.pem`).
    #[arg(long)]
    pub state_dir: PathBuf,
}

/// Errors of the emulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The emulator is not built yet.
    #[error("the Entra emulator is not implemented yet")]
    NotImplemented,
}

/// Runs the emulator until Ctrl-C.
pub async fn run_cli(_args: SimArgs) -> Result<(), SimError> {
    Err(SimError::NotImplemented)
}
