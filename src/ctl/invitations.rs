//! `onboard ctl invitations create|list|get|revoke`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use onboard_proto::v1 as pb;
use onboard_proto::v1::invitations_client::InvitationsClient;

use super::exit::{CtlError, Exit};
use super::output::{self, Output, or_dash, ts};
use super::{AuthChannel, ListArgs, Paged, all_pages, call};

/// Invitation states as flags.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum State {
    /// Issued, not yet used.
    Pending,
    /// Its token started an onboarding.
    Used,
    /// Expired unused.
    Expired,
    /// Revoked.
    Revoked,
}

impl From<State> for pb::InvitationState {
    fn from(s: State) -> Self {
        match s {
            State::Pending => pb::InvitationState::Pending,
            State::Used => pb::InvitationState::Used,
            State::Expired => pb::InvitationState::Expired,
            State::Revoked => pb::InvitationState::Revoked,
        }
    }
}

/// `onboard ctl invitations …`
#[derive(Debug, Subcommand)]
pub enum InvitationsCommand {
    /// Creates an invitation: prints the activation link and writes the email (the token is
    /// shown only now).
    Create(Box<CreateArgs>),
    /// Lists invitations, newest first.
    List(ListArgs<State>),
    /// Shows one invitation.
    Get {
        /// The invitation id.
        id: String,
    },
    /// Revokes a pending or used invitation (a used one's holder is cut off at once).
    Revoke {
        /// The invitation id.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// `onboard ctl invitations create`'s arguments (boxed in the command: they outweigh the
/// other commands').
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The customer's display name, as in the email.
    #[arg(long)]
    customer: String,
    /// The Direct Routing service id the onboarding is for.
    #[arg(long)]
    service_id: String,
    /// The provisioning profile (e.g. `direct-routing`).
    #[arg(long, default_value = "direct-routing")]
    profile: String,
    /// The platform version (selects permissions in the profile).
    #[arg(long, default_value = "")]
    platform_version: String,
    /// The customer admin's UPN, when known.
    #[arg(long, default_value = "")]
    admin_upn: String,
    /// The customer's Entra tenant (tenant id or domain) the admin signs in at, so a guest
    /// admin reaches it (default: the admin's home tenant).
    #[arg(long, default_value = "")]
    tenant: String,
    /// An idempotency key (e.g. a UUID): running the same command again with it, after an
    /// answer was lost, shows the invitation the first run made instead of making another.
    #[arg(long, default_value = "")]
    idempotency_key: String,
    /// The provider name (default: the server's).
    #[arg(long, default_value = "")]
    provider_name: String,
    /// The Live Platform server name (default: the server's).
    #[arg(long, default_value = "")]
    platform_server_name: String,
    /// How long it stays valid, e.g. `7d`, `36h` (default: the server's).
    #[arg(long, value_parser = output::parse_duration)]
    valid_for: Option<prost_types::Duration>,
    /// Write the email (Subject line, blank line, text body) to this file (mode 0600: it
    /// holds the token); `-` prints it after the summary. Default: printed.
    #[arg(long, default_value = "-")]
    email_out: PathBuf,
    /// Also write the HTML body to this file (mode 0600).
    #[arg(long)]
    email_html: Option<PathBuf>,
}

/// The state's short name.
pub fn state_name(s: pb::InvitationState) -> &'static str {
    match s {
        pb::InvitationState::Pending => "pending",
        pb::InvitationState::Used => "used",
        pb::InvitationState::Expired => "expired",
        pb::InvitationState::Revoked => "revoked",
        pb::InvitationState::Unspecified => "?",
    }
}

/// Runs one invitations command.
pub async fn run(cmd: InvitationsCommand, ch: AuthChannel, out: Output) -> Result<Exit, CtlError> {
    let mut c = InvitationsClient::new(ch);
    match cmd {
        InvitationsCommand::Create(args) => {
            let CreateArgs {
                customer,
                service_id,
                profile,
                platform_version,
                admin_upn,
                tenant,
                idempotency_key,
                provider_name,
                platform_server_name,
                valid_for,
                email_out,
                email_html,
            } = *args;
            let req = pb::CreateInvitationRequest {
                customer,
                service_id,
                provider_name,
                platform_server_name,
                platform_version,
                profile,
                admin_upn,
                valid_for,
                tenant,
                idempotency_key,
            };
            // Opened first: a path that cannot be written is refused before the invitation
            // (whose token is shown once) is made.
            let to_stdout = email_out.as_os_str() == "-";
            let html_file = email_html
                .as_deref()
                .map(output::PrivateOut::open)
                .transpose()?;
            let text_file = (!to_stdout)
                .then(|| output::PrivateOut::open(&email_out))
                .transpose()?;
            let r = call("CreateInvitation", c.create_invitation(req)).await?;
            let email = r.email.clone().unwrap_or_default();
            let mail_text = format!("Subject: {}\n\n{}", email.subject, email.text);
            if let Some(f) = html_file {
                f.write(email.html.as_bytes())?;
            }
            if let Some(f) = text_file {
                f.write(mail_text.as_bytes())?;
            }
            output::print_answer(out, &r, |r| {
                let inv = r.invitation.clone().unwrap_or_default();
                println!(
                    "invitation {} for {} (service {}, profile {}), expires {}",
                    inv.id,
                    inv.customer,
                    inv.service_id,
                    inv.profile,
                    ts(&inv.expires_at)
                );
                println!("activation link: {}", r.activation_url);
                if to_stdout {
                    println!("\n{mail_text}");
                } else {
                    println!("email written to {}", email_out.display());
                }
            })
        }
        InvitationsCommand::List(list) => {
            let state: pb::InvitationState = list.state_pb();
            let resp: pb::ListInvitationsResponse = all_pages(list.limit, |page_token| {
                let mut c = c.clone();
                let req = pb::ListInvitationsRequest {
                    state: state.into(),
                    page_size: 0,
                    page_token,
                };
                async move { call("ListInvitations", c.list_invitations(req)).await }
            })
            .await?;
            let header = [
                "ID",
                "CUSTOMER",
                "SERVICE",
                "PROFILE",
                "STATE",
                "EXPIRES",
                "ONBOARDING",
            ];
            output::print_list(out, &resp, &header, &resp.invitations, |i| {
                vec![
                    i.id.clone(),
                    i.customer.clone(),
                    i.service_id.clone(),
                    i.profile.clone(),
                    state_name(i.state()).into(),
                    ts(&i.expires_at),
                    or_dash(&i.onboarding_id).into(),
                ]
            })
        }
        InvitationsCommand::Get { id } => {
            let i = call(
                "GetInvitation",
                c.get_invitation(pb::GetInvitationRequest {
                    key: Some(pb::get_invitation_request::Key::Id(id)),
                }),
            )
            .await?;
            print_one(&i, out)
        }
        InvitationsCommand::Revoke { id, reason } => {
            let i = call(
                "RevokeInvitation",
                c.revoke_invitation(pb::RevokeInvitationRequest { id, reason }),
            )
            .await?;
            print_one(&i, out)
        }
    }
}

/// One invitation as `field: value` lines.
fn print_one(i: &pb::Invitation, out: Output) -> Result<Exit, CtlError> {
    output::print_answer(out, i, |i| {
        output::print_fields(&[
            ("id", i.id.clone()),
            ("customer", i.customer.clone()),
            ("service", i.service_id.clone()),
            ("profile", i.profile.clone()),
            ("platform version", or_dash(&i.platform_version).into()),
            ("provider", i.provider_name.clone()),
            ("platform server", i.platform_server_name.clone()),
            ("admin", or_dash(&i.admin_upn).into()),
            ("tenant", or_dash(&i.tenant).into()),
            ("idempotency key", or_dash(&i.idempotency_key).into()),
            ("state", state_name(i.state()).into()),
            (
                "created",
                format!("{} by {}", ts(&i.created_at), i.created_by),
            ),
            ("expires", ts(&i.expires_at)),
            ("used", ts(&i.used_at)),
            ("onboarding", or_dash(&i.onboarding_id).into()),
            (
                "revoked",
                if i.revoked_at.is_some() {
                    format!("{} by {}", ts(&i.revoked_at), i.revoked_by)
                } else {
                    "-".into()
                },
            ),
        ])
    })
}

impl Paged for pb::ListInvitationsResponse {
    type Item = pb::Invitation;
    fn parts(&mut self) -> (&mut Vec<pb::Invitation>, &mut String) {
        (&mut self.invitations, &mut self.next_page_token)
    }
}
