//! `onboard config check FILE`: what the service would refuse or regret, found without
//! starting it. The file is parsed exactly as `onboard serve` parses it
//! (`onboard_server::Config::load`, environment overrides included); then every file it names
//! is opened, keys are checked for their permissions and format, certificates for their
//! validity, URLs for their scheme, and the callers, token app and profiles for what the
//! service needs. One line per finding (`ERROR key: …` / `WARN key: …`), the limits in force
//! (`INFO  limits.key = value`, defaults included), a summary line, and
//! exit 1 when any finding is an error (or any warning, with `--strict`).

mod auditors;
mod files;
pub(crate) mod rules;

use std::path::PathBuf;
use std::process::ExitCode;

use onboard_server::Config;

/// `onboard config check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The server configuration file.
    pub file: PathBuf,
    /// Warn about certificates that expire within this many days.
    #[arg(long, default_value_t = 30)]
    pub expiry_warn_days: u32,
    /// Treat warnings as errors (exit 1).
    #[arg(long)]
    pub strict: bool,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The service will not start, or will not work as configured.
    Error,
    /// It works, but an operator should look (expiring soon, weaker than production needs).
    Warn,
}

/// One finding: which key, what is wrong, and the fix when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub level: Level,
    /// The configuration key it is about (`tls.key`, `platform.services[dr-1].ca`).
    pub key: String,
    /// What was found, with the fix.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
        };
        write!(f, "{level} {}: {}", self.key, self.message)
    }
}

/// Collects findings.
#[derive(Debug, Default)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    /// Adds an error.
    pub fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding {
            level: Level::Error,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Adds a warning.
    pub fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding {
            level: Level::Warn,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Number of findings at `level`.
    pub fn count(&self, level: Level) -> usize {
        self.0.iter().filter(|f| f.level == level).count()
    }
}

/// Every check on a parsed configuration, at time `now` (Unix seconds).
pub fn check(config: &Config, warn_days: u32, now: i64) -> Findings {
    let mut f = Findings::default();
    files::check_files(config, warn_days, now, &mut f);
    rules::check_urls(config, &mut f);
    rules::check_listen(config, &mut f);
    rules::check_ports(config, &mut f);
    rules::check_telemetry(config, &mut f);
    rules::check_auth(config, &mut f);
    rules::check_token_app(config, &mut f);
    auditors::check_auditors(config, warn_days, now, &mut f);
    f
}

/// Runs the command.
pub fn run(args: &CheckArgs) -> ExitCode {
    let config = match Config::load(&args.file) {
        Ok(c) => c,
        Err(e) => {
            println!("ERROR config: {e}");
            println!("{}: the service would not start", args.file.display());
            return ExitCode::from(1);
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let findings = check(&config, args.expiry_warn_days, now);
    let mut sorted = findings.0.clone();
    sorted.sort_by_key(|f| f.level);
    for finding in &sorted {
        println!("{finding}");
    }
    // The limits in force, defaults included (`[limits]`, see deploy/onboard.example.toml).
    for line in config.limits.describe() {
        println!("INFO  limits.{line}");
    }
    // The plaintext health listener for probes (`[server] health_listen`).
    let health = config
        .server
        .health_listen
        .map_or_else(|| "off".to_owned(), |a| a.to_string());
    println!("INFO  server.health_listen = {health}");
    // What `[telemetry]` turns on (defaults included).
    let t = &config.telemetry;
    let metrics = t
        .metrics_listen
        .map_or_else(|| "off".to_owned(), |a| a.to_string());
    println!("INFO  telemetry.metrics_listen = {metrics}");
    println!("INFO  telemetry.log_format = {:?}", t.log_format);
    println!(
        "INFO  telemetry.log_level = {} (RUST_LOG overrides)",
        t.log_level
    );
    let (errors, warnings) = (findings.count(Level::Error), findings.count(Level::Warn));
    println!(
        "{}: {errors} error(s), {warnings} warning(s)",
        args.file.display()
    );
    if errors > 0 || (args.strict && warnings > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
