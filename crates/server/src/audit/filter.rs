//! Entry filters for ListEntries and Follow: match on the entry's own JSON fields.

use onboard_proto::v1 as pb;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::clock::instant;
use crate::error::{Result, ServerError};
use onboard_core::time::parse as parse_rfc3339;

/// A parsed `EntryFilter`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Required `tenant_id`, if any.
    tenant_id: Option<String>,
    /// Required `onboarding_id`, if any.
    onboarding_id: Option<String>,
    /// Required `action`, or prefix followed by a dot.
    action: Option<String>,
    /// Lower bound on `time`, inclusive.
    since: Option<OffsetDateTime>,
    /// Upper bound on `time`, exclusive.
    until: Option<OffsetDateTime>,
}

impl Filter {
    /// Parses a request's filter; `prefix` names the field in errors (`filter`).
    pub fn parse(f: Option<pb::EntryFilter>, prefix: &str) -> Result<Self> {
        let Some(f) = f else {
            return Ok(Self::default());
        };
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        let time = |t: Option<prost_types::Timestamp>, name: &str| -> Result<_> {
            t.map(|t| instant(&t, &format!("{prefix}.{name}")))
                .transpose()
        };
        let since = time(f.since, "since")?;
        let until = time(f.until, "until")?;
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(ServerError::invalid(
                format!("{prefix}.until"),
                "must not be before since",
            ));
        }
        Ok(Self {
            tenant_id: nonempty(f.tenant_id),
            onboarding_id: nonempty(f.onboarding_id),
            action: nonempty(f.action),
            since,
            until,
        })
    }

    /// The filter as a page token binds it: `null` when it lets everything through (so no
    /// filter and an empty `EntryFilter` are the same request), else each condition, instants
    /// to the nanosecond.
    pub fn key(&self) -> Value {
        if self.is_empty() {
            return Value::Null;
        }
        let nanos = |t: Option<OffsetDateTime>| t.map(|t| t.unix_timestamp_nanos().to_string());
        json!({
            "tenant_id": self.tenant_id,
            "onboarding_id": self.onboarding_id,
            "action": self.action,
            "since": nanos(self.since),
            "until": nanos(self.until),
        })
    }

    /// True when the filter lets everything through (no need to parse entries).
    pub fn is_empty(&self) -> bool {
        self.tenant_id.is_none()
            && self.onboarding_id.is_none()
            && self.action.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// Whether the stored entry matches. An entry that is not a JSON object (never written by
    /// us) matches only the empty filter.
    pub fn matches(&self, leaf: &[u8]) -> bool {
        if self.is_empty() {
            return true;
        }
        let Ok(Value::Object(e)) = serde_json::from_slice::<Value>(leaf) else {
            return false;
        };
        let field = |k: &str| e.get(k).and_then(Value::as_str);
        let eq =
            |want: &Option<String>, k: &str| want.as_deref().is_none_or(|w| field(k) == Some(w));
        if !eq(&self.tenant_id, "tenant_id") || !eq(&self.onboarding_id, "onboarding_id") {
            return false;
        }
        if let Some(a) = &self.action {
            let ok = field("action").is_some_and(|got| {
                got == a || (got.starts_with(a.as_str()) && got[a.len()..].starts_with('.'))
            });
            if !ok {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = field("time").and_then(parse_rfc3339) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_fields_prefixes_and_times() {
        let leaf = br#"{"v":1,"seq":3,"time":"2026-11-26T09:00:00.5Z","action":"invitation.create","tenant_id":"t1"}"#;
        let f = |tenant: &str, action: &str, since: Option<i64>, until: Option<i64>| {
            Filter::parse(
                Some(pb::EntryFilter {
                    tenant_id: tenant.into(),
                    onboarding_id: String::new(),
                    action: action.into(),
                    since: since.map(|s| prost_types::Timestamp {
                        seconds: s,
                        nanos: 0,
                    }),
                    until: until.map(|s| prost_types::Timestamp {
                        seconds: s,
                        nanos: 0,
                    }),
                }),
                "filter",
            )
            .expect("filter")
        };
        let t = 1_795_683_600; // 2026-11-26T09:00:00Z
        assert!(f("", "", None, None).matches(leaf));
        assert!(f("t1", "invitation", None, None).matches(leaf));
        assert!(f("t1", "invitation.create", Some(t), Some(t + 1)).matches(leaf));
        assert!(!f("t2", "", None, None).matches(leaf));
        assert!(!f("", "invit", None, None).matches(leaf));
        assert!(!f("", "", Some(t + 1), None).matches(leaf));
        assert!(!f("", "", None, Some(t)).matches(leaf));
        assert!(!f("t1", "", None, None).matches(b"not json"));
    }
}
