//! Credential manager values to and from protobuf.

use credentials::{
    AuthMode, ExpiringSecret, Grants, NewSecret, RegistrationRef, RegistrationView, RotationEvent,
    SecretInfo,
};
use onboard_proto::v1 as pb;

use crate::clock::timestamp_of as ts;
use crate::error::{Result, ServerError};
use crate::sealing::Delivery;

/// The request's registration reference, or INVALID_ARGUMENT naming the field.
pub fn reg_ref(r: Option<&pb::RegistrationRef>) -> Result<RegistrationRef> {
    let r = r.ok_or_else(|| ServerError::invalid("registration", "required"))?;
    ServerError::required("registration.tenant_id", &r.tenant_id)?;
    let client_id = ServerError::uuid("registration.client_id", &r.client_id)?;
    // Tenant ids and domain names compare without regard to case, as in Entra.
    Ok(RegistrationRef::new(
        r.tenant_id.to_ascii_lowercase(),
        client_id,
    ))
}

/// A secret's metadata.
pub fn secret_pb(s: &SecretInfo) -> pb::SecretInfo {
    pb::SecretInfo {
        key_id: s.key_id.clone(),
        hint: s.hint.clone(),
        service_id: s.service_id.clone(),
        start: ts(&s.start),
        end: ts(&s.end),
        // INT64_MAX exactly when the expiry is unknown (`end` unset), as the proto says: never
        // 0, which reads as "expires today", and never inside a horizon.
        days_until_expiry: s.days_until_expiry,
        current: s.current,
    }
}

/// A new secret, value included (in the clear or sealed, as `delivery` says), whose hand-over
/// to this caller is audit entry `hand_over_seq`.
pub fn new_secret_pb(
    s: &NewSecret,
    delivery: &Delivery,
    hand_over_seq: u64,
) -> Result<pb::NewSecret> {
    let (secret, sealed) = delivery.deliver(&s.value, &s.info.key_id)?;
    Ok(pb::NewSecret {
        info: Some(secret_pb(&s.info)),
        secret,
        audit_seq: s.audit_seq,
        sealed,
        hand_over_audit_seq: hand_over_seq,
    })
}

/// One rotation stage.
pub fn rotation_pb(e: &RotationEvent, new_secret: Option<pb::NewSecret>) -> pb::RotateSecretEvent {
    pb::RotateSecretEvent {
        stage: e.stage.to_owned(),
        done: e.done,
        new_secret,
        audit_seq: e.audit_seq.unwrap_or(0),
    }
}

/// Grants as listed.
pub fn grants_pb(g: Grants) -> pb::Grants {
    pb::Grants {
        permissions: g.permissions,
        roles: g.roles,
        audit_seqs: g.audit_seqs,
    }
}

/// A managed registration.
pub fn registration_pb(v: &RegistrationView) -> pb::Registration {
    pb::Registration {
        registration: Some(pb::RegistrationRef {
            tenant_id: v.tenant_id.clone(),
            client_id: v.client_id.clone(),
        }),
        display_name: v.display_name.clone(),
        profile: v.profile.clone(),
        attached_at: ts(&v.attached_at),
        source: v.source.as_str().to_owned(),
        auth_mode: match v.auth_mode {
            AuthMode::AdminSession => "admin_session",
            AuthMode::SelfRotation => "self_rotation",
        }
        .to_owned(),
        service_ids: v.services.clone(),
    }
}

/// An expiring secret.
pub fn expiring_pb(e: &ExpiringSecret) -> pb::ExpiringSecret {
    pb::ExpiringSecret {
        registration: Some(pb::RegistrationRef {
            tenant_id: e.registration.tenant_id.clone(),
            client_id: e.registration.client_id.clone(),
        }),
        secret: Some(secret_pb(&e.secret)),
    }
}
