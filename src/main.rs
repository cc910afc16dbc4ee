//! The `onboard` binary: the one executable operators run. It parses the command line, sets up
//! logging and hands over to the service (`serve`), the operator CLI (`ctl`), and the tools for
//! keys, the audit log, configuration and verification. With the default `emulator` feature it
//! also carries the Entra emulator (`entra-sim`) and the demo; a production build leaves them
//! out (`cargo build --release --no-default-features`, see deploy/README.md). Only this crate
//! (and tests) use `anyhow`.

mod audit_cli;
mod audit_fetch;
mod audit_verdict;
mod backup_cli;
mod config_check;
mod ctl;
#[cfg(feature = "emulator")]
mod demo;
#[cfg(feature = "emulator")]
mod demo_web;
mod keys_cli;
mod local_server;
#[cfg(feature = "otel")]
mod otel;
mod selftest;
mod token_app_cli;
mod verify_cli;
mod witness_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
#[cfg(feature = "otel")]
use otel::Traces;

/// Without the `otel` feature there are never traces to flush.
#[cfg(not(feature = "otel"))]
enum Traces {}

#[cfg(not(feature = "otel"))]
impl Traces {
    fn shutdown(self) {
        match self {}
    }
}

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
    #[cfg(feature = "emulator")]
    Demo(demo::DemoArgs),
    /// Generates an audit signing key and prints its verifier key.
    Keygen(audit_cli::KeygenArgs),
    /// Keys the server generated into its state store: `export` writes them to key files.
    #[command(subcommand)]
    Keys(keys_cli::KeysCommand),
    /// Takes a consistent backup archive from a running server (admin role; connection flags
    /// as for `ctl`).
    Backup(backup_cli::BackupArgs),
    /// Restores a backup archive into a data directory no server holds.
    Restore(backup_cli::RestoreArgs),
    /// Audit log tools: export, verify, proof, publish, rotate-key, reanchor.
    #[command(subcommand)]
    Audit(audit_cli::AuditCommand),
    /// Runs the Entra emulator (identity platform + Graph) over HTTPS.
    #[cfg(feature = "emulator")]
    EntraSim(entra_sim::SimArgs),
    /// Asks a server to verify a registration and prints the report (exit 1 on any FAIL, 2
    /// when the call fails).
    Verify(verify_cli::VerifyArgs),
    /// Runs a C2SP tlog witness that cosigns audit-log checkpoints (`witness keygen`: its key).
    Witness(witness_cli::WitnessArgs),
    /// Runs the gRPC service until Ctrl-C or SIGTERM.
    Serve {
        /// The TOML configuration file (see deploy/onboard.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// The operator CLI: invitations, onboardings, secrets, grants, attach, verify, audit.
    Ctl(ctl::CtlArgs),
    /// Server configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The provider's token app: `manifest` prints it, `check` checks a configured one.
    #[command(subcommand)]
    TokenApp(token_app_cli::TokenAppCommand),
    /// End-to-end smoke test through a real `onboard serve` (`--live`: a real tenant; see
    /// docs/live-test.md).
    Selftest(selftest::SelftestArgs),
    /// Prints a shell completion script, e.g. `onboard completions bash > /etc/bash_completion.d/onboard`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// A long-running service rather than a command that prints and ends.
    fn is_service(&self) -> bool {
        match self {
            Command::Serve { .. } | Command::Witness(_) => true,
            #[cfg(feature = "emulator")]
            Command::EntraSim(_) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Checks a server config without starting the service: one line per finding, exit 1 on
    /// any error.
    Check(config_check::CheckArgs),
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        // These have their own exit codes; handled in `main`.
        Command::Verify(_)
        | Command::Backup(_)
        | Command::Ctl(_)
        | Command::Config(_)
        | Command::TokenApp(_)
        | Command::Selftest(_) => Ok(()),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "onboard",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        #[cfg(feature = "emulator")]
        Command::Demo(args) => demo::run(args).await,
        Command::Keygen(args) => {
            let vkey = audit_cli::keygen(&args)?;
            println!("{vkey}");
            Ok(())
        }
        Command::Audit(cmd) => audit_cli::run(cmd).await,
        Command::Keys(cmd) => keys_cli::run(cmd),
        Command::Restore(args) => backup_cli::restore(args).await,
        Command::Witness(args) => witness_cli::run(args).await,
        #[cfg(feature = "emulator")]
        Command::EntraSim(args) => Ok(entra_sim::run_cli(args).await?),
        Command::Serve { config } => {
            warn_about_token_app(&config);
            Ok(onboard_server::run_from_config(&config).await?)
        }
    }
}

/// Logs a warning when the configuration's token app id is unset or the example's placeholder
/// (the rule `onboard config check` reports as an error): the service starts, but no customer
/// admin can sign in. A configuration that does not load is left to `run_from_config`.
fn warn_about_token_app(path: &std::path::Path) {
    if let Ok(config) = onboard_server::Config::load(path)
        && let Some(problem) =
            provision::token_app::client_id_problem(&config.entra.token_app_client_id)
    {
        tracing::warn!(
            key = "entra.token_app_client_id",
            "{problem}; customer sign-ins will fail (onboard token-app manifest, docs/microsoft.md)"
        );
    }
}

/// Logs go to standard error. `serve` takes its format and default level from the
/// configuration's `[telemetry]` (text at `info` unless set; a configuration that does not load
/// is reported by `run_from_config`); other commands log warnings and errors as text.
/// `RUST_LOG` overrides the level either way. With `otlp_endpoint` set, `serve` also exports its
/// spans (the `otel` feature; a build without it refuses). Returns what flushes them at exit.
fn init_logging(command: &Command) -> Result<Option<Traces>, String> {
    use onboard_server::telemetry::{LogFormat, TelemetrySection};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let telemetry = match command {
        Command::Serve { config } => Some(
            onboard_server::Config::load(config)
                .map(|c| c.telemetry)
                .unwrap_or_default(),
        ),
        _ => None,
    };
    let level = telemetry.as_ref().map_or("warn", |t| t.log_level.as_str());
    // `serve` refuses a `log_level` that is not a filter, as `config check` does (RUST_LOG,
    // when set and valid, overrides it).
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => match config_check::rules::log_filter(level) {
            Ok(f) => f,
            Err(why) if telemetry.is_some() => return Err(format!("telemetry.log_level: {why}")),
            Err(_) => EnvFilter::new("info"),
        },
    };
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match telemetry.as_ref().map(|t: &TelemetrySection| t.log_format) {
        Some(LogFormat::Json) => lines.json().boxed(),
        _ => lines.boxed(),
    }
    .with_filter(filter);
    let registry = tracing_subscriber::registry().with(lines);
    let Some(endpoint) = telemetry.and_then(|t| t.otlp_endpoint) else {
        registry.init();
        return Ok(None);
    };
    #[cfg(feature = "otel")]
    {
        let (traces, flush) = otel::layer(&endpoint)?;
        registry.with(traces).init();
        Ok(Some(flush))
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        Err(format!(
            "telemetry.otlp_endpoint is set ({endpoint}) but this build has no OpenTelemetry \
             export; build with `--features otel` or remove the key"
        ))
    }
}

/// `onboard ctl onboardings list | head`: once the reader has gone, the next write to standard
/// output fails with EPIPE (Rust ignores SIGPIPE), and `println!` and clap's completion writer
/// panic on it, printing a panic message and a backtrace after the output the user wanted.
/// A command then ends as Unix tools killed by SIGPIPE do, silently with status 141 (128 +
/// SIGPIPE). Restoring SIGPIPE's default action would need `unsafe`, which the workspace
/// forbids, and std's `-Zon-broken-pipe` is unstable. Services (`serve`, `witness`,
/// `entra-sim`) keep the default: a panic there ends one task, not the process.
fn end_quietly_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("Broken pipe (os error 32)") || message.contains("kind: BrokenPipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.command.is_service() {
        end_quietly_on_a_closed_pipe();
    }
    let traces = match init_logging(&cli.command) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        Command::Verify(args) => return verify_cli::run(args).await,
        Command::Ctl(args) => return ctl::run(args).await,
        Command::Backup(args) => return backup_cli::backup(args).await,
        Command::Config(ConfigCommand::Check(args)) => return config_check::run(&args),
        Command::TokenApp(cmd) => return token_app_cli::run(cmd).await,
        Command::Selftest(args) => return selftest::run(args).await,
        other => other,
    };
    let code = match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            audit_verdict::exit_code(&e)
        }
    };
    if let Some(t) = traces {
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    code
}
