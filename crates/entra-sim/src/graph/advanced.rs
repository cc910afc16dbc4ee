//! Advanced queries on directory objects (Learn "Advanced query capabilities on Microsoft
//! Entra ID objects", `graph/aad-advanced-queries`): `ne`, `not` and `endsWith` in `$filter`,
//! `$orderby` (with a `$filter`, or on a property not sorted by default) and `$search` are
//! served from a separate index, and only when the request asks for it: the
//! `ConsistencyLevel: eventual` header *and*, except for `$search`, `$count=true`. Without them
//! Graph refuses the query (400 `Request_UnsupportedQuery`) and ignores a bare `$count=true`.
//! docs/microsoft.md §22.

use axum::http::StatusCode;
use axum::response::Response;

use super::Ctx;
use super::odata::Cond;

/// Entity sets that are not directory objects: the rules here do not apply to them.
const NOT_DIRECTORY: &[&str] = &["roleManagement/"];

/// `$orderby` properties Graph sorts by default (no advanced query parameters), per entity set.
const DEFAULT_SORT: &[(&str, &[&str])] = &[("users", &["displayName", "userPrincipalName"])];

/// The operator of `conds` that only an advanced query may use, if any, with Graph's refusal.
fn advanced_operator(conds: &[Cond]) -> Option<String> {
    // Observed for `ne` without the advanced query parameters (microsoft-graph-docs-contrib#9043,
    // microsoft-graph-docs#22101); `endsWith`'s text is the doc's own example, `not` follows it.
    let template = |op: &str| {
        format!(
            "Operator '{op}' is not supported because the required parameters might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to https://aka.ms/graph-docs/advanced-queries for more information"
        )
    };
    conds.iter().find_map(|c| match c {
        Cond::Ne(..) => Some("Filter operator 'NotEqualsMatch' is not supported.".to_string()),
        Cond::Not(_) => Some(template("not")),
        Cond::EndsWith(..) => Some(template("endsWith")),
        _ => None,
    })
}

/// Whether the request sent `ConsistencyLevel: eventual`.
fn eventual(c: &Ctx<'_>) -> bool {
    c.headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}

/// Checks the advanced-query rules for a list of `entity_set`; `Ok(true)` when the answer
/// carries `@odata.count`, `Err` with Graph's refusal.
pub(super) fn gate(c: &Ctx<'_>, entity_set: &str) -> Result<bool, Response> {
    let eventual = eventual(c);
    let q = &c.query;
    let refuse = |code: &str, message: &str| Err(c.err(StatusCode::BAD_REQUEST, code, message));
    if q.search.is_some() && !eventual {
        return refuse(
            "Request_UnsupportedQuery",
            "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
        );
    }
    if NOT_DIRECTORY.iter().any(|p| entity_set.starts_with(p)) {
        if q.count && !eventual {
            return refuse(
                "Request_BadRequest",
                "$count is only supported with the ConsistencyLevel header set to eventual.",
            );
        }
        return Ok(q.count);
    }
    let advanced = eventual && q.count;
    if !advanced && let Some(message) = advanced_operator(&q.filter) {
        return refuse("Request_UnsupportedQuery", &message);
    }
    if let Some((prop, _)) = &q.order_by {
        let by_default = DEFAULT_SORT
            .iter()
            .find(|(set, _)| *set == entity_set)
            .is_some_and(|(_, props)| props.iter().any(|p| p.eq_ignore_ascii_case(prop)));
        if !advanced && (!q.filter.is_empty() || !by_default) {
            return refuse(
                "Request_UnsupportedQuery",
                "Sorting not supported for current query.",
            );
        }
    }
    // Without the header Graph silently ignores `$count=true` on directory objects.
    Ok(q.count && eventual)
}
