//! `onboard verify`: asks a running server to verify one registration (by client id or by
//! platform service id) and prints the report as a table.
//!
//! Exit codes: 0 when no check FAILed (OK or WARN), 1 when any check FAILed, 2 when the call
//! itself failed (the gRPC status is printed), e.g. unknown id, wrong token, server down.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use onboard_proto::v1 as pb;
use onboard_proto::v1::verification_client::VerificationClient;
use pb::verify_request::Target;
use tonic::transport::Endpoint;

/// `onboard verify` arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["client_id", "service_id"])))]
pub struct VerifyArgs {
    /// The server, e.g. `https://onboard.example.net:8443` (`http://` for a local plaintext
    /// server with bearer tokens).
    #[arg(long)]
    pub server: String,
    /// Verify the app registration with this application (client) id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Verify the registration of this Direct Routing service.
    #[arg(long)]
    pub service_id: Option<String>,
    /// CA certificate(s) (PEM) that sign the server's certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS; needs `--key`.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS; needs `--cert`.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Bearer token (operator role); defaults to the environment variable.
    #[arg(long, env = "ONBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<crate::ctl::conn::BearerToken>,
    /// How long the whole call may take.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
}

/// Runs the command; the exit code follows the module's rules.
pub async fn run(args: VerifyArgs) -> ExitCode {
    let report = match call(&args).await {
        Ok(Ok(r)) => r,
        Ok(Err(status)) => {
            // Worded as `onboard ctl` words a refusal: the canonical code name, the message
            // and the details (field violations, preconditions); the exit stays 2.
            eprintln!(
                "error: {}",
                crate::ctl::exit::CtlError::from_status("Verify", &status)
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    print!("{}", render(&report));
    if report.overall() == pb::CheckStatus::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Connects and calls Verify; the outer error is local (files, connection), the inner one the
/// server's answer.
async fn call(args: &VerifyArgs) -> anyhow::Result<Result<pb::VerifyReport, tonic::Status>> {
    let mut ep = Endpoint::from_shared(args.server.clone())
        .with_context(|| format!("--server {}", args.server))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(args.timeout_secs));
    if args.server.starts_with("https://") {
        let identity = args.cert.as_deref().zip(args.key.as_deref());
        let tls = crate::ctl::conn::client_tls(args.ca.as_deref(), identity)?;
        ep = ep.tls_config(tls).context("TLS set-up")?;
    }
    let channel = ep
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
    let mut req = tonic::Request::new(pb::VerifyRequest {
        target: Some(match (&args.client_id, &args.service_id) {
            (Some(c), _) => Target::ClientId(c.clone()),
            (None, Some(s)) => Target::ServiceId(s.clone()),
            (None, None) => anyhow::bail!("give --client-id or --service-id"),
        }),
    });
    if let Some(t) = &args.token {
        req.metadata_mut()
            .insert("authorization", t.header().map_err(anyhow::Error::msg)?);
    }
    Ok(VerificationClient::new(channel)
        .verify(req)
        .await
        .map(tonic::Response::into_inner))
}

fn status_name(s: pb::CheckStatus) -> &'static str {
    match s {
        pb::CheckStatus::Ok => "OK",
        pb::CheckStatus::Warn => "WARN",
        pb::CheckStatus::Fail => "FAIL",
        pb::CheckStatus::Unspecified => "?",
    }
}

/// The report as a table (check | status | detail) and a summary line.
pub(crate) fn render(r: &pb::VerifyReport) -> String {
    let width = r
        .checks
        .iter()
        .map(|c| c.name.len())
        .chain(["CHECK".len()])
        .max()
        .unwrap_or(5);
    let mut out = format!("{:width$}  {:6}  DETAIL\n", "CHECK", "STATUS");
    for c in &r.checks {
        out.push_str(&format!(
            "{:width$}  {:6}  {}\n",
            c.name,
            status_name(c.status()),
            c.detail
        ));
    }
    let at = crate::ctl::output::rfc3339(&r.checked_at).unwrap_or_default();
    out.push_str(&format!(
        "\noverall: {}  (tenant {}, client {}, checked {at}, audit entry {})\n",
        status_name(r.overall()),
        r.tenant_id,
        r.client_id,
        r.audit_seq
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_and_ends_with_the_overall_status() {
        let r = pb::VerifyReport {
            tenant_id: "t".into(),
            client_id: "c".into(),
            checks: vec![
                pb::Check {
                    name: "platform_status".into(),
                    status: pb::CheckStatus::Ok.into(),
                    detail: "SERVING".into(),
                },
                pb::Check {
                    name: "token_roles".into(),
                    status: pb::CheckStatus::Fail.into(),
                    detail: "lack User.Read.All".into(),
                },
            ],
            overall: pb::CheckStatus::Fail.into(),
            checked_at: None,
            audit_seq: 7,
        };
        let t = render(&r);
        assert!(t.starts_with("CHECK            STATUS  DETAIL\n"), "{t}");
        assert!(
            t.contains("\ntoken_roles      FAIL    lack User.Read.All\n"),
            "{t}"
        );
        assert!(t.contains("overall: FAIL"), "{t}");
    }
}
