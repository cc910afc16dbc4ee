//! What an UpdateRoles or UpdatePermissions request names, read before anything changes: each
//! list parsed, repeats folded, a name in both lists refused, and what the profile requires
//! kept unless overridden.

use onboard_core::profiles::{PermissionRef, Resource};
use onboard_core::roles;

use super::UpdateRequest;
use crate::error::CredentialsError;
use crate::model::Registration;

/// The request's `add` and `remove` lists, each item parsed with `parse` (given the field it is
/// in). `key` says what an item stands for (a role's template id, a permission), so that a
/// repeat within one list counts once, and an item in both lists is INVALID_ARGUMENT on
/// `remove` before anything changes: which of the two is meant only the caller knows.
pub(super) fn parse_lists<T, K: PartialEq>(
    req: &UpdateRequest,
    parse: impl Fn(&str, &'static str) -> Result<T, CredentialsError>,
    key: impl Fn(&T) -> K,
) -> Result<(Vec<T>, Vec<T>), CredentialsError> {
    let list = |items: &[String], field| -> Result<Vec<(String, T)>, CredentialsError> {
        let mut out: Vec<(String, T)> = Vec::new();
        for s in items {
            let t = parse(s, field)?;
            if !out.iter().any(|(_, o)| key(o) == key(&t)) {
                out.push((s.clone(), t));
            }
        }
        Ok(out)
    };
    let add = list(&req.add, "add")?;
    let remove = list(&req.remove, "remove")?;
    if let Some((s, _)) = remove
        .iter()
        .find(|(_, r)| add.iter().any(|(_, a)| key(a) == key(r)))
    {
        return Err(CredentialsError::InvalidArgument {
            field: "remove",
            reason: format!("{s:?} is in `add` too; name it in one list"),
        });
    }
    let items = |l: Vec<(String, T)>| l.into_iter().map(|(_, t)| t).collect();
    Ok((items(add), items(remove)))
}

/// Refuses removing what the registration's profile requires (`required`) unless the request
/// overrides it.
pub(super) fn check_required(
    reg: &Registration,
    required: &[String],
    req: &UpdateRequest,
) -> Result<(), CredentialsError> {
    if !required.is_empty() && !req.override_required {
        return Err(CredentialsError::RequiredByProfile {
            profile: reg.profile.name.clone(),
            what: required.to_vec(),
        });
    }
    Ok(())
}

/// Parses `User.Read.All` (Graph) or `<resource name or app id>/<value>`.
/// `field` is the request list it came from (`add`, `remove`), for the field violation.
pub(super) fn parse_permission(
    s: &str,
    field: &'static str,
) -> Result<PermissionRef, CredentialsError> {
    let bad = |reason: &str| CredentialsError::InvalidArgument {
        field,
        reason: format!("{s:?}: {reason}"),
    };
    let (resource, value) = match s.split_once('/') {
        None => (Resource::Graph, s),
        Some((r, v)) => {
            let r = [Resource::Graph, Resource::TeamsAdminApi]
                .into_iter()
                .find(|x| x.display_name().eq_ignore_ascii_case(r) || x.app_id() == r)
                .ok_or_else(|| bad("unknown resource"))?;
            (r, v)
        }
    };
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("not a permission value"));
    }
    Ok(PermissionRef {
        resource,
        value: value.to_owned(),
    })
}

/// A permission the tenant's resource does not offer was misnamed by the request:
/// INVALID_ARGUMENT on the list that named it (`add`, else `remove`), as a misnamed role is.
/// Other failures keep their meaning (a resource missing from the tenant is the tenant's state).
pub(super) fn named_in_request(
    e: onboard_core::CoreError,
    add: &[PermissionRef],
) -> CredentialsError {
    match e {
        onboard_core::CoreError::UnknownPermission {
            ref resource,
            ref permission,
        } => {
            let added = add
                .iter()
                .any(|p| &p.value == permission && p.resource.display_name() == resource);
            CredentialsError::InvalidArgument {
                field: if added { "add" } else { "remove" },
                reason: e.to_string(),
            }
        }
        other => other.into(),
    }
}

/// A role by display name or template id → (display name, template id).
pub(super) fn parse_role(
    s: &str,
    field: &'static str,
) -> Result<(String, String), CredentialsError> {
    if let Some(id) = roles::template_id(s) {
        return Ok((roles::role_name(id).unwrap_or(s).to_owned(), id.to_owned()));
    }
    if let Some(name) = roles::role_name(s) {
        return Ok((name.to_owned(), s.to_ascii_lowercase()));
    }
    Err(CredentialsError::InvalidArgument {
        field,
        reason: format!("{s:?} is not a known built-in directory role"),
    })
}
