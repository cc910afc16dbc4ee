//! `onboard ctl verify` (the report table of `onboard verify`, with ctl's settings and exit
//! codes) and `onboard ctl drift`.

use onboard_proto::v1 as pb;
use onboard_proto::v1::verification_client::VerificationClient;
use pb::verify_request::Target;

use super::exit::{CtlError, Exit};
use super::output::{self, Output, or_dash, ts};
use super::{AuthChannel, call};

/// `onboard ctl verify`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["client_id", "service_id"])))]
pub struct VerifyArgs {
    /// Verify the app registration with this application (client) id.
    #[arg(long)]
    client_id: Option<String>,
    /// Verify the registration of this Direct Routing service.
    #[arg(long)]
    service_id: Option<String>,
}

/// Runs Verify; exit 1 when a check FAILed.
pub async fn verify(a: VerifyArgs, ch: AuthChannel, out: Output) -> Result<Exit, CtlError> {
    let target = match (a.client_id, a.service_id) {
        (Some(c), _) => Target::ClientId(c),
        (None, Some(s)) => Target::ServiceId(s),
        (None, None) => return Err(CtlError::usage("give --client-id or --service-id")),
    };
    let report = output::spin(
        "verifying",
        call(
            "Verify",
            VerificationClient::new(ch).verify(pb::VerifyRequest {
                target: Some(target),
            }),
        ),
    )
    .await?;
    if out.is_json() {
        output::print_json(&report)?;
    } else {
        print!("{}", crate::verify_cli::render(&report));
    }
    Ok(if report.overall() == pb::CheckStatus::Fail {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// Lists open drift items (exit 0 whether or not there are any).
pub async fn drift(client_id: String, ch: AuthChannel, out: Output) -> Result<Exit, CtlError> {
    let r = call(
        "ListDrift",
        VerificationClient::new(ch).list_drift(pb::ListDriftRequest { client_id }),
    )
    .await?;
    let header = [
        "CLIENT",
        "SERVICE",
        "KIND",
        "KEY",
        "FIRST SEEN",
        "LAST SEEN",
        "DETAIL",
    ];
    output::print_list(out, &r, &header, &r.items, |d| {
        vec![
            d.client_id.clone(),
            or_dash(&d.service_id).into(),
            d.kind.clone(),
            d.key.clone(),
            ts(&d.first_seen),
            ts(&d.last_seen),
            d.detail.clone(),
        ]
    })
}
