//! Conversions between our instants (Unix milliseconds, the one RFC 3339 format of
//! `onboard_core::time`) and protobuf timestamps, and the one check of the timestamps and
//! durations requests carry: well formed as `google/protobuf/timestamp.proto` and
//! `duration.proto` define them, or INVALID_ARGUMENT naming the field (nothing is folded or
//! clamped).

use time::OffsetDateTime;

use crate::error::{Result, ServerError};

/// The first second a protobuf timestamp may hold: 0001-01-01T00:00:00Z.
const FIRST_SECOND: i64 = -62_135_596_800;
/// The last second a protobuf timestamp may hold: 9999-12-31T23:59:59Z.
const LAST_SECOND: i64 = 253_402_300_799;
/// The largest `nanos` of a timestamp or of a non-negative duration.
const MAX_NANOS: u32 = 999_999_999;

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

/// A duration as a protobuf one (seconds saturate at `i64::MAX`).
pub fn proto_duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Below 1e9, so it fits.
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A request's timestamp `field` as an instant; INVALID_ARGUMENT naming the field when its
/// `nanos` are outside 0..=999,999,999 or its `seconds` outside 0001-01-01..9999-12-31.
pub fn instant(t: &prost_types::Timestamp, field: &str) -> Result<OffsetDateTime> {
    let nanos = nanos(t.nanos, field)?;
    if !(FIRST_SECOND..=LAST_SECOND).contains(&t.seconds) {
        return Err(ServerError::invalid(
            field,
            format!(
                "seconds must be from {FIRST_SECOND} (0001-01-01T00:00:00Z) to {LAST_SECOND} \
                 (9999-12-31T23:59:59Z)"
            ),
        ));
    }
    let at = i128::from(t.seconds) * 1_000_000_000 + i128::from(nanos);
    OffsetDateTime::from_unix_timestamp_nanos(at)
        .map_err(|_| ServerError::invalid(field, "not a valid time"))
}

/// A request's duration `field`, which must not be negative; INVALID_ARGUMENT naming the field
/// when it is, or when its `nanos` are outside 0..=999,999,999 (never carried into seconds).
pub fn duration(d: &prost_types::Duration, field: &str) -> Result<std::time::Duration> {
    let negative = d.seconds < 0 || (d.seconds == 0 && d.nanos < 0);
    let Ok(seconds) = u64::try_from(d.seconds) else {
        return Err(ServerError::invalid(field, "must not be negative"));
    };
    if negative {
        return Err(ServerError::invalid(field, "must not be negative"));
    }
    Ok(std::time::Duration::new(seconds, nanos(d.nanos, field)?))
}

/// A request's optional duration `field` (see [`duration`]); `None` when unset.
pub fn optional_duration(
    d: Option<&prost_types::Duration>,
    field: &str,
) -> Result<Option<std::time::Duration>> {
    d.map(|d| duration(d, field)).transpose()
}

/// A timestamp's or duration's `nanos`, checked to be in 0..=999,999,999.
fn nanos(n: i32, field: &str) -> Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_NANOS)
        .ok_or_else(|| ServerError::invalid(field, format!("nanos must be from 0 to {MAX_NANOS}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(ServerError::InvalidArgument(v)) => format!("{}: {}", v[0].field, v[0].description),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn timestamps_must_be_well_formed() {
        let at = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        let ok = |t| instant(&t, "f").map(|i| i.unix_timestamp_nanos()).ok();
        assert_eq!(ok(at(0, 0)), Some(0));
        assert_eq!(
            ok(at(LAST_SECOND, 999_999_999)),
            Some(i128::from(LAST_SECOND) * 1_000_000_000 + 999_999_999)
        );
        assert_eq!(
            ok(at(FIRST_SECOND, 0)),
            Some(i128::from(FIRST_SECOND) * 1_000_000_000)
        );
        for (t, says) in [
            (at(0, 1_000_000_000), "nanos"),
            (at(0, -1), "nanos"),
            (at(10, i32::MIN), "nanos"),
            (at(FIRST_SECOND - 1, 0), "0001-01-01"),
            (at(LAST_SECOND + 1, 0), "9999-12-31"),
            (at(i64::MAX, 0), "seconds"),
            (at(i64::MIN, 0), "seconds"),
        ] {
            let why = refused(instant(&t, "filter.since"));
            assert!(
                why.starts_with("filter.since: ") && why.contains(says),
                "{t:?}: {why}"
            );
        }
    }

    #[test]
    fn durations_must_be_well_formed_and_not_negative() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        let ok = |d| duration(&d, "f").ok();
        assert_eq!(ok(d(0, 0)), Some(std::time::Duration::ZERO));
        assert_eq!(
            ok(d(5, 999_999_999)),
            Some(std::time::Duration::new(5, 999_999_999))
        );
        for (d, says) in [
            (d(-1, 0), "negative"),
            (d(0, -1), "negative"),
            (d(i64::MIN, 0), "negative"),
            (d(5, 1_000_000_000), "nanos"),
            (d(5, -1), "nanos"),
            (d(0, i32::MAX), "nanos"),
        ] {
            let why = refused(duration(&d, "valid_for"));
            assert!(
                why.starts_with("valid_for: ") && why.contains(says),
                "{d:?}: {why}"
            );
        }
    }
}
