//! Page sizes shared by the list RPCs.

use crate::error::{Result, ServerError};

/// The page size when a request sets none.
pub const DEFAULT_PAGE: usize = 100;
/// The largest page a request may ask for; bounds one response's size and work.
pub const MAX_PAGE: usize = 1000;

/// The page size to use for a request's `page_size`.
pub fn page_size(requested: u32) -> Result<usize> {
    match usize::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE),
        Ok(n) if n <= MAX_PAGE => Ok(n),
        _ => Err(ServerError::invalid(
            "page_size",
            format!("at most {MAX_PAGE}"),
        )),
    }
}

/// The `next_page_token` that continues a request at `position`: the position and a tag of
/// the request's other fields (`fields`: all but `page_size` and `page_token`). AIP-158: a
/// token continues the request that returned it, so a filter cannot change between pages
/// unnoticed ([`page_start`] refuses it).
pub fn next_page_token(position: &str, fields: &serde_json::Value) -> String {
    format!("{position}.{}", request_tag(fields))
}

/// Where the page asked for by `token` starts (`None`: the first page), or INVALID_ARGUMENT
/// naming `page_token` when the token was not issued for a request with these `fields`.
pub fn page_start<'a>(token: &'a str, fields: &serde_json::Value) -> Result<Option<&'a str>> {
    if token.is_empty() {
        return Ok(None);
    }
    match token.rsplit_once('.') {
        Some((position, tag)) if !position.is_empty() && tag == request_tag(fields) => {
            Ok(Some(position))
        }
        _ => Err(ServerError::invalid(
            "page_token",
            "not a token for this request: a page token continues the request that returned \
             it, with the same fields (only page_size may change)",
        )),
    }
}

/// 16 hex digits of SHA-256 over the fields' JSON (a check against mix-ups, not a secret).
fn request_tag(fields: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(fields.to_string().as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_token_continues_only_the_request_it_came_from() {
        let fields = json!({"state": 2, "tenant_id": "t"});
        let token = next_page_token("0190-abc", &fields);
        assert_eq!(page_start(&token, &fields).ok().flatten(), Some("0190-abc"));
        assert_eq!(page_start("", &fields).ok(), Some(None));
        let other = json!({"state": 3, "tenant_id": "t"});
        for bad in [token.as_str(), "0190-abc", ".", "x.y"] {
            let fields = if bad == token { &other } else { &fields };
            match page_start(bad, fields) {
                Err(ServerError::InvalidArgument(v)) => assert_eq!(v[0].field, "page_token"),
                other => panic!("{bad:?} was not refused: {other:?}"),
            }
        }
    }
}
