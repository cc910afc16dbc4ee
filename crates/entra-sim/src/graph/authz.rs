//! Entra's authorization model for the calls the emulator serves: a delegated call needs a
//! suitable permission in `scp` AND a directory role (or ownership) of the signed-in user; an
//! app-only call needs a suitable permission in `roles`.

use axum::response::Response;

use super::{Caller, Ctx};
use crate::model::Directory;
use crate::seed::{
    APP_ADMIN, APP_DEVELOPER, CLOUD_APP_ADMIN, DIRECTORY_READERS, GLOBAL_ADMIN, GLOBAL_READER,
    PRIV_ROLE_ADMIN,
};

/// What one kind of operation requires.
pub struct Need {
    /// Any one of these delegated permissions.
    pub delegated: &'static [&'static str],
    /// Any one of these application permissions.
    pub app: &'static [&'static str],
    /// For delegated calls, any one of these directory roles (`None`: no role needed).
    pub roles: Option<&'static [&'static str]>,
    /// Application permissions that suffice only when the calling service principal owns the
    /// object (`Application.ReadWrite.OwnedBy`: "manage apps this app owns").
    pub app_owned: &'static [&'static str],
}

/// The permission that lets an app manage only the applications it owns.
pub const OWNED_BY: &[&str] = &["Application.ReadWrite.OwnedBy"];

/// Reading the signed-in user and its memberships.
pub const ME: Need = Need {
    delegated: &[
        "User.Read",
        "User.ReadWrite",
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ],
    app: &[],
    roles: None,
    app_owned: &[],
};

/// Reading users.
pub const READ_USERS: Need = Need {
    delegated: &[
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ],
    app: &[
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ],
    roles: None,
    app_owned: &[],
};

/// Reading the organization.
pub const READ_ORG: Need = Need {
    delegated: &[
        "User.Read",
        "Organization.Read.All",
        "Organization.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ],
    app: &[
        "Organization.Read.All",
        "Organization.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ],
    roles: None,
    app_owned: &[],
};

/// Reading applications and service principals (Application.ReadWrite.OwnedBy is not enough: 403).
pub const READ_APPS: Need = Need {
    delegated: &[
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ],
    app: &[
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ],
    roles: None,
    app_owned: OWNED_BY,
};

/// Creating and changing applications, service principals and secrets.
pub const WRITE_APPS: Need = Need {
    delegated: &["Application.ReadWrite.All", "Directory.AccessAsUser.All"],
    app: &["Application.ReadWrite.All"],
    roles: Some(&[GLOBAL_ADMIN, APP_ADMIN, CLOUD_APP_ADMIN]),
    app_owned: OWNED_BY,
};

/// Granting app roles of Microsoft Graph: Privileged Role Administrator is the least role.
pub const ASSIGN_GRAPH_ROLES: Need = Need {
    delegated: &[
        "AppRoleAssignment.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ],
    app: &["AppRoleAssignment.ReadWrite.All"],
    roles: Some(&[GLOBAL_ADMIN, PRIV_ROLE_ADMIN]),
    app_owned: &[],
};

/// Granting app roles of other APIs: the same permissions, and application administrators
/// may too.
pub const ASSIGN_OTHER_ROLES: Need = Need {
    roles: Some(&[GLOBAL_ADMIN, PRIV_ROLE_ADMIN, APP_ADMIN, CLOUD_APP_ADMIN]),
    ..ASSIGN_GRAPH_ROLES
};

/// The second permission `POST …/appRoleAssignedTo` (and `…/appRoleAssignments`) needs next
/// to AppRoleAssignment.ReadWrite.All, delegated and application alike: "AppRoleAssignment.
/// ReadWrite.All and Application.Read.All", or "… and Directory.Read.All"
/// (serviceprincipal-post-approleassignedto).
pub const ASSIGN_ROLES_ALSO: &[&str] = &["Application.Read.All", "Directory.Read.All"];

/// The read permission `POST /applications/{id}/owners/$ref` needs next to the one that may
/// write the application (application-post-owners: delegated "Application.ReadWrite.All and
/// Directory.Read.All", higher "Directory.ReadWrite.All"; application "Application.ReadWrite.
/// OwnedBy and Directory.Read.All"): an owner is a directory object the caller must read.
pub const ADD_OWNER_ALSO: &[&str] = &[
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "Directory.AccessAsUser.All",
];

/// Reading directory role definitions and assignments.
pub const READ_ROLES: Need = Need {
    delegated: &[
        "RoleManagement.Read.Directory",
        "RoleManagement.ReadWrite.Directory",
        "RoleManagement.Read.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ],
    app: &[
        "RoleManagement.Read.Directory",
        "RoleManagement.ReadWrite.Directory",
        "RoleManagement.Read.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ],
    roles: None,
    app_owned: &[],
};

/// Listing directory role assignments (`GET /roleManagement/directory/roleAssignments`): the
/// permissions of [`READ_ROLES`], and for a signed-in user one of the roles Learn names as the
/// least privileged supported (rbacapplication-list-roleassignments: Directory Readers, Global
/// Reader, Privileged Role Administrator) or one above them. An Application Administrator
/// holds none: 403.
pub const READ_ROLE_ASSIGNMENTS: Need = Need {
    roles: Some(&[
        GLOBAL_ADMIN,
        PRIV_ROLE_ADMIN,
        GLOBAL_READER,
        DIRECTORY_READERS,
    ]),
    ..READ_ROLES
};

/// Permissions that let a caller read `directoryRole` objects (directoryrole-list-members).
/// Without one, directory roles in a `directoryObject` collection such as
/// `/me/transitiveMemberOf` come back with only `@odata.type` and `id` (the other properties
/// null), as Graph's "limited information for inaccessible member objects" rule says.
pub const READ_DIRECTORY_ROLE_OBJECTS: &[&str] = &[
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

/// Permissions that let a caller read `group` objects; without one, groups in a
/// `directoryObject` collection come back with only `@odata.type` and `id`.
pub const READ_GROUP_OBJECTS: &[&str] = &[
    "GroupMember.Read.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

/// Whether the caller holds one of `perms` (delegated in `scp`, or application in `roles`).
pub fn caller_holds_any(c: &Ctx<'_>, perms: &[&str]) -> bool {
    match &c.caller {
        Caller::App { roles, .. } => has_any(roles, perms),
        Caller::User { scopes, .. } => has_any(scopes, perms),
    }
}

/// Assigning directory roles: Privileged Role Administrator is the least role.
pub const WRITE_ROLES: Need = Need {
    delegated: &[
        "RoleManagement.ReadWrite.Directory",
        "Directory.AccessAsUser.All",
    ],
    app: &["RoleManagement.ReadWrite.Directory"],
    roles: Some(&[GLOBAL_ADMIN, PRIV_ROLE_ADMIN]),
    app_owned: &[],
};

/// Reading delegated permission grants.
pub const READ_GRANTS: Need = Need {
    delegated: &[
        "DelegatedPermissionGrant.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
        "Application.Read.All",
        "Application.ReadWrite.All",
    ],
    app: &[
        "DelegatedPermissionGrant.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Application.Read.All",
        "Application.ReadWrite.All",
    ],
    roles: None,
    app_owned: &[],
};

/// Creating, changing and deleting delegated permission grants.
pub const WRITE_GRANTS: Need = Need {
    delegated: &[
        "DelegatedPermissionGrant.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ],
    app: &["DelegatedPermissionGrant.ReadWrite.All"],
    roles: Some(&[GLOBAL_ADMIN, PRIV_ROLE_ADMIN, APP_ADMIN, CLOUD_APP_ADMIN]),
    app_owned: &[],
};

fn has_any(held: &[String], wanted: &[&str]) -> bool {
    held.iter()
        .any(|h| wanted.iter().any(|w| w.eq_ignore_ascii_case(h)))
}

/// Checks `need` for the caller. `owner_of` lists the owners of the object touched: owners
/// pass the role check, as in Entra.
pub fn require(
    c: &Ctx<'_>,
    dir: &Directory,
    need: &Need,
    owners: &[String],
) -> Result<(), Response> {
    let ok = match &c.caller {
        Caller::App { roles, sp_id } => {
            has_any(roles, need.app) || (owners.contains(sp_id) && has_any(roles, need.app_owned))
        }
        Caller::User { id, scopes } => {
            has_any(scopes, need.delegated)
                && match need.roles {
                    None => true,
                    Some(wanted) => owners.contains(id) || has_any(&dir.roles_of(id), wanted),
                }
        }
    };
    if ok { Ok(()) } else { Err(c.denied()) }
}

/// Checks the right to create an application: the write permission plus, for users, an
/// application admin role, Application Developer, or a tenant that lets users register apps.
pub fn require_create_app(c: &Ctx<'_>, dir: &Directory) -> Result<(), Response> {
    if let Caller::User { id, scopes } = &c.caller
        && has_any(scopes, WRITE_APPS.delegated)
        && (c.s.config.users_can_register_apps || has_any(&dir.roles_of(id), &[APP_DEVELOPER]))
    {
        return Ok(());
    }
    require(c, dir, &WRITE_APPS, &[])
}

/// The caller's object id (user or service principal), recorded as owner of what it creates.
pub fn caller_id(c: &Ctx<'_>) -> String {
    match &c.caller {
        Caller::User { id, .. } => id.clone(),
        Caller::App { sp_id, .. } => sp_id.clone(),
    }
}
