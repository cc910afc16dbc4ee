//! The wizard's side of the hand-off to a privileged admin: the link the first admin copies
//! and sends (`IssueHandOffLink` in process), and the hand-off facts as the page shows them.
//! The link's holder then uses the ordinary endpoints with its own token: the landing
//! (`api::invitation`, which names the onboarding it finishes), the sign-in, the plan (only
//! what is left) and Provision.

use axum::Json;
use axum::response::{IntoResponse, Response};
use onboard_proto::v1 as pb;
use onboard_proto::v1::onboarding_server::Onboarding;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::answer;
use super::visit::Page;

/// A wait for a privileged admin as the page shows it.
pub(super) fn hand_off_json(h: pb::HandOff) -> Value {
    json!({
        "roles": h.roles,
        "changes_left": h.changes_left,
        "expires_at": h.expires_at.map(|t| t.seconds),
        "admin_consent_url": h.admin_consent_url,
    })
}

/// `{onboarding_id}`
#[derive(Deserialize)]
pub(super) struct LinkBody {
    /// The waiting onboarding.
    onboarding_id: String,
}

/// A new single-use link for the privileged admin (replacing the one issued before).
pub(super) async fn link(Page { w, visit, body }: Page<LinkBody>) -> Response {
    let req = pb::IssueHandOffLinkRequest {
        onboarding_id: body.onboarding_id,
        invitation_token: visit.token.to_string(),
    };
    let req = visit.request("IssueHandOffLink", req);
    answer(
        Onboarding::issue_hand_off_link(&w.onboarding, req).await,
        |l| {
            Json(json!({
                "link": l.activation_url,
                "expires_at": l.expires_at.map(|t| t.seconds),
                "roles": l.roles,
                "admin_consent_url": l.admin_consent_url,
            }))
            .into_response()
        },
    )
}
