//! Permission profiles: which application permissions and directory roles a registration gets,
//! per profile name and platform version. The shipped defaults are `profiles/default.toml`,
//! embedded at build time; operators may load their own file with the same shape.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, FieldViolation};
use crate::roles;

/// The shipped profile file.
pub const DEFAULT_PROFILES_TOML: &str = include_str!("../profiles/default.toml");

/// A parsed, checked profile file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileSet {
    /// Content version of the file; recorded with each onboarding so a later change of the file
    /// is visible in the audit trail.
    pub version: u32,
    /// The profiles, by name.
    #[serde(rename = "profile")]
    pub profiles: Vec<ProfileDef>,
}

/// The Graph application permission that lets an app change the apps it owns (and only those).
pub const SELF_ROTATION_PERMISSION: &str = "Application.ReadWrite.OwnedBy";

/// One profile as written in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileDef {
    /// Lookup key (`direct-routing`, `qoe`).
    pub name: String,
    /// Human description for plans and UIs.
    #[serde(default)]
    pub description: String,
    /// Microsoft Graph application permissions (app role values).
    #[serde(default)]
    pub graph_permissions: Vec<String>,
    /// Skype and Teams Tenant Admin API application permissions (app role values; ids are read
    /// at runtime because the reference found no authoritative id).
    #[serde(default)]
    pub teams_admin_api_permissions: Vec<String>,
    /// Entra directory roles for the service principal, by display name.
    #[serde(default)]
    pub directory_roles: Vec<String>,
    /// Additions for older platform versions.
    #[serde(default)]
    pub before_version: Vec<VersionAddition>,
    /// The registration may rotate its own secrets: provisioning adds the Graph permission
    /// `Application.ReadWrite.OwnedBy` and makes the app's service principal an owner of the
    /// app, so day-two rotation needs no admin sign-in (at the price of a standing right to
    /// change this one app; see crates/credentials/README.md). Left out, it is on in profile
    /// files of version 3 on and off in older ones (release 0.1's files, version 2, meant
    /// off): [`ProfileSet::from_toml`] fills it in, so it is `Some` in every loaded set.
    #[serde(default)]
    pub self_rotation: Option<bool>,
}

impl ProfileDef {
    /// Whether the registration rotates its own secrets ([`ProfileDef::self_rotation`]).
    pub fn self_rotates(&self) -> bool {
        self.self_rotation.unwrap_or(true)
    }
}

/// The first profile file version in which a profile that leaves `self_rotation` out rotates
/// its own secrets.
const SELF_ROTATION_BY_DEFAULT_FROM: u32 = 3;

/// Permissions and roles that platform versions strictly before `version` also need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionAddition {
    /// Dotted numeric version, e.g. `8.0.517.221`.
    pub version: String,
    /// Extra Graph application permissions.
    #[serde(default)]
    pub graph_permissions: Vec<String>,
    /// Extra directory roles.
    #[serde(default)]
    pub directory_roles: Vec<String>,
}

/// Which resource offers a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Microsoft Graph (`00000003-0000-0000-c000-000000000000`).
    Graph,
    /// Skype and Teams Tenant Admin API (`48ac35b8-9aa8-4d74-927d-1f4a14a0b239`).
    TeamsAdminApi,
}

impl Resource {
    /// The resource's client id, used to find its service principal in the tenant.
    pub fn app_id(self) -> &'static str {
        match self {
            Resource::Graph => entra_client::MICROSOFT_GRAPH_APP_ID,
            Resource::TeamsAdminApi => entra_client::TEAMS_TENANT_ADMIN_API_APP_ID,
        }
    }

    /// Name for messages and audit targets.
    pub fn display_name(self) -> &'static str {
        match self {
            Resource::Graph => "Microsoft Graph",
            Resource::TeamsAdminApi => "Skype and Teams Tenant Admin API",
        }
    }

    /// The admin right needed to grant this resource's app roles.
    pub fn grant_right(self) -> roles::Right {
        match self {
            Resource::Graph => roles::Right::GrantGraphAppRoles,
            Resource::TeamsAdminApi => roles::Right::GrantOtherAppRoles,
        }
    }
}

/// A permission by name, before its id is read from the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct PermissionRef {
    /// Which API offers it.
    pub resource: Resource,
    /// App role value, e.g. `User.Read.All`.
    pub value: String,
}

/// A directory role resolved to its template id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct RoleRef {
    /// Display name (for plans, events and audit targets).
    pub name: String,
    /// Built-in template id, used directly as `roleDefinitionId`.
    pub template_id: String,
}

/// What one onboarding asks for: a profile applied to a platform version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedProfile {
    /// Profile name.
    pub name: String,
    /// Platform version it was resolved for (`None`: current).
    pub platform_version: Option<String>,
    /// File content version it came from.
    pub file_version: u32,
    /// Application permissions, deduplicated, in file order.
    pub permissions: Vec<PermissionRef>,
    /// Directory roles, deduplicated, in file order.
    pub directory_roles: Vec<RoleRef>,
    /// The app's service principal becomes an owner of the app (see [`ProfileDef`]).
    #[serde(default)]
    pub self_rotation: bool,
}

impl ResolvedProfile {
    /// What a registration made by hand must hold for this profile: the same without
    /// self-rotation's permission (self-rotation is how Onboard changes secrets, not what the
    /// service needs; an attached registration that rotates itself is detected instead).
    pub fn without_self_rotation(mut self) -> Self {
        self.permissions
            .retain(|p| !(p.resource == Resource::Graph && p.value == SELF_ROTATION_PERMISSION));
        self.self_rotation = false;
        self
    }

    /// The same with self-rotation: its permission added (once) and the switch on.
    pub fn with_self_rotation(mut self) -> Self {
        let p = PermissionRef {
            resource: Resource::Graph,
            value: SELF_ROTATION_PERMISSION.to_owned(),
        };
        if !self.permissions.contains(&p) {
            self.permissions.push(p);
        }
        self.self_rotation = true;
        self
    }
}

/// Compares dotted numeric versions part by part (`8.0.99` < `8.0.517.221`); missing parts count
/// as 0, so `8.0` == `8.0.0`.
pub fn compare_versions(a: &str, b: &str) -> Result<Ordering, CoreError> {
    let parse = |v: &str| -> Result<Vec<u64>, CoreError> {
        v.trim()
            .split('.')
            .map(|p| {
                p.parse::<u64>()
                    .map_err(|_| CoreError::Profile(format!("not a dotted numeric version: {v:?}")))
            })
            .collect()
    };
    let (x, y) = (parse(a)?, parse(b)?);
    let n = x.len().max(y.len());
    for i in 0..n {
        let (p, q) = (
            x.get(i).copied().unwrap_or(0),
            y.get(i).copied().unwrap_or(0),
        );
        match p.cmp(&q) {
            Ordering::Equal => continue,
            other => return Ok(other),
        }
    }
    Ok(Ordering::Equal)
}

impl ProfileSet {
    /// The shipped defaults.
    pub fn defaults() -> Result<Self, CoreError> {
        Self::from_toml(DEFAULT_PROFILES_TOML)
    }

    /// Parses and checks a profile file: role names must be known built-ins, versions numeric,
    /// profile names unique.
    pub fn from_toml(text: &str) -> Result<Self, CoreError> {
        let mut set: ProfileSet =
            toml::from_str(text).map_err(|e| CoreError::Profile(e.to_string()))?;
        let by_default = set.version >= SELF_ROTATION_BY_DEFAULT_FROM;
        for p in &mut set.profiles {
            p.self_rotation.get_or_insert(by_default);
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &set.profiles {
            if !seen.insert(p.name.as_str()) {
                return Err(CoreError::Profile(format!(
                    "profile {:?} is defined twice",
                    p.name
                )));
            }
            let extra_roles = p
                .before_version
                .iter()
                .flat_map(|b| b.directory_roles.iter());
            for r in p.directory_roles.iter().chain(extra_roles) {
                if roles::template_id(r).is_none() {
                    return Err(CoreError::Profile(format!(
                        "profile {:?}: unknown directory role {r:?}",
                        p.name
                    )));
                }
            }
            for b in &p.before_version {
                compare_versions(&b.version, "0")?;
            }
        }
        Ok(set)
    }

    /// Names of the profiles.
    pub fn names(&self) -> Vec<&str> {
        self.profiles.iter().map(|p| p.name.as_str()).collect()
    }

    /// The version half of [`Self::resolve_requested`], for a request whose profile is already
    /// refused: a non-empty `platform_version` must be dotted numeric whatever the profile, so
    /// both violations are reported at once.
    pub fn check_platform_version(platform_version: &str) -> Result<(), FieldViolation> {
        if platform_version.is_empty() {
            return Ok(());
        }
        compare_versions(platform_version, "0")
            .map(|_| ())
            .map_err(|e| FieldViolation::new("platform_version", e.to_string()))
    }

    /// Resolves a request's `profile` and `platform_version` (empty: the current platform): the
    /// one rule of every RPC that takes the two. A non-empty version must be a dotted numeric
    /// one whatever the profile (not only when the profile has older-version additions), and a
    /// refusal names the field at fault: `profile` for an unknown name, else `platform_version`.
    pub fn resolve_requested(
        &self,
        name: &str,
        platform_version: &str,
    ) -> Result<ResolvedProfile, FieldViolation> {
        let names = self.names();
        let known = names.join(", ");
        if !names.contains(&name) {
            return Err(FieldViolation::new(
                "profile",
                format!("no profile named {name:?} (profiles: {known})"),
            ));
        }
        let on_version = |e: &dyn std::fmt::Display| {
            FieldViolation::new("platform_version", format!("{e} (profiles: {known})"))
        };
        Self::check_platform_version(platform_version).map_err(|v| on_version(&v.description))?;
        let version = (!platform_version.is_empty()).then_some(platform_version);
        self.resolve(name, version).map_err(|e| on_version(&e))
    }

    /// The permissions and roles profile `name` needs for `platform_version` (`None`: the
    /// current platform, so no older-version additions).
    pub fn resolve(
        &self,
        name: &str,
        platform_version: Option<&str>,
    ) -> Result<ResolvedProfile, CoreError> {
        let def = self
            .profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| CoreError::Profile(format!("no profile named {name:?}")))?;
        let mut graph = def.graph_permissions.clone();
        if def.self_rotates() {
            graph.push(SELF_ROTATION_PERMISSION.to_owned());
        }
        let mut role_names = def.directory_roles.clone();
        if let Some(v) = platform_version {
            for add in &def.before_version {
                if compare_versions(v, &add.version)? == Ordering::Less {
                    graph.extend(add.graph_permissions.iter().cloned());
                    role_names.extend(add.directory_roles.iter().cloned());
                }
            }
        }
        let mut permissions: Vec<PermissionRef> = Vec::new();
        let all = graph.into_iter().map(|v| (Resource::Graph, v)).chain(
            def.teams_admin_api_permissions
                .iter()
                .cloned()
                .map(|v| (Resource::TeamsAdminApi, v)),
        );
        for (resource, value) in all {
            let p = PermissionRef { resource, value };
            if !permissions.contains(&p) {
                permissions.push(p);
            }
        }
        let mut directory_roles: Vec<RoleRef> = Vec::new();
        for n in role_names {
            let template_id = roles::template_id(&n)
                .ok_or_else(|| CoreError::Profile(format!("unknown directory role {n:?}")))?;
            if !directory_roles.iter().any(|r| r.template_id == template_id) {
                directory_roles.push(RoleRef {
                    name: n,
                    template_id: template_id.to_owned(),
                });
            }
        }
        Ok(ResolvedProfile {
            name: def.name.clone(),
            platform_version: platform_version.map(str::to_owned),
            file_version: self.version,
            permissions,
            directory_roles,
            self_rotation: def.self_rotates(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_values(p: &ResolvedProfile) -> Vec<&str> {
        p.permissions
            .iter()
            .filter(|x| x.resource == Resource::Graph)
            .map(|x| x.value.as_str())
            .collect()
    }

    #[test]
    fn versions_compare_numerically() {
        // Read each row as `a <want> b`.
        for (a, want, b) in [
            ("8.0.99", Ordering::Less, "8.0.517.221"),
            ("8.0.1000", Ordering::Greater, "8.0.517.221"),
            ("8.0.517.221", Ordering::Equal, "8.0.517.221"),
            ("8.0.517.9", Ordering::Less, "8.0.517.221"),
            ("8.0", Ordering::Equal, "8.0.0.0"),
            ("10", Ordering::Greater, "9.9"),
        ] {
            assert_eq!(compare_versions(a, b).ok(), Some(want), "{a} vs {b}");
        }
        assert!(compare_versions("8.x", "8").is_err());
    }

    /// A profile file written for release 0.1 (version 2) keeps its meaning: a profile that
    /// leaves `self_rotation` out does not rotate its own secrets (it became the default only
    /// in version 3); one that says `self_rotation = true` does.
    #[test]
    fn a_release_0_1_profile_file_keeps_its_meaning() {
        let set =
            ProfileSet::from_toml(include_str!("../../../testdata/release-0.1/profiles.toml"))
                .expect("0.1's file parses");
        assert_eq!(set.version, 2);
        let plain = set.resolve("direct-routing", None).expect("exists");
        assert!(!plain.self_rotation);
        assert_eq!(
            graph_values(&plain),
            ["Organization.Read.All", "User.Read.All"]
        );
        let own = set
            .resolve("direct-routing-self-rotating", None)
            .expect("exists");
        assert!(own.self_rotation);
        // The same profile with the key left out in a version 3 file rotates its own secrets.
        let v3 = ProfileSet::from_toml(
            "version = 3\n[[profile]]\nname = \"p\"\ngraph_permissions = [\"User.Read.All\"]\n",
        )
        .expect("parses");
        assert!(v3.resolve("p", None).expect("exists").self_rotation);
    }

    #[test]
    fn shipped_direct_routing_profile() {
        let set = ProfileSet::defaults().expect("shipped file parses");
        assert_eq!(set.version, 3);
        // Self-rotation is the default; the least-privilege profile turns it off.
        let own = set.resolve("direct-routing", None).expect("exists");
        assert!(own.self_rotation);
        let current = set
            .resolve("direct-routing-least-privilege", None)
            .expect("exists");
        assert!(!current.self_rotation);
        let old_name = set
            .resolve("direct-routing-self-rotating", None)
            .expect("exists");
        assert_eq!(old_name.permissions, own.permissions);
        assert_eq!(
            graph_values(&own),
            [
                "Organization.Read.All",
                "User.Read.All",
                "Application.ReadWrite.OwnedBy"
            ]
        );
        assert_eq!(own.directory_roles, current.directory_roles);
        assert_eq!(
            graph_values(&current),
            ["Organization.Read.All", "User.Read.All"]
        );
        assert!(current.permissions.contains(&PermissionRef {
            resource: Resource::TeamsAdminApi,
            value: "application_access".into()
        }));
        assert_eq!(current.directory_roles.len(), 1);
        assert_eq!(
            current.directory_roles[0].template_id,
            "69091246-20e8-4a56-aa4d-066075b2a7a8"
        );

        let same = set
            .resolve("direct-routing-least-privilege", Some("8.0.517.221"))
            .expect("exists");
        assert_eq!(same.permissions, current.permissions);
        let newer = set
            .resolve("direct-routing-least-privilege", Some("8.2.0.1"))
            .expect("exists");
        assert_eq!(newer.permissions, current.permissions);
    }

    #[test]
    fn older_versions_add_group_and_role_management_read() {
        let set = ProfileSet::defaults().expect("shipped file parses");
        for v in ["8.0.517.220", "8.0.99", "7.4", "8.0.516.999"] {
            let old = set
                .resolve("direct-routing-least-privilege", Some(v))
                .expect("exists");
            assert_eq!(
                graph_values(&old),
                [
                    "Organization.Read.All",
                    "User.Read.All",
                    "Group.Read.All",
                    "RoleManagement.Read.Directory"
                ],
                "{v}"
            );
        }
        assert!(set.resolve("direct-routing", Some("eight")).is_err());
    }

    #[test]
    fn a_requested_version_is_checked_whatever_the_profile() {
        let set = ProfileSet::defaults().expect("shipped file parses");
        let field = |name: &str, v: &str| set.resolve_requested(name, v).err().map(|e| e.field);
        // `qoe` has no older-version additions: "abc" is still no version.
        for name in ["qoe", "direct-routing"] {
            assert_eq!(field(name, "abc").as_deref(), Some("platform_version"));
            assert_eq!(field(name, "8.0.1"), None);
            assert_eq!(field(name, ""), None);
        }
        assert_eq!(field("nope", "abc").as_deref(), Some("profile"));
    }

    #[test]
    fn qoe_profile_is_call_records_only() {
        let set = ProfileSet::defaults().expect("shipped file parses");
        let q = set.resolve("qoe", None).expect("exists");
        assert_eq!(
            graph_values(&q),
            ["CallRecords.Read.All", "CallRecord-PstnCalls.Read.All"]
        );
        assert!(q.directory_roles.is_empty());
        assert!(set.resolve("nope", None).is_err());
    }

    #[test]
    fn bad_files_are_refused() {
        let unknown_role = r#"
            version = 1
            [[profile]]
            name = "x"
            directory_roles = ["Emperor"]
        "#;
        assert!(ProfileSet::from_toml(unknown_role).is_err());
        let twice = r#"
            version = 1
            [[profile]]
            name = "x"
            [[profile]]
            name = "x"
        "#;
        assert!(ProfileSet::from_toml(twice).is_err());
        assert!(ProfileSet::from_toml("version = ").is_err());
    }
}
