//! `$filter` literals against the property's EDM type, as Graph's OData parser checks them:
//! `Edm.String` properties (`displayName`, `appId`, `id`, …) take single-quoted literals only,
//! `Edm.Guid` ones (`appOwnerOrganizationId`) an unquoted GUID, `Edm.Boolean` ones `true` /
//! `false`. Anything else is 400 `BadRequest` "Invalid filter clause: …" (docs/microsoft.md §23).

use axum::http::StatusCode;
use axum::response::Response;

use super::Ctx;
use super::odata::{Cond, Lit};

/// Properties of the filterable Graph types that are not `Edm.String` (nor a collection of it),
/// from Graph's v1.0 OpenAPI (`tests/data/graph-v1.0`).
const TYPED: &[(&str, &str, &str)] = &[
    ("servicePrincipal", "appOwnerOrganizationId", "Edm.Guid"),
    ("servicePrincipal", "accountEnabled", "Edm.Boolean"),
    ("unifiedRoleDefinition", "isBuiltIn", "Edm.Boolean"),
    ("application", "createdDateTime", "Edm.DateTimeOffset"),
];

/// The EDM type of `resource`'s property `prop` (of its items, for a collection).
fn edm_type(resource: &str, prop: &str) -> &'static str {
    TYPED
        .iter()
        .find(|(r, p, _)| *r == resource && p.eq_ignore_ascii_case(prop))
        .map_or("Edm.String", |(_, _, t)| t)
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    parts.len() == lens.len()
        && parts
            .iter()
            .zip(lens)
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What OData makes of an unquoted token: `Ok(type)` for a literal of another type, `Err` with
/// the parser's complaint otherwise (a bare word is read as a property path).
fn raw_type(resource: &str, raw: &str) -> Result<&'static str, String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let date = raw.get(..4).is_some_and(digits)
        && raw.as_bytes().get(4) == Some(&b'-')
        && raw.get(..10).is_some();
    if is_guid(raw) {
        Ok("Edm.Guid")
    } else if date && raw.len() > 10 {
        Ok("Edm.DateTimeOffset")
    } else if date {
        Ok("Edm.Date")
    } else if digits(raw.strip_prefix('-').unwrap_or(raw)) {
        Ok(if raw.parse::<i32>().is_ok() {
            "Edm.Int32"
        } else {
            "Edm.Int64"
        })
    } else if raw.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Err(format!(
            "Could not find a property named '{raw}' on type 'microsoft.graph.{resource}'."
        ))
    } else {
        Err(format!("Syntax error in '{raw}'."))
    }
}

/// The type of literal `l` as OData reads it; `None` for `null`, which every nullable
/// property takes.
fn lit_type(resource: &str, l: &Lit) -> Result<Option<&'static str>, String> {
    Ok(match l {
        Lit::Str(_) => Some("Edm.String"),
        Lit::Bool(_) => Some("Edm.Boolean"),
        Lit::Null => None,
        Lit::Raw(r) => Some(raw_type(resource, r)?),
    })
}

/// The first literal of `cond` that does not fit its property, as Graph's message.
fn misfit(resource: &str, cond: &Cond) -> Option<String> {
    let (kind, lits): (&str, Vec<&Lit>) = match cond {
        Cond::Eq(_, l) | Cond::AnyEq(_, l) => ("Equal", vec![l]),
        Cond::Ne(_, l) => ("NotEqual", vec![l]),
        Cond::In(_, ls) => ("In", ls.iter().collect()),
        Cond::Not(inner) => return misfit(resource, inner),
        Cond::StartsWith(..) | Cond::EndsWith(..) => return None,
    };
    let want = edm_type(resource, cond.prop());
    lits.into_iter().find_map(|l| match lit_type(resource, l) {
        Err(e) => Some(e),
        Ok(Some(got)) if got != want => Some(format!(
            "A binary operator with incompatible types was detected. Found operand types '{want}' and '{got}' for operator kind '{kind}'."
        )),
        Ok(_) => None,
    })
}

/// 400 `BadRequest` "Invalid filter clause: …" for the first literal of `conds` whose type
/// does not match its property on Graph type `resource`.
pub(super) fn check(c: &Ctx<'_>, resource: &str, conds: &[Cond]) -> Result<(), Response> {
    match conds.iter().find_map(|cond| misfit(resource, cond)) {
        Some(why) => Err(c.err(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Invalid filter clause: {why}"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::odata::parse_filter;

    fn first_misfit(resource: &str, filter: &str) -> Option<String> {
        let conds = parse_filter(filter).unwrap();
        conds.iter().find_map(|c| misfit(resource, c))
    }

    #[test]
    fn strings_need_quotes_guids_and_booleans_do_not() {
        let app = "application";
        assert_eq!(first_misfit(app, "displayName eq 'x'"), None);
        assert_eq!(first_misfit(app, "displayName eq null"), None);
        let guid = "0d8f4c1e-1111-2222-3333-444455556666";
        let m = first_misfit(app, &format!("appId eq {guid}")).unwrap();
        assert!(m.contains("'Edm.String' and 'Edm.Guid'"), "{m}");
        let m = first_misfit(app, "displayName eq svc").unwrap();
        assert!(m.contains("property named 'svc'"), "{m}");
        let m = first_misfit(app, "displayName eq 5").unwrap();
        assert!(m.contains("'Edm.Int32'"), "{m}");
        let m = first_misfit(app, "identifierUris/any(x:x eq api)").unwrap();
        assert!(m.contains("property named 'api'"), "{m}");
        let m = first_misfit(app, &format!("id in ('a', {guid})")).unwrap();
        assert!(m.contains("'In'"), "{m}");
        let sp = "servicePrincipal";
        let f = format!("appOwnerOrganizationId eq {guid}");
        assert_eq!(first_misfit(sp, &f), None);
        let f = format!("appOwnerOrganizationId eq '{guid}'");
        let m = first_misfit(sp, &f).unwrap();
        assert!(m.contains("'Edm.Guid' and 'Edm.String'"), "{m}");
        assert_eq!(first_misfit(sp, "accountEnabled eq true"), None);
        assert!(first_misfit(sp, "accountEnabled eq 'true'").is_some());
        let m = first_misfit(app, "displayName eq 'a' and not(appId eq x-y)").unwrap();
        assert!(m.starts_with("Syntax error"), "{m}");
    }
}
