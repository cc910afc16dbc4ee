//! The `onboard.v1.Invitations` gRPC service (role: operator).

use std::time::Duration;

use onboard_proto::v1 as pb;
use onboard_proto::v1::invitations_server::Invitations as InvitationsRpc;
use tonic::{Request, Response, Status};

use invitations::{InvitationRecord, InvitationState, NewInvitation};
use onboard_core::time::now_ms;

use crate::App;
use crate::auth::Role;
use crate::clock::timestamp;
use crate::error::{Result, ServerError};
use crate::paging::{next_page_token, page_size, page_start};

/// Who may manage invitations.
const OPERATORS: &[Role] = &[Role::Operator];

/// Serves invitations from the shared [`App`].
#[derive(Debug, Clone)]
pub struct InvitationsService {
    /// Authentication, the invitation manager and the audit log.
    app: App,
}

impl InvitationsService {
    /// A service over `app`.
    pub fn new(app: App) -> Self {
        Self { app }
    }
}

fn state_pb(s: InvitationState) -> pb::InvitationState {
    match s {
        InvitationState::Pending => pb::InvitationState::Pending,
        InvitationState::Used => pb::InvitationState::Used,
        InvitationState::Expired => pb::InvitationState::Expired,
        InvitationState::Revoked => pb::InvitationState::Revoked,
    }
}

/// The protobuf form of a stored invitation (state evaluated now).
pub fn invitation_pb(r: &InvitationRecord) -> pb::Invitation {
    pb::Invitation {
        id: r.id.clone(),
        customer: r.customer.clone(),
        service_id: r.service_id.clone(),
        provider_name: r.provider_name.clone(),
        platform_server_name: r.platform_server_name.clone(),
        platform_version: r.platform_version.clone(),
        profile: r.profile.clone(),
        admin_upn: r.admin_upn.clone(),
        state: state_pb(r.state(now_ms())).into(),
        created_at: Some(timestamp(r.created_at_ms)),
        expires_at: Some(timestamp(r.expires_at_ms)),
        created_by: r.created_by.clone(),
        used_at: r.used_at_ms.map(timestamp),
        onboarding_id: r.onboarding_id.clone().unwrap_or_default(),
        revoked_at: r.revoked_at_ms.map(timestamp),
        revoked_by: r.revoked_by.clone().unwrap_or_default(),
        tenant: r.tenant.clone().unwrap_or_default(),
        idempotency_key: r
            .idempotency
            .as_ref()
            .map(|i| i.key.clone())
            .unwrap_or_default(),
    }
}

fn valid_for(d: Option<prost_types::Duration>) -> Result<Option<Duration>> {
    crate::clock::optional_duration(d.as_ref(), "valid_for")
}

impl InvitationsService {
    async fn create(
        &self,
        req: Request<pb::CreateInvitationRequest>,
    ) -> Result<pb::CreateInvitationResponse> {
        let caller = self.app.auth().authorize(&req, OPERATORS)?;
        let r = req.into_inner();
        let mut new = NewInvitation {
            customer: r.customer,
            service_id: r.service_id,
            provider_name: r.provider_name,
            platform_server_name: r.platform_server_name,
            platform_version: r.platform_version,
            profile: r.profile,
            admin_upn: r.admin_upn,
            valid_for: None,
            tenant: r.tenant,
            idempotency_key: r.idempotency_key,
        };
        new.valid_for = match valid_for(r.valid_for) {
            Ok(d) => d,
            // Every violation in one answer: the others are found without the duration.
            Err(ServerError::InvalidArgument(bad)) => {
                let mut all = match self.app.invitations().check(&new) {
                    Err(invitations::InvitationError::InvalidArgument(v)) => v,
                    _ => Vec::new(),
                };
                all.extend(bad);
                return Err(ServerError::InvalidArgument(all));
            }
            Err(e) => return Err(e),
        };
        let created = self.app.invitations().create(&caller.identity, new).await?;
        tracing::info!(id = %created.record.id, actor = %caller.identity, "invitation created");
        Ok(pb::CreateInvitationResponse {
            invitation: Some(invitation_pb(&created.record)),
            token: created.token.to_string(),
            activation_url: created.activation_url.to_string(),
            email: Some(pb::RenderedEmail {
                subject: created.email.subject,
                text: created.email.text,
                html: created.email.html,
            }),
        })
    }

    fn get(&self, req: Request<pb::GetInvitationRequest>) -> Result<pb::Invitation> {
        self.app.auth().authorize(&req, OPERATORS)?;
        let inv = self.app.invitations();
        let rec = match req.into_inner().key {
            Some(pb::get_invitation_request::Key::Id(id)) => {
                inv.get(&ServerError::uuid("id", &id)?)?
            }
            Some(pb::get_invitation_request::Key::Token(t)) => {
                ServerError::required("token", &t)?;
                inv.get_by_token(&t)?
            }
            None => return Err(ServerError::invalid("key", "set either id or token")),
        };
        Ok(invitation_pb(&rec))
    }

    fn list(
        &self,
        req: Request<pb::ListInvitationsRequest>,
    ) -> Result<pb::ListInvitationsResponse> {
        self.app.auth().authorize(&req, OPERATORS)?;
        let r = req.into_inner();
        let state = match pb::InvitationState::try_from(r.state) {
            Ok(pb::InvitationState::Unspecified) => None,
            Ok(pb::InvitationState::Pending) => Some(InvitationState::Pending),
            Ok(pb::InvitationState::Used) => Some(InvitationState::Used),
            Ok(pb::InvitationState::Expired) => Some(InvitationState::Expired),
            Ok(pb::InvitationState::Revoked) => Some(InvitationState::Revoked),
            Err(_) => return Err(ServerError::invalid("state", "unknown state")),
        };
        let size = page_size(r.page_size)?;
        let fields = serde_json::json!({"state": r.state});
        let token = page_start(&r.page_token, &fields)?;
        if let Some(t) = token
            && uuid::Uuid::parse_str(t).is_err()
        {
            return Err(ServerError::invalid(
                "page_token",
                "not a token this server issued",
            ));
        }
        let (recs, next) = self.app.invitations().list(state, size, token)?;
        Ok(pb::ListInvitationsResponse {
            invitations: recs.iter().map(invitation_pb).collect(),
            next_page_token: next
                .map(|n| next_page_token(&n, &fields))
                .unwrap_or_default(),
        })
    }

    async fn revoke(&self, req: Request<pb::RevokeInvitationRequest>) -> Result<pb::Invitation> {
        let caller = self.app.auth().authorize(&req, OPERATORS)?;
        let r = req.into_inner();
        let id = ServerError::uuid("id", &r.id)?;
        ServerError::at_most("reason", &r.reason, crate::onboarding::MAX_REASON)?;
        // A sign-in of its holder finishing now is logged wholly before this (and then its
        // holder is refused from here on) or looks at the invitation after it and is refused.
        let revoked = {
            let _revoking = self.app.guards().revoking().await;
            self.app
                .invitations()
                .revoke(&caller.identity, &id, &r.reason)
                .await
        };
        let rec = match revoked {
            Ok(rec) => rec,
            Err(e) => {
                // Its outcome entry failed after the record was changed: revoked all the same,
                // so its holder is cut off all the same; the caller hears of the failure.
                if self.app.invitations().revoked_anyway(&id).is_some() {
                    self.app.guards().revoked(&id);
                }
                return Err(e.into());
            }
        };
        // Its holder's open streams end now; new calls are refused by the capability check.
        self.app.guards().revoked(&rec.id);
        tracing::info!(id = %rec.id, actor = %caller.identity, "invitation revoked");
        Ok(invitation_pb(&rec))
    }
}

#[tonic::async_trait]
impl InvitationsRpc for InvitationsService {
    async fn create_invitation(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Result<Response<pb::CreateInvitationResponse>, Status> {
        Ok(Response::new(self.create(request).await?))
    }

    async fn get_invitation(
        &self,
        request: Request<pb::GetInvitationRequest>,
    ) -> Result<Response<pb::Invitation>, Status> {
        Ok(Response::new(self.get(request)?))
    }

    async fn list_invitations(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> Result<Response<pb::ListInvitationsResponse>, Status> {
        Ok(Response::new(self.list(request)?))
    }

    async fn revoke_invitation(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Result<Response<pb::Invitation>, Status> {
        Ok(Response::new(self.revoke(request).await?))
    }
}
