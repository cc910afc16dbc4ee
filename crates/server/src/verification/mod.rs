//! The `onboard.v1.Verification` service (operators): Verify runs every check of
//! [`verifier::Verifier`] on one registration now and records the report
//! (`verification.report`); ListDrift shows the open drift items scheduled runs found.
//!
//! Registrations are found through [`verifier::Targets`], implemented by
//! `credentials::targets::RegistryTargets` over the Credentials registry (provisioned and
//! attached registrations). Scheduled runs ([`verifier::DriftMonitor`]) start in `serve` when
//! `[verification] interval_secs` is set.

use onboard_core::audit::{Action, AuditEntry, Phase, Scope, Target as AuditTarget, TargetKind};
use onboard_proto::v1 as pb;
use onboard_proto::v1::verification_server::Verification;
use tonic::{Request, Response, Status};
use verifier::Target;

use crate::App;
use crate::auth::Role;
use crate::error::{Result, ServerError};

/// Serves verification from the shared [`App`].
#[derive(Debug, Clone)]
pub struct VerificationService {
    /// Authentication, the audit log and the drift monitor.
    app: App,
}

fn status_pb(s: verifier::Status) -> pb::CheckStatus {
    match s {
        verifier::Status::Ok => pb::CheckStatus::Ok,
        verifier::Status::Warn => pb::CheckStatus::Warn,
        verifier::Status::Fail => pb::CheckStatus::Fail,
    }
}

impl VerificationService {
    /// A service over `app`.
    pub fn new(app: App) -> Self {
        Self { app }
    }

    async fn verify(&self, req: Request<pb::VerifyRequest>) -> Result<pb::VerifyReport> {
        let caller = self.app.auth().authorize(&req, &[Role::Operator])?;
        self.app.guards().expensive_call(&req, &caller.identity)?;
        let target = match req.into_inner().target {
            None => {
                return Err(ServerError::invalid(
                    "target",
                    "set client_id or service_id",
                ));
            }
            // Checked and looked up as trimmed (a pasted id may carry blanks).
            Some(pb::verify_request::Target::ClientId(c)) => {
                let c = c.trim();
                Target::ClientId(ServerError::uuid("client_id", c)?)
            }
            Some(pb::verify_request::Target::ServiceId(s)) => {
                Target::ServiceId(credentials::check_service(&s)?.to_owned())
            }
        };
        let drift = self.app.drift();
        let input = drift.targets().resolve(&target).await?;
        let report = drift.verifier().verify(&input).await;
        let seq = report
            .record(
                self.app.audit(),
                &caller.identity,
                "on_demand",
                &input.profile,
            )
            .await?;
        Ok(pb::VerifyReport {
            tenant_id: report.tenant_id.clone(),
            client_id: report.client_id.clone(),
            checks: report
                .checks
                .iter()
                .map(|c| pb::Check {
                    name: c.name.clone(),
                    status: status_pb(c.status).into(),
                    detail: c.detail.clone(),
                })
                .collect(),
            overall: status_pb(report.overall()).into(),
            checked_at: Some(crate::clock::timestamp(onboard_core::time::ms_of(
                report.checked_at,
            ))),
            audit_seq: seq,
        })
    }

    async fn list_drift(
        &self,
        req: Request<pb::ListDriftRequest>,
    ) -> Result<pb::ListDriftResponse> {
        let caller = self.app.auth().authorize(&req, &[Role::Operator])?;
        let filter = client_filter(&req.into_inner().client_id)?;
        let items = self.app.drift().open_drift(filter.as_deref())?;
        let mut scope = Scope::actor(&caller.identity);
        let target = match filter.as_deref() {
            Some(c) => {
                scope.client_id = Some(c.to_owned());
                let object_id = self
                    .app
                    .credentials()
                    .find(c)?
                    .and_then(|v| v.app_object_id);
                AuditTarget::new(TargetKind::Application, object_id)
            }
            None => AuditTarget::new(TargetKind::Application, "*".to_owned()),
        };
        AuditEntry::new(Action::DriftList, Phase::Succeeded, &scope)
            .with_target(target)
            .with_detail("count", items.len())
            .append(self.app.audit())
            .await?;
        Ok(pb::ListDriftResponse {
            items: items
                .into_iter()
                .map(|i| pb::DriftItem {
                    first_seen: crate::clock::timestamp_of(&i.first_seen),
                    last_seen: crate::clock::timestamp_of(&i.last_seen),
                    client_id: i.client_id,
                    tenant_id: i.tenant_id,
                    service_id: i.service_id.unwrap_or_default(),
                    kind: i.kind,
                    key: i.key,
                    detail: i.detail,
                    audit_seq: i.audit_seq,
                })
                .collect(),
        })
    }
}

/// The longest client id ListDrift takes (as the credential manager's registration ids).
const MAX_CLIENT_ID: usize = 128;

/// ListDrift's `client_id` filter: `None` (every item) when empty; else lower-cased (client ids
/// match ignoring case, as in Verify), after refusing on the field what cannot be a client id:
/// longer than [`MAX_CLIENT_ID`] bytes (checked before the audit entry that records it), or
/// holding a `/` or a control character.
fn client_filter(client_id: &str) -> Result<Option<String>> {
    let c = client_id.trim();
    if c.is_empty() {
        return Ok(None);
    }
    ServerError::at_most("client_id", c, MAX_CLIENT_ID)?;
    if c.contains('/') || c.chars().any(char::is_control) {
        return Err(ServerError::invalid(
            "client_id",
            "an application (client) id: no '/' or control characters",
        ));
    }
    Ok(Some(c.to_ascii_lowercase()))
}

#[tonic::async_trait]
impl Verification for VerificationService {
    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyReport>, Status> {
        Ok(Response::new(
            VerificationService::verify(self, request).await?,
        ))
    }

    async fn list_drift(
        &self,
        request: Request<pb::ListDriftRequest>,
    ) -> Result<Response<pb::ListDriftResponse>, Status> {
        Ok(Response::new(
            VerificationService::list_drift(self, request).await?,
        ))
    }
}
