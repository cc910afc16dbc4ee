//! The one time format: RFC 3339 in UTC with `Z` and exactly nine fractional digits, the same
//! as the audit log's own `time` field, so every instant Onboard writes (audit entries, stored
//! records, reports) sorts as text and reads the same everywhere. Parsing accepts any RFC 3339.
//! Stored instants that only need milliseconds are kept as Unix milliseconds (`i64`).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `t` in the one format (see the module docs).
pub fn format(t: OffsetDateTime) -> String {
    audit_log::format_time(t)
}

/// Now, in the one format.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Unix milliseconds in the one format (the epoch's text for an out-of-range value).
pub fn format_ms(ms: i64) -> String {
    format(from_ms(ms).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

/// Parses any RFC 3339 instant; `None` when it is not one.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    ms_of(OffsetDateTime::now_utc())
}

/// An instant in Unix milliseconds (saturating far outside any real date).
pub fn ms_of(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Unix milliseconds as an instant; `None` when out of range.
pub fn from_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_has_nine_digits_and_round_trips() {
        let t = from_ms(1_700_000_000_123).unwrap();
        assert_eq!(format(t), "2023-11-14T22:13:20.123000000Z");
        assert_eq!(parse(&format(t)), Some(t));
        assert_eq!(format_ms(1_700_000_000_123), format(t));
        assert_eq!(ms_of(t), 1_700_000_000_123);
        // Any RFC 3339 offset parses.
        assert_eq!(parse("2023-11-14T23:13:20.123+01:00"), Some(t));
        assert_eq!(parse("not a time"), None);
    }
}
