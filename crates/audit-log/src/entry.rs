//! Entry bytes: the caller's fields, with the log's own `v`, `seq` and `time` in front.
//!
//! The bytes are written once and hashed as stored; nothing ever re-encodes them.

use std::io::Write;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use crate::error::AuditError;

/// The schema version the log's own tests write. Onboard's entries carry the version of the
/// typed definition that made them (`onboard_core::audit::SCHEMA_VERSION`).
pub const SCHEMA_VERSION: u32 = 1;
/// Largest entry: tile entry bundles use a 16-bit length.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;
/// The longest `{"v":…,"seq":…,"time":"…",` plus the closing brace: a u32 version, a u64 seq
/// and a 30-byte time.
const HEADER_MAX: usize = 6 + 10 + 7 + 20 + 10 + 30 + 2 + 1;
/// Fields the log writes itself.
const RESERVED: [&str; 3] = ["v", "seq", "time"];

/// RFC 3339 UTC with nanoseconds, always nine digits so that entries sort as text.
const TIME_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// An event's fields, serialised on the caller's thread so the single writer only splices.
#[derive(Debug, Clone)]
pub struct PreparedEntry {
    /// The schema version written as `v`.
    version: u32,
    /// `"k":v,...` without braces; empty when there are no fields.
    body: Vec<u8>,
}

impl PreparedEntry {
    /// Serialises `fields` as an entry of schema `version`, refusing the reserved names.
    pub fn new(version: u32, fields: &Map<String, Value>) -> Result<Self, AuditError> {
        if let Some(k) = RESERVED.iter().find(|k| fields.contains_key(**k)) {
            return Err(AuditError::InvalidEntry(format!(
                "field {k:?} is reserved: the log writes v, seq and time itself"
            )));
        }
        let mut body = serde_json::to_vec(fields)
            .map_err(|e| AuditError::InvalidEntry(format!("fields do not serialise: {e}")))?;
        // `body` is `{...}`: keep what is between the braces.
        body.pop();
        body.remove(0);
        let entry = Self { version, body };
        let worst = entry.body.len() + HEADER_MAX;
        if worst > MAX_ENTRY_BYTES {
            return Err(AuditError::InvalidEntry(format!(
                "entry is {worst} bytes; at most {MAX_ENTRY_BYTES} are allowed"
            )));
        }
        Ok(entry)
    }

    /// The stored bytes for this entry at `seq`, written at `time` (from [`format_time`]).
    #[cfg(test)]
    pub(crate) fn encode(&self, seq: u64, time: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_max());
        self.encode_into(seq, time, &mut out);
        out
    }

    /// An upper bound of the encoded length.
    pub(crate) fn encoded_len_max(&self) -> usize {
        self.body.len() + HEADER_MAX
    }

    /// Appends the stored bytes for this entry at `seq`, written at `time`, to `out`.
    pub(crate) fn encode_into(&self, seq: u64, time: &str, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"v\":{},\"seq\":{seq},\"time\":\"{time}\"",
            self.version
        );
        if !self.body.is_empty() {
            out.push(b',');
            out.extend_from_slice(&self.body);
        }
        out.push(b'}');
    }
}

/// An instant as the log writes it.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    // The format has no fallible parts for in-range years; fall back to the epoch text anyway.
    t.format(TIME_FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000000Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_fields_come_first_and_the_result_is_json() {
        let Value::Object(m) = json!({"action": "app.create", "phase": "intent"}) else {
            unreachable!()
        };
        let e = PreparedEntry::new(SCHEMA_VERSION, &m).unwrap();
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        let bytes = e.encode(42, &format_time(t));
        let s = String::from_utf8(bytes.clone()).unwrap();
        assert!(s.starts_with(r#"{"v":1,"seq":42,"time":"2023-11-14T22:13:20.123456789Z","#));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["action"], "app.create");
        assert_eq!(v["seq"], 42);
    }

    #[test]
    fn reserved_and_oversized_fields_are_refused() {
        let Value::Object(m) = json!({"seq": 1}) else {
            unreachable!()
        };
        assert!(PreparedEntry::new(SCHEMA_VERSION, &m).is_err());
        let Value::Object(m) = json!({"big": "x".repeat(70_000)}) else {
            unreachable!()
        };
        let err = PreparedEntry::new(SCHEMA_VERSION, &m)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 65535"), "{err}");
    }

    #[test]
    fn empty_fields_make_a_valid_entry() {
        let e = PreparedEntry::new(SCHEMA_VERSION, &Map::new()).unwrap();
        let t = format_time(OffsetDateTime::UNIX_EPOCH);
        let v: Value = serde_json::from_slice(&e.encode(0, &t)).unwrap();
        assert_eq!(v["v"], 1);
    }
}
