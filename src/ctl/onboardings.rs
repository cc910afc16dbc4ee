//! `onboard ctl onboardings list|get|watch|cancel`.

use clap::{Subcommand, ValueEnum};
use onboard_proto::v1 as pb;
use onboard_proto::v1::onboarding_client::OnboardingClient;

use super::exit::{CtlError, Exit};
use super::output::{self, Output, or_dash, ts};
use super::progress::StepBoard;
use super::{AuthChannel, ListArgs, Paged, all_pages, call, next_message};

/// Onboarding states as flags.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum State {
    /// Waiting for the device code sign-in.
    SigningIn,
    /// Signed in, waiting for Provision.
    SignedIn,
    /// Provisioning.
    Provisioning,
    /// Done.
    Completed,
    /// Failed (can be resumed).
    Failed,
    /// Cancelled and compensated.
    Cancelled,
    /// Made what the first admin may; waits for a privileged admin (hand-off).
    AwaitingAdmin,
}

impl From<State> for pb::OnboardingState {
    fn from(s: State) -> Self {
        match s {
            State::SigningIn => pb::OnboardingState::SigningIn,
            State::SignedIn => pb::OnboardingState::SignedIn,
            State::Provisioning => pb::OnboardingState::Provisioning,
            State::Completed => pb::OnboardingState::Completed,
            State::Failed => pb::OnboardingState::Failed,
            State::Cancelled => pb::OnboardingState::Cancelled,
            State::AwaitingAdmin => pb::OnboardingState::AwaitingAdmin,
        }
    }
}

/// The state's short name.
pub fn state_name(s: pb::OnboardingState) -> &'static str {
    match s {
        pb::OnboardingState::SigningIn => "signing-in",
        pb::OnboardingState::SignedIn => "signed-in",
        pb::OnboardingState::Provisioning => "provisioning",
        pb::OnboardingState::Completed => "completed",
        pb::OnboardingState::Failed => "failed",
        pb::OnboardingState::Cancelled => "cancelled",
        pb::OnboardingState::AwaitingAdmin => "awaiting-admin",
        pb::OnboardingState::Unspecified => "?",
    }
}

/// `onboard ctl onboardings …`
#[derive(Debug, Subcommand)]
pub enum OnboardingsCommand {
    /// Lists onboardings.
    List {
        /// Only this tenant's.
        #[arg(long, default_value = "")]
        tenant: String,
        /// Its state and how many.
        #[command(flatten)]
        list: ListArgs<State>,
    },
    /// Shows one onboarding.
    Get {
        /// The onboarding id.
        id: String,
    },
    /// Replays an onboarding's events, then follows it live until it ends (exit 0 when it
    /// completed, 1 when it failed or was cancelled).
    Watch {
        /// The onboarding id.
        id: String,
        /// The first event to show (0: all).
        #[arg(long, default_value_t = 0)]
        from_event: u64,
    },
    /// Cancels an onboarding, undoing what it created.
    Cancel {
        /// The onboarding id.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

/// Runs one onboardings command.
pub async fn run(cmd: OnboardingsCommand, ch: AuthChannel, out: Output) -> Result<Exit, CtlError> {
    let mut c = OnboardingClient::new(ch);
    match cmd {
        OnboardingsCommand::List { tenant, list } => {
            let state: pb::OnboardingState = list.state_pb();
            let resp: pb::ListOnboardingsResponse = all_pages(list.limit, |page_token| {
                let mut c = c.clone();
                let req = pb::ListOnboardingsRequest {
                    tenant_id: tenant.clone(),
                    state: state.into(),
                    page_size: 0,
                    page_token,
                };
                async move { call("ListOnboardings", c.list_onboardings(req)).await }
            })
            .await?;
            let header = [
                "ID", "STATE", "TENANT", "APP", "CLIENT", "EVENTS", "UPDATED",
            ];
            output::print_list(out, &resp, &header, &resp.onboardings, |o| {
                vec![
                    o.onboarding_id.clone(),
                    state_of(o).into(),
                    or_dash(&o.tenant_id).into(),
                    or_dash(&o.app_name).into(),
                    or_dash(&o.client_id).into(),
                    o.events.to_string(),
                    ts(&o.updated_at),
                ]
            })
        }
        OnboardingsCommand::Get { id } => {
            let o = call(
                "GetOnboarding",
                c.get_onboarding(pb::GetOnboardingRequest {
                    onboarding_id: id,
                    invitation_token: String::new(),
                }),
            )
            .await?;
            print_one(&o, out)
        }
        OnboardingsCommand::Cancel { id, reason } => {
            let o = call(
                "CancelOnboarding",
                c.cancel_onboarding(pb::CancelOnboardingRequest {
                    onboarding_id: id,
                    reason,
                    invitation_token: String::new(),
                }),
            )
            .await?;
            print_one(&o, out)
        }
        OnboardingsCommand::Watch { id, from_event } => {
            let mut stream = call(
                "Watch",
                c.watch(pb::WatchRequest {
                    onboarding_id: id.clone(),
                    from_event,
                    invitation_token: String::new(),
                }),
            )
            .await?;
            let mut board = StepBoard::new(out.is_json());
            let mut end = None;
            loop {
                let Some(e) = next_message(&mut stream, "Watch").await? else {
                    break;
                };
                if out.is_json() {
                    output::print_json_line(&e)?;
                }
                if let Some(x) = board.show(&e) {
                    end = Some(x);
                }
            }
            board.finish();
            match end {
                Some(exit) => Ok(exit),
                None => Err(CtlError::unreachable(format!(
                    "the Watch stream of {id} ended before the onboarding did (server stopping?); watch again with --from-event {}",
                    board.next_event()
                ))),
            }
        }
    }
}

/// The state's short name, `cancelling` for a PROVISIONING onboarding being cancelled.
fn state_of(o: &pb::OnboardingInfo) -> &'static str {
    if o.cancelling {
        "cancelling"
    } else {
        state_name(o.state())
    }
}

/// One onboarding as `field: value` lines.
fn print_one(o: &pb::OnboardingInfo, out: Output) -> Result<Exit, CtlError> {
    output::print_answer(out, o, |o| {
        output::print_fields(&[
            ("id", o.onboarding_id.clone()),
            ("state", state_of(o).into()),
            ("error", or_dash(&o.error).into()),
            ("invitation", o.invitation_id.clone()),
            ("tenant", or_dash(&o.tenant_id).into()),
            ("app", or_dash(&o.app_name).into()),
            ("client", or_dash(&o.client_id).into()),
            ("events", o.events.to_string()),
            ("created", ts(&o.created_at)),
            ("updated", ts(&o.updated_at)),
        ])
    })
}

impl Paged for pb::ListOnboardingsResponse {
    type Item = pb::OnboardingInfo;
    fn parts(&mut self) -> (&mut Vec<pb::OnboardingInfo>, &mut String) {
        (&mut self.onboardings, &mut self.next_page_token)
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// Every state the API lists is one `--state` can select, by the name `list` prints.
    #[test]
    fn every_onboarding_state_can_be_selected_by_its_printed_name() {
        for s in State::value_variants() {
            let pb_state = pb::OnboardingState::from(*s);
            let name = state_name(pb_state);
            let parsed = State::from_str(name, false).map(pb::OnboardingState::from);
            assert_eq!(parsed, Ok(pb_state), "{name}");
        }
        // And every state the API defines (but "unspecified") has a flag.
        let flags: Vec<pb::OnboardingState> = State::value_variants()
            .iter()
            .map(|s| pb::OnboardingState::from(*s))
            .collect();
        for n in 1..64 {
            if let Ok(api) = pb::OnboardingState::try_from(n) {
                assert!(flags.contains(&api), "no --state for {api:?}");
            }
        }
    }
}
