//! `onboard ctl …`: the operator CLI over the gRPC services (generated clients from
//! `onboard-proto`), with one set of connection settings for every command ([`conn`]), human
//! tables or `--output json` ([`output`], [`json`]), live progress for long operations
//! ([`progress`], indicatif) and exit codes that mean something ([`exit`]).

mod audit;
pub(crate) mod conn;
pub mod exit;
mod grants;
mod invitations;
mod json;
mod onboardings;
pub(crate) mod output;
mod progress;
mod secrets;
mod verify;

use std::future::Future;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use onboard_proto::v1 as pb;

pub use conn::AuthChannel;
use exit::{CtlError, Exit};
use output::Output;

/// `onboard ctl`.
#[derive(Debug, Args)]
#[command(after_long_help = exit::EXIT_CODES_HELP, after_help = exit::EXIT_CODES_HELP)]
pub struct CtlArgs {
    /// Where the server is and who we are.
    #[command(flatten)]
    conn: conn::ConnArgs,
    /// How to print answers: tables for people, or protobuf's canonical JSON for scripts.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    output: Output,
    /// What to do.
    #[command(subcommand)]
    command: CtlCommand,
}

/// The registration a day-two command is about.
#[derive(Debug, Clone, Args)]
pub struct RegArgs {
    /// The customer's Entra tenant id.
    #[arg(long)]
    tenant: String,
    /// The app registration's application (client) id.
    #[arg(long)]
    client: String,
}

impl RegArgs {
    /// As the API names it.
    fn to_pb(&self) -> pb::RegistrationRef {
        pb::RegistrationRef {
            tenant_id: self.tenant.clone(),
            client_id: self.client.clone(),
        }
    }
}

/// The filter and limit of a `list` command over items in states `S` (its `--state` flags).
#[derive(Debug, Args)]
pub struct ListArgs<S: clap::ValueEnum + Clone + Send + Sync + 'static> {
    /// Only this state.
    #[arg(long, value_enum)]
    state: Option<S>,
    /// At most this many (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

impl<S: clap::ValueEnum + Clone + Send + Sync + 'static> ListArgs<S> {
    /// The state to list as the API names it (unspecified: every state).
    fn state_pb<P: From<S> + Default>(&self) -> P {
        self.state.clone().map(Into::into).unwrap_or_default()
    }
}

/// The `ctl` commands, one per area.
#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Invitations: create (prints the link, writes the email), list, get, revoke.
    #[command(subcommand)]
    Invitations(invitations::InvitationsCommand),
    /// Onboardings: list, get, watch (live progress), cancel.
    #[command(subcommand)]
    Onboardings(onboardings::OnboardingsCommand),
    /// Client secrets: list, add, rotate (streams its stages), revoke, expiring.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Graph application permissions and directory roles: list, update.
    #[command(subcommand)]
    Grants(grants::GrantsCommand),
    /// Attaches an app registration made outside Onboard.
    Attach(grants::AttachArgs),
    /// Ends a tenant's day-two admin session (removes the temporary token app).
    EndAdminSession {
        /// The customer's Entra tenant id.
        #[arg(long)]
        tenant: String,
    },
    /// Verifies a registration now and prints the report (exit 1 on any FAIL).
    Verify(verify::VerifyArgs),
    /// Lists open drift items found by scheduled verification.
    Drift {
        /// Only this registration's items.
        #[arg(long, default_value = "")]
        client_id: String,
    },
    /// The audit log: tail (follow), list, checkpoint, proof.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// Runs a `ctl` command and prints its error, if any, as `error: …`.
pub async fn run(args: CtlArgs) -> ExitCode {
    match dispatch(args).await {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e}");
            e.exit.into()
        }
    }
}

async fn dispatch(args: CtlArgs) -> Result<Exit, CtlError> {
    let settings = args.conn.resolve()?;
    let ch = output::spin("connecting", settings.connect()).await?;
    let out = args.output;
    match args.command {
        CtlCommand::Invitations(c) => invitations::run(c, ch, out).await,
        CtlCommand::Onboardings(c) => onboardings::run(c, ch, out).await,
        CtlCommand::Secrets(c) => secrets::run(c, ch, out).await,
        CtlCommand::Grants(c) => grants::run(c, ch, out).await,
        CtlCommand::Attach(a) => grants::attach(a, ch, out).await,
        CtlCommand::EndAdminSession { tenant } => grants::end_admin_session(tenant, ch, out).await,
        CtlCommand::Verify(a) => verify::verify(a, ch, out).await,
        CtlCommand::Drift { client_id } => verify::drift(client_id, ch, out).await,
        CtlCommand::Audit(c) => audit::run(c, ch, out).await,
    }
}

/// A paged List answer: its items and the next page's token.
trait Paged {
    /// One listed item.
    type Item;
    /// The page's items and the token of the next page (empty: this is the last).
    fn parts(&mut self) -> (&mut Vec<Self::Item>, &mut String);
}

/// Every item of a paged List call, until the server has no more pages or `limit` items have
/// arrived (0: no limit), in one answer with no next page (its other fields from the first
/// page): `page(token)` asks for one page.
async fn all_pages<R: Paged, Fut>(
    limit: usize,
    mut page: impl FnMut(String) -> Fut,
) -> Result<R, CtlError>
where
    Fut: Future<Output = Result<R, CtlError>>,
{
    let mut resp = page(String::new()).await?;
    loop {
        let (items, token) = resp.parts();
        if token.is_empty() || (limit > 0 && items.len() >= limit) {
            break;
        }
        let mut next = page(std::mem::take(token)).await?;
        let (more, next_token) = next.parts();
        items.append(more);
        *token = std::mem::take(next_token);
    }
    let (items, token) = resp.parts();
    // More than the limit exist (fetched past it, or a next page): said on standard error,
    // so that neither a table nor a script's JSON passes for the whole list.
    if limit > 0 && (items.len() > limit || !token.is_empty()) {
        items.truncate(limit);
        eprintln!("showing the first {limit}; more exist (--limit 0 lists all)");
    }
    token.clear();
    Ok(resp)
}

/// Awaits a unary call (or a stream's opening) with a spinner; a failed status becomes the
/// printed error and its exit code.
async fn call<T>(
    rpc: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CtlError> {
    output::spin(rpc, fut)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| CtlError::from_status(rpc, &s))
}

/// The next message of `rpc`'s open stream (`None` when it ended); a failed status becomes
/// the printed error and its exit code.
async fn next_message<T>(
    stream: &mut tonic::Streaming<T>,
    rpc: &str,
) -> Result<Option<T>, CtlError> {
    stream
        .message()
        .await
        .map_err(|s| CtlError::from_status(rpc, &s))
}
