//! `onboard backup` (asks a running server for a consistent archive over
//! `onboard.v1.Admin/Backup`, with the same connection settings as `onboard ctl`) and
//! `onboard restore` (checks an archive and writes it into a data directory no server holds;
//! `onboard_server::backup`). docs/operations.md, "Backup and restore".

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use onboard_proto::v1 as pb;
use onboard_proto::v1::admin_client::AdminClient;
use onboard_server::backup::{ArchiveSummary, check_archive};

use crate::ctl::conn::ConnArgs;
use crate::ctl::exit::{CtlError, Exit};

/// `onboard backup`.
#[derive(Debug, Args)]
#[command(after_help = crate::ctl::exit::EXIT_CODES_HELP)]
pub struct BackupArgs {
    /// Where the server is and who we are (an admin).
    #[command(flatten)]
    conn: ConnArgs,
    /// The archive to write (a tar file; written to FILE.partial, renamed when complete).
    #[arg(long)]
    out: PathBuf,
    /// Why the backup is taken (recorded in the audit log).
    #[arg(long, default_value = "")]
    reason: String,
}

/// `onboard restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive `onboard backup` wrote.
    #[arg(long)]
    archive: PathBuf,
    /// The server's configuration file (its data directory, keys and witnesses).
    #[arg(long)]
    config: PathBuf,
    /// Replace a non-empty data directory (its stores are moved aside, not deleted); needs
    /// --reason. It does not accept an older archive: see --allow-rollback.
    #[arg(long, requires = "reason")]
    force: bool,
    /// Accept an archive older than (or different from) the latest checkpoint known (the
    /// replaced directory's head note, the witness store): the audit log is rolled back and
    /// what came after is lost; needs --reason.
    #[arg(long, requires = "reason")]
    allow_rollback: bool,
    /// Why (recorded in the audit log's `store.restore` entry).
    #[arg(long)]
    reason: Option<String>,
}

/// Runs `onboard backup`; prints what it wrote.
pub async fn backup(args: BackupArgs) -> ExitCode {
    match run_backup(args).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit.into()
        }
    }
}

async fn run_backup(args: BackupArgs) -> Result<String, CtlError> {
    let settings = args.conn.resolve()?;
    let ch = settings.connect().await?;
    let mut client = AdminClient::new(ch).max_decoding_message_size(8 << 20);
    let rpc = "Admin/Backup";
    let mut stream = client
        .backup(pb::BackupRequest {
            reason: args.reason.clone(),
        })
        .await
        .map_err(|s| CtlError::from_status(rpc, &s))?
        .into_inner();
    let partial = {
        let mut p = args.out.clone().into_os_string();
        p.push(".partial");
        PathBuf::from(p)
    };
    // The archive holds the audit log and every state record: the owner's alone (a leftover
    // partial file would keep its own mode, so it goes first).
    let _ = std::fs::remove_file(&partial);
    let mut file = crate::ctl::output::create_private(&partial)?;
    let received = match receive(&mut stream, &mut file, &partial, rpc).await {
        // Named only once it checks as `onboard restore` will check it: a damaged archive
        // (a fault in the server, the network or the disk) is known now, not at the restore.
        Ok(bytes) => check(&partial).await.and_then(|summary| {
            std::fs::rename(&partial, &args.out)
                .with_context(|| format!("renaming to {}", args.out.display()))?;
            Ok((bytes, summary))
        }),
        Err(e) => Err(e),
    };
    match received {
        Ok((bytes, s)) => Ok(format!(
            "wrote {} ({bytes} bytes; checked: {} audit entries, root {}, {} state records)",
            args.out.display(),
            s.entries,
            s.root,
            s.state_records
        )),
        Err(e) => {
            // Whatever made it stop (the stream, a full disk), no half archive is left behind:
            // it would hold the log and state records in a file nobody restores from.
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Writes the archive's chunks to `file` (`partial`) and makes it durable; returns its size.
async fn receive(
    stream: &mut tonic::Streaming<pb::BackupChunk>,
    file: &mut std::fs::File,
    partial: &std::path::Path,
    rpc: &str,
) -> Result<u64, CtlError> {
    let mut bytes = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| CtlError::from_status(rpc, &s))?
    {
        file.write_all(&chunk.data)
            .with_context(|| format!("writing {}", partial.display()))?;
        bytes += chunk.data.len() as u64;
    }
    if bytes == 0 {
        return Err(CtlError {
            exit: Exit::Failed,
            message: format!("{rpc}: the server sent an empty archive"),
        });
    }
    file.sync_all()
        .with_context(|| format!("syncing {}", partial.display()))?;
    Ok(bytes)
}

/// Checks the received archive (`partial`) as a restore would, off the async threads.
async fn check(partial: &std::path::Path) -> Result<ArchiveSummary, CtlError> {
    let path = partial.to_owned();
    let checked = tokio::task::spawn_blocking(move || check_archive(&path))
        .await
        .context("checking the archive")?;
    checked.map_err(|e| CtlError {
        exit: Exit::Failed,
        message: format!(
            "the archive received does not check, so it was not kept: {}",
            e.to_string().trim_end_matches("; nothing was written")
        ),
    })
}

/// Runs `onboard restore`.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let config = onboard_server::Config::load(&args.config)?;
    let line = onboard_server::backup::restore(
        config,
        onboard_server::backup::RestoreRequest {
            archive: args.archive,
            force: args.force,
            allow_rollback: args.allow_rollback,
            reason: args.reason.unwrap_or_default(),
        },
    )
    .await?;
    println!("{line}");
    Ok(())
}
