//! URL building for Graph: OData string literals, key segments and query strings.
//! Names typed by admins may contain `'`, `&`, `#` or spaces; all of it must survive intact.

use reqwest::Url;

use crate::error::EntraError;

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub(crate) fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An OData string literal for `$filter`: quotes doubled, then wrapped in quotes.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A key segment value such as `uniqueName='…'` inside a path: literal, percent-encoded except
/// the quotes that delimit it.
pub(crate) fn key(s: &str) -> String {
    format!("'{}'", pct(&s.replace('\'', "''")).replace("%27", "'"))
}

/// A path segment made of an object id: a GUID, or base64url for app-role assignments and
/// grants. Anything else is refused so a crafted value cannot walk to another endpoint.
pub(crate) fn id(s: &str) -> Result<&str, EntraError> {
    let ok_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if !s.is_empty() && s.len() <= 128 && s.bytes().all(ok_byte) {
        Ok(s)
    } else {
        Err(EntraError::InvalidInput(format!("not an object id: {s:?}")))
    }
}

/// `base` + `/path` + `?query` with values percent-encoded; `$` in names stays literal, which
/// is what Graph's docs show.
pub(crate) fn url(base: &Url, path: &str, query: &[(&str, &str)]) -> Result<Url, EntraError> {
    let mut s = format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    for (i, (k, v)) in query.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&pct(v));
    }
    Url::parse(&s).map_err(|e| EntraError::InvalidInput(format!("cannot build URL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_quotes() {
        assert_eq!(literal("O'Brien"), "'O''Brien'");
    }

    #[test]
    fn key_segments_keep_quotes_and_encode_the_rest() {
        assert_eq!(key("lp-a/b c'd"), "'lp-a%2Fb%20c''d'");
    }

    #[test]
    fn ids_must_look_like_ids() {
        assert!(id("0d8f4c1e-1111-2222-3333-444455556666").is_ok());
        assert!(id("zo6lc74Q7Rxh-3QsGdwdJlkr_6CBVJBQZBrmgV8p7vE").is_ok());
        assert!(id("a/b").is_err() && id("a%2Fb").is_err() && id("a.b").is_err());
        assert!(id("../me").is_err());
        assert!(id("").is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        let base = Url::parse("https://graph.microsoft.com/v1.0").unwrap();
        let u = url(
            &base,
            "applications",
            &[("$filter", &format!("displayName eq {}", literal("a&b'c")))],
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://graph.microsoft.com/v1.0/applications?$filter=displayName%20eq%20%27a%26b%27%27c%27"
        );
    }
}
