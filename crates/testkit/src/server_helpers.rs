//! What the server crate's integration tests share beyond [`crate::server`]: a call that must be
//! refused and the status it was refused with, a limit's RESOURCE_EXHAUSTED, the customer's
//! Plan, a registration's secrets and a RotateSecret retried while another driver holds the
//! rotation.

use std::future::Future;
use std::ops::ControlFlow;
use std::panic::Location;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use onboard_proto::v1 as pb;
use tonic::{Code, Status};

use crate::server::TestServer;

/// A call that must be refused: any future of a result with a status for its error (an RPC's
/// future, usually): `c.get_checkpoint(req).refused(Code::PermissionDenied, &[]).await?`.
pub trait Refusal<T>: Future<Output = Result<T, Status>> + Sized {
    /// The status the call was refused with; an error naming the caller's line if it was
    /// answered.
    #[track_caller]
    fn refusal(self) -> impl Future<Output = Result<Status>> {
        let at = Location::caller();
        async move {
            self.await
                .err()
                .with_context(|| format!("{at}: the call was answered, not refused"))
        }
    }

    /// Checks that the call is refused with `code` and a message containing each of `words`;
    /// the status, for further checks.
    #[track_caller]
    fn refused(self, code: Code, words: &[&str]) -> impl Future<Output = Result<Status>> {
        let at = Location::caller();
        let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        async move { refused_at(at, self.await, code, &words) }
    }
}

impl<T, F: Future<Output = Result<T, Status>>> Refusal<T> for F {}

/// An answer that must be a refusal: a call's result, already awaited (a stream's, say:
/// `env.sign_in(..).await?.refused(Code::FailedPrecondition, &["expired"])?`).
pub trait Refused: Sized {
    /// Checks that the answer is a refusal with `code` and a message containing each of
    /// `words`; the status, for further checks.
    #[track_caller]
    fn refused(self, code: Code, words: &[&str]) -> Result<Status>;
}

impl<T> Refused for Result<T, Status> {
    #[track_caller]
    fn refused(self, code: Code, words: &[&str]) -> Result<Status> {
        refused_at(Location::caller(), self, code, words)
    }
}

/// [`Refused::refused`] for the caller at `at`.
fn refused_at<T, W: AsRef<str>>(
    at: &Location<'_>,
    answer: Result<T, Status>,
    code: Code,
    words: &[W],
) -> Result<Status> {
    let Err(e) = answer else {
        bail!("{at}: the call was answered, not refused with {code:?}");
    };
    let says_all = words.iter().all(|w| e.message().contains(w.as_ref()));
    ensure!(
        e.code() == code && says_all,
        "{at}: wanted {code:?} saying {:?}: {e:?}",
        words.iter().map(AsRef::as_ref).collect::<Vec<_>>()
    );
    Ok(e)
}

/// Checks `s` is RESOURCE_EXHAUSTED naming `limit` (a `[limits]` key and value) in its message
/// and its QuotaFailure, and, when `retry`, saying when to try again (RetryInfo).
pub fn exhausted(s: &Status, limit: &str, retry: bool) -> Result<()> {
    use tonic_types::StatusExt;
    ensure!(s.code() == Code::ResourceExhausted, "{s:?}");
    let q = s.get_details_quota_failure().context("no QuotaFailure")?;
    ensure!(
        q.violations.iter().any(|v| v.description.contains(limit)),
        "QuotaFailure does not name {limit}: {q:?}"
    );
    ensure!(s.message().contains(limit), "{}", s.message());
    if retry {
        let r = s.get_details_retry_info().context("no RetryInfo")?;
        ensure!(r.retry_delay.is_some(), "{r:?}");
    }
    Ok(())
}

/// The status code a call was answered with: `Code::Ok` when it was answered.
pub fn code_of<T>(answer: Result<T, Status>) -> Code {
    answer.err().map_or(Code::Ok, |s| s.code())
}

/// The plan of onboarding `id` for app `name`, asked for with invitation `token`; or the status
/// it was refused with.
pub async fn plan(
    server: &TestServer,
    token: &str,
    id: &str,
    name: &str,
) -> Result<Result<pb::PlanResponse, Status>> {
    let r = pb::PlanRequest {
        onboarding_id: id.into(),
        app_name: name.into(),
        invitation_token: token.into(),
        ..Default::default()
    };
    let mut c = server.onboarding(None).await?;
    Ok(c.plan(r).await.map(tonic::Response::into_inner))
}

/// A registration's secrets as ListSecrets answers (metadata only).
pub async fn secrets(
    c: &mut onboard_proto::v1::credentials_client::CredentialsClient<crate::server::Authed>,
    reg: &Option<pb::RegistrationRef>,
) -> Result<Vec<pb::SecretInfo>> {
    let r = pb::ListSecretsRequest {
        registration: reg.clone(),
    };
    Ok(c.list_secrets(r).await?.into_inner().secrets)
}

/// Every event of a whole RotateSecret stream, as `stage:done`, in order; a stream read up to
/// its hand-over ends after the first six.
pub const ROTATION_STAGES: [&str; 8] = [
    "add:false",
    "add:true",
    "validate:false",
    "validate:true",
    "hand_over:false",
    "hand_over:true",
    "remove_old:false",
    "remove_old:true",
];

/// RotateSecret `req` read to the end of its stream, called again while it is refused with
/// FAILED_PRECONDITION before its first event (another driver, a call gone away or a restarted
/// server, still holds the stored rotation), for at most `limit`: its events as `stage:done`
/// and the new secret it was given.
pub async fn rotate_when_free(
    c: &mut onboard_proto::v1::credentials_client::CredentialsClient<crate::server::Authed>,
    req: &pb::RotateSecretRequest,
    limit: Duration,
) -> Result<(Vec<String>, Option<pb::NewSecret>)> {
    crate::wait::until("RotateSecret accepted", limit, async || {
        let mut stream = c.rotate_secret(req.clone()).await?.into_inner();
        let (mut stages, mut secret) = (Vec::new(), None);
        loop {
            match stream.message().await {
                Ok(Some(ev)) => {
                    stages.push(format!("{}:{}", ev.stage, ev.done));
                    secret = ev.new_secret.or(secret);
                }
                Ok(None) => return Ok(ControlFlow::Break((stages, secret))),
                Err(e) if stages.is_empty() && e.code() == Code::FailedPrecondition => {
                    return Ok(ControlFlow::Continue(e));
                }
                Err(e) => return Err(e.into()),
            }
        }
    })
    .await
}

/// Admin.Backup of `server` as the admin, read to its end: how many chunks a whole archive
/// took, or the status the call was refused with or the stream ended with.
pub async fn backup(server: &TestServer, reason: &str) -> Result<Result<usize, Status>> {
    let ch = crate::server::with_token(server.channel().await?, Some(crate::config::ADMIN));
    let mut admin = onboard_proto::v1::admin_client::AdminClient::new(ch);
    let request = pb::BackupRequest {
        reason: reason.into(),
    };
    let mut chunks = match admin.backup(request).await {
        Ok(answer) => answer.into_inner(),
        Err(status) => return Ok(Err(status)),
    };
    let mut n = 0;
    loop {
        match chunks.message().await {
            Ok(Some(_)) => n += 1,
            Ok(None) => return Ok(Ok(n)),
            Err(status) => return Ok(Err(status)),
        }
    }
}
