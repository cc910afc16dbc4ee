//! `--output json`: every answer in protobuf's canonical JSON mapping
//! (<https://protobuf.dev/programming-guides/json/>), written by `prost-reflect` from the
//! descriptor set the server also serves by reflection, so the output is exactly the gRPC
//! answer and parses back into it. Field names are as in the `.proto` files (`audit_seq`,
//! not `auditSeq`), every field is present (defaults too), enums are their names
//! (`INVITATION_STATE_PENDING`), timestamps RFC 3339, durations `"86400s"`, bytes base64, and
//! 64-bit integers plain JSON numbers (canonical parsers accept both).

use std::sync::OnceLock;

use anyhow::Context;
use onboard_proto::v1 as pb;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// A generated message and its full protobuf name.
pub trait ProtoName: prost::Message + Sized {
    /// E.g. `onboard.v1.Invitation`.
    const NAME: &'static str;
}

macro_rules! names {
    ($($t:ty => $n:literal),* $(,)?) => {
        $(impl ProtoName for $t { const NAME: &'static str = $n; })*
        /// Every name above, for the test that they all exist in the descriptor set.
        #[cfg(test)]
        const ALL: &[&str] = &[$($n),*];
    };
}

names! {
    pb::CreateInvitationResponse => "onboard.v1.CreateInvitationResponse",
    pb::Invitation => "onboard.v1.Invitation",
    pb::ListInvitationsResponse => "onboard.v1.ListInvitationsResponse",
    pb::OnboardingInfo => "onboard.v1.OnboardingInfo",
    pb::ListOnboardingsResponse => "onboard.v1.ListOnboardingsResponse",
    pb::ProvisionEvent => "onboard.v1.ProvisionEvent",
    pb::NewSecret => "onboard.v1.NewSecret",
    pb::RotateSecretEvent => "onboard.v1.RotateSecretEvent",
    pb::RevokeSecretResponse => "onboard.v1.RevokeSecretResponse",
    pb::ListSecretsResponse => "onboard.v1.ListSecretsResponse",
    pb::ListExpiringResponse => "onboard.v1.ListExpiringResponse",
    pb::Grants => "onboard.v1.Grants",
    pb::Registration => "onboard.v1.Registration",
    pb::EndAdminSessionResponse => "onboard.v1.EndAdminSessionResponse",
    pb::VerifyReport => "onboard.v1.VerifyReport",
    pb::ListDriftResponse => "onboard.v1.ListDriftResponse",
    pb::Checkpoint => "onboard.v1.Checkpoint",
    pb::Entry => "onboard.v1.Entry",
    pb::ListEntriesResponse => "onboard.v1.ListEntriesResponse",
    pb::InclusionProof => "onboard.v1.InclusionProof",
    pb::VerifierKeys => "onboard.v1.VerifierKeys",
}

/// The descriptor pool of `onboard.v1` (decoded once).
fn pool() -> anyhow::Result<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(onboard_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| anyhow::anyhow!("the built-in descriptor set: {e}"))
}

/// The message as a JSON value (canonical mapping, options in the module doc).
pub fn to_value<M: ProtoName>(msg: &M) -> anyhow::Result<serde_json::Value> {
    let desc = pool()?
        .get_message_by_name(M::NAME)
        .with_context(|| format!("{} is not in the descriptor set", M::NAME))?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .with_context(|| format!("re-reading a {}", M::NAME))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .with_context(|| format!("writing a {} as JSON", M::NAME))
}

/// Pretty JSON for one answer.
pub fn pretty<M: ProtoName>(msg: &M) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&to_value(msg)?)?)
}

/// One line of JSON, for streams (one message per line).
pub fn line<M: ProtoName>(msg: &M) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&to_value(msg)?)?)
}

/// Parses JSON written by [`to_value`] back into the message (the round trip the tests check).
#[cfg(test)]
pub fn parse<M: ProtoName + Default>(text: &str) -> anyhow::Result<M> {
    use serde::de::DeserializeSeed;
    let desc = pool()?
        .get_message_by_name(M::NAME)
        .with_context(|| M::NAME)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let dynamic = desc.deserialize(&mut de)?;
    de.end()?;
    Ok(dynamic.transcode_to::<M>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_message_is_in_the_descriptor_set() {
        let pool = pool().expect("pool");
        for n in ALL {
            assert!(pool.get_message_by_name(n).is_some(), "{n}");
        }
    }

    #[test]
    fn an_answer_round_trips_with_proto_field_names_and_all_fields() {
        let inv = pb::Invitation {
            id: "i-1".into(),
            customer: "Contoso – Zürich".into(),
            state: pb::InvitationState::Pending.into(),
            created_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let v = to_value(&inv).expect("json");
        assert_eq!(v["state"], "INVITATION_STATE_PENDING");
        assert_eq!(v["created_at"], "2027-01-15T08:00:00Z");
        assert_eq!(v["admin_upn"], "");
        let back: pb::Invitation = parse(&pretty(&inv).expect("text")).expect("parse");
        assert_eq!(back, inv);
        let e = pb::Entry {
            seq: 1 << 40,
            leaf: b"{}".to_vec(),
            ..Default::default()
        };
        let v = to_value(&e).expect("json");
        assert_eq!(v["seq"], serde_json::json!(1u64 << 40));
        assert_eq!(v["leaf"], "e30=");
        let back: pb::Entry = parse(&line(&e).expect("line")).expect("parse");
        assert_eq!(back, e);
    }
}
