//! `onboard keys`: the keys a server generated into its state store.

use std::path::PathBuf;

use onboard_server::generated_keys::{self, GeneratedKey};

/// `onboard keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Writes keys the server generated into its state store (`storage.sealing_key` or
    /// `invitations.token_key` left unset) to new key files, unchanged. Stop the server first.
    /// Then name the files in the configuration: the next start removes the copies from the
    /// state store (audited as `store.move_key`); with both keys in files, `onboard backup`
    /// works.
    Export(ExportArgs),
}

/// `onboard keys export` arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The server's configuration file.
    #[arg(long)]
    config: PathBuf,
    /// A new file for the generated sealing key (64 hex digits, mode 0600), outside the data
    /// directory.
    #[arg(long)]
    sealing_key: Option<PathBuf>,
    /// A new file for the generated invitation token key (64 hex digits, mode 0600), outside
    /// the data directory.
    #[arg(long)]
    token_key: Option<PathBuf>,
}

/// Runs `onboard keys …`.
pub fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Export(args) => {
            let config = onboard_server::Config::load(&args.config)?;
            let wanted: Vec<_> = [
                (GeneratedKey::Sealing, args.sealing_key),
                (GeneratedKey::InvitationToken, args.token_key),
            ]
            .into_iter()
            .filter_map(|(key, file)| Some((key, file?)))
            .collect();
            for line in generated_keys::export(&config, &wanted)? {
                println!("{line}");
            }
            Ok(())
        }
    }
}
