//! A request that does not decode, in the house's terms: INVALID_ARGUMENT with a
//! `google.rpc.BadRequest` field violation naming the proto field path and the rule broken,
//! like any other bad field. tonic's codec answers such a request INTERNAL with prost's text,
//! "failed to decode Protobuf message: " then one `Message.field: ` frame per level of
//! nesting, innermost first (prost pushes a frame as the error leaves each message), then the
//! reason: `Registration.tenant_id: AddServiceSecretRequest.registration: invalid string
//! value: data is not UTF-8 encoded` is `registration.tenant_id`. A oneof's frame names the
//! oneof (`target`), as the handlers do. Without a frame (the request's own framing is
//! broken) the violation is the whole request's: an empty field name, and the message it is
//! not a valid one of.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message;

use crate::error::{FieldViolation, ServerError};

/// How prost's text begins.
const DECODE: &str = "failed to decode Protobuf message: ";

/// prost's reason for a string field that is not UTF-8.
const NOT_UTF8: &str = "invalid string value: data is not UTF-8 encoded";

/// The refusal of a request to `path` that tonic's codec could not decode, from its status
/// `message` (prost's text; any other names no field).
pub(super) fn refusal(path: &str, message: &str) -> ServerError {
    let mut rest = message.strip_prefix(DECODE).unwrap_or_default();
    let mut fields = Vec::new();
    while let Some((field, after)) = frame(rest) {
        fields.push(field);
        rest = after;
    }
    let violation = if fields.is_empty() {
        let name = request_message(path).unwrap_or("request");
        FieldViolation {
            field: String::new(),
            description: format!("the request is not a valid {name} message"),
        }
    } else {
        fields.reverse();
        FieldViolation {
            field: fields.join("."),
            description: rule(rest),
        }
    };
    ServerError::InvalidArgument(vec![violation])
}

/// The field of one `Message.field: ` frame at the start of `text`, and what follows it.
fn frame(text: &str) -> Option<(&str, &str)> {
    let (frame, after) = text.split_once(": ")?;
    let (message, field) = frame.split_once('.')?;
    // A keyword field is `r#type` in Rust, `type` in the proto.
    let field = field.strip_prefix("r#").unwrap_or(field);
    (identifier(message) && identifier(field)).then_some((field, after))
}

/// Whether `s` is a proto (and Rust) identifier: a letter or `_`, then letters, digits, `_`.
fn identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The rule a field's bytes broke, from prost's `reason`.
fn rule(reason: &str) -> String {
    if reason == NOT_UTF8 {
        return "must be valid UTF-8 text".to_owned();
    }
    format!("must be a valid value of the field's type ({reason})")
}

/// The request message's name of the RPC at `path` (`/onboard.v1.Invitations/CreateInvitation`
/// → `CreateInvitationRequest`), from the served descriptor sets, read once.
fn request_message(path: &str) -> Option<&'static str> {
    static TABLE: OnceLock<HashMap<String, String>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = HashMap::new();
        for bytes in [
            onboard_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
                continue;
            };
            for file in &set.file {
                let package = file.package();
                for svc in &file.service {
                    for m in &svc.method {
                        let service = match package {
                            "" => svc.name().to_owned(),
                            p => format!("{p}.{}", svc.name()),
                        };
                        let input = m.input_type();
                        let short = input.rsplit('.').next().unwrap_or(input);
                        t.insert(format!("/{service}/{}", m.name()), short.to_owned());
                    }
                }
            }
        }
        t
    });
    table.get(path).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::refusal;
    use crate::error::ServerError;

    /// The one violation of the refusal of `message` for `path`, as (field, description).
    fn violation(path: &str, message: &str) -> Option<(String, String)> {
        match refusal(path, message) {
            ServerError::InvalidArgument(v) if v.len() == 1 => {
                let v = v.into_iter().next()?;
                Some((v.field, v.description))
            }
            _ => None,
        }
    }

    #[test]
    fn the_field_path_is_read_from_prosts_frames_outermost_first() {
        let create = "/onboard.v1.Invitations/CreateInvitation";
        let top = "failed to decode Protobuf message: CreateInvitationRequest.customer: \
                   invalid string value: data is not UTF-8 encoded";
        assert_eq!(
            violation(create, top),
            Some(("customer".into(), "must be valid UTF-8 text".into()))
        );
        let nested = "failed to decode Protobuf message: RegistrationRef.tenant_id: \
                      AddServiceSecretRequest.registration: buffer underflow";
        assert_eq!(
            violation("/onboard.v1.Credentials/AddServiceSecret", nested),
            Some((
                "registration.tenant_id".into(),
                "must be a valid value of the field's type (buffer underflow)".into()
            ))
        );
        let keyword = "failed to decode Protobuf message: A.r#type: invalid varint";
        assert_eq!(violation(create, keyword).map(|v| v.0), Some("type".into()));
        // A reason that looks like a frame but is not one ("unexpected type URL.type_url").
        let any = "failed to decode Protobuf message: X.detail: unexpected type URL.type_url: \
                   expected type URL: \"a\" (got: \"b\")";
        assert_eq!(violation(create, any).map(|v| v.0), Some("detail".into()));
    }

    #[test]
    fn without_a_frame_the_whole_request_is_named() {
        let message = "failed to decode Protobuf message: invalid wire type value: 7";
        assert_eq!(
            violation("/onboard.v1.Invitations/CreateInvitation", message),
            Some((
                String::new(),
                "the request is not a valid CreateInvitationRequest message".into()
            ))
        );
        assert_eq!(
            violation("/grpc.health.v1.Health/Check", message).map(|v| v.1),
            Some("the request is not a valid HealthCheckRequest message".into())
        );
        assert_eq!(
            violation("/nowhere/Nothing", message).map(|v| v.1),
            Some("the request is not a valid request message".into())
        );
        // Not prost's text: no field is named.
        assert_eq!(
            violation("/onboard.v1.Audit/Follow", "").map(|v| v.1),
            Some("the request is not a valid FollowRequest message".into())
        );
    }
}
