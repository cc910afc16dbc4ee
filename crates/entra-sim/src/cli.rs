//! `onboard entra-sim`: the emulator's command-line arguments and the loop that runs it.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::{Faults, Sim, SimConfig, SimError};

/// Command-line arguments of `onboard entra-sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (use port 0 for any free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Directory for the emulator's state and its CA certificate (`ca.pem`).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Live Platform server name, first part of the temporary `<server>-<provider>-token` app.
    #[arg(long, default_value = "Sandbox1")]
    pub server_name: String,
    /// Service provider name, second part of the temporary `<server>-<provider>-token` app.
    #[arg(long, default_value = "sp2")]
    pub provider_name: String,
    /// Verified domain of the seeded tenant.
    #[arg(long, default_value = "contoso.onmicrosoft.com")]
    pub tenant_domain: String,
    /// Fault: new objects stay invisible to dependent calls for this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub replication_lag_ms: u64,
    /// Fault: new app role and directory role assignments stay out of the lists that show
    /// them for this many milliseconds (the assignment itself is in force at once).
    #[arg(long, default_value_t = 0)]
    pub assignment_list_lag_ms: u64,
    /// Fault: fraction of Graph calls answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// Fault: Retry-After seconds on 429 and 503.
    #[arg(long, default_value_t = 2)]
    pub throttle_retry_after_s: u64,
    /// Fault: fraction of token/device-code requests the STS answers 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub sts_throttle_rate: f64,
    /// Fault: fraction of Graph calls answered with 503/500/504.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fault: the injected 500s and 504s of Graph writes come after the write landed (the
    /// answer is lost, the change is made).
    #[arg(long)]
    pub errors_after_write: bool,
    /// Fault: Graph refuses every delegated (user) token of a client that declared the `cp1`
    /// capability with a Conditional Access claims challenge (401, `WWW-Authenticate: Bearer …
    /// error="insufficient_claims", claims="…"`).
    #[arg(long)]
    pub claims_challenge: bool,
    /// Fault: access tokens for Microsoft Graph and the Teams Tenant Admin API are opaque
    /// strings, not JWTs (Microsoft reserves the right; clients must not read them).
    #[arg(long)]
    pub opaque_access_tokens: bool,
    /// Fault: delay added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fault: seed for the throttle/error draws (reproducible runs).
    #[arg(long)]
    pub fault_seed: Option<u64>,
    /// Fault: every device sign-in is declined.
    #[arg(long)]
    pub decline_all_signins: bool,
    /// Fault: a Conditional Access policy blocks the device code flow (AADSTS53003).
    #[arg(long)]
    pub block_device_code: bool,
    /// Fault: device code lifetime in seconds (Entra: 900).
    #[arg(long)]
    pub device_code_ttl_s: Option<u64>,
    /// Device code polling interval in seconds (Entra: 5).
    #[arg(long)]
    pub device_code_interval_s: Option<u64>,
    /// Fault: the first N polls of each device code are answered `slow_down` (RFC 8628 §3.5).
    #[arg(long, default_value_t = 0)]
    pub slow_down_polls: u32,
    /// Fault: app management policy capping client-secret lifetime, in days.
    #[arg(long)]
    pub password_lifetime_max_days: Option<u64>,
    /// Fault: app management policy forbidding client secrets.
    #[arg(long)]
    pub forbid_passwords: bool,
    /// Fault: access token lifetime in seconds (Entra: 3599).
    #[arg(long)]
    pub access_token_lifetime_s: Option<u64>,
    /// Let users without an admin role register applications (Entra's tenant default is yes;
    /// the emulator defaults to the restricted setting most customers use).
    #[arg(long)]
    pub users_can_register_apps: bool,
    /// Display name of the provider's token app registration, which its consented service
    /// principal in each customer tenant takes; default `<server>-<provider>-token`.
    #[arg(long)]
    pub token_app_name: Option<String>,
    /// A public-client (mobile and desktop) redirect URI of the provider's token app, for the
    /// authorization code flow (repeatable).
    #[arg(long = "token-app-redirect-uri")]
    pub token_app_redirect_uris: Vec<String>,
}

impl SimArgs {
    /// The fault switches these flags describe.
    pub fn faults(&self) -> Faults {
        Faults {
            replication_lag_ms: self.replication_lag_ms,
            assignment_list_lag_ms: self.assignment_list_lag_ms,
            // Set at run time (`POST /_sim/faults`): a count used up by the requests it names.
            stale_replica_answers: 0,
            stale_replica_method: None,
            stale_replica_path: None,
            throttle_rate: self.throttle_rate,
            throttle_retry_after_s: self.throttle_retry_after_s,
            sts_throttle_rate: self.sts_throttle_rate,
            error_rate: self.error_rate,
            error_status: None,
            errors_after_write: self.errors_after_write,
            claims_challenge: self.claims_challenge,
            opaque_access_tokens: self.opaque_access_tokens,
            app_tokens_without_wids: false,
            latency_ms: self.latency_ms,
            seed: self.fault_seed,
            decline_all_signins: self.decline_all_signins,
            block_device_code: self.block_device_code,
            auth_code_ttl_s: None,
            device_code_ttl_s: self.device_code_ttl_s,
            device_code_interval_s: self.device_code_interval_s,
            slow_down_polls: self.slow_down_polls,
            password_lifetime_max_days: self.password_lifetime_max_days,
            forbid_passwords: self.forbid_passwords,
            access_token_lifetime_s: self.access_token_lifetime_s,
            max_faults_per_operation: None,
        }
    }
}

/// Runs the emulator until Ctrl-C.
pub async fn run_cli(args: SimArgs) -> Result<(), SimError> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let config = SimConfig {
        state_dir: Some(args.state_dir.clone()),
        faults: args.faults(),
        server_name: args.server_name.clone(),
        provider_name: args.provider_name.clone(),
        tenant_domain: args.tenant_domain.clone(),
        token_app_client_id: None,
        users_can_register_apps: args.users_can_register_apps,
        token_app_scopes: None,
        token_app_display_name: args.token_app_name.clone(),
        token_app_redirect_uris: args.token_app_redirect_uris.clone(),
    };
    let sim = Sim::start(listener, config).await?;
    let info = sim.info();
    // Scripts parse these lines (tests/msal/run.sh); keep their shape stable.
    println!("listening on {}", info.base_url);
    println!("ca {}", args.state_dir.join("ca.pem").display());
    println!("tenant {} {}", info.tenant_id, info.tenant_domain);
    println!("token-app {}", info.token_app_client_id);
    for u in &info.users {
        println!("user {} [{}]", u.upn, u.roles.join(", "));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// What `onboard entra-sim` parses.
    #[derive(Parser)]
    struct Cli {
        /// The emulator's flags, flattened as the binary does.
        #[command(flatten)]
        args: SimArgs,
    }

    #[test]
    fn cli_flags_become_fault_switches() {
        let cli = Cli::parse_from([
            "sim",
            "--state-dir",
            "/tmp/x",
            "--replication-lag-ms",
            "250",
            "--assignment-list-lag-ms",
            "900",
            "--throttle-rate",
            "0.25",
            "--fault-seed",
            "9",
            "--forbid-passwords",
            "--password-lifetime-max-days",
            "30",
            "--provider-name",
            "acme",
            "--block-device-code",
            "--token-app-redirect-uri",
            "https://a.example/cb",
            "--token-app-redirect-uri",
            "http://localhost",
        ]);
        let f = cli.args.faults();
        assert_eq!(f.replication_lag_ms, 250);
        assert_eq!(f.assignment_list_lag_ms, 900);
        assert_eq!(f.throttle_rate, 0.25);
        assert_eq!(f.seed, Some(9));
        assert!(f.forbid_passwords);
        assert_eq!(f.password_lifetime_max_days, Some(30));
        assert!(!f.decline_all_signins && f.block_device_code);
        assert_eq!(cli.args.token_app_redirect_uris.len(), 2);
        assert_eq!(cli.args.listen.to_string(), "127.0.0.1:8443");
        let cfg = SimConfig {
            provider_name: cli.args.provider_name.clone(),
            ..SimConfig::default()
        };
        assert_eq!(cfg.token_app_name(), "Sandbox1-acme-token");
    }
}
