//! Conversions between our instants (Unix milliseconds, the one RFC 3339 format of
//! `onboard_core::time`) and protobuf timestamps.

use time::OffsetDateTime;

/// Unix milliseconds as a protobuf timestamp.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        // Always in 0..1_000_000_000, so the conversion cannot fail.
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// An RFC 3339 instant (as records and Graph carry them) as a protobuf timestamp.
pub fn timestamp_of(rfc3339: &str) -> Option<prost_types::Timestamp> {
    onboard_core::time::parse(rfc3339).map(|t| timestamp(onboard_core::time::ms_of(t)))
}

/// A protobuf timestamp as a `time` instant; `None` when out of range.
pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}
