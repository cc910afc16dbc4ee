//! Directory roles by name and template id (entra-reference.md §3.3), and the rights model:
//! which admin roles allow which kind of Entra change (§3.1).

use serde::{Deserialize, Serialize};

/// Built-in directory roles: (display name, template id). Template ids are the same in every
/// tenant and usable directly as `roleDefinitionId`.
pub const ROLE_TEMPLATES: &[(&str, &str)] = &[
    (
        "Global Administrator",
        "62e90394-69f5-4237-9190-012177145e10",
    ),
    (
        "Application Administrator",
        "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
    ),
    (
        "Cloud Application Administrator",
        "158c047a-c907-4556-b7ef-446551a6b5f7",
    ),
    (
        "Application Developer",
        "cf1c38e5-3621-4004-a7cb-879624dced7c",
    ),
    (
        "Privileged Role Administrator",
        "e8611ab8-c189-46e8-94e1-60213ab1f814",
    ),
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    (
        "Domain Name Administrator",
        "8329153b-31d0-4727-b945-745eb3bc5f31",
    ),
    (
        "Teams Administrator",
        "69091246-20e8-4a56-aa4d-066075b2a7a8",
    ),
    (
        "Teams Communications Administrator",
        "baf37b3a-610e-45da-9e62-d9d1e5e8914b",
    ),
    (
        "Teams Telephony Administrator",
        "aa38014f-0993-46e9-9b45-30501a20909d",
    ),
    (
        "Teams Communications Support Engineer",
        "f70938a0-fc10-4177-9e90-2178f8765737",
    ),
    (
        "Teams Communications Support Specialist",
        "fcf91098-03e3-41a9-b5ba-6f0ec8188a12",
    ),
    (
        "Skype for Business Administrator",
        "75941009-915a-4869-abe7-691bff18279e",
    ),
    ("Directory Readers", "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"),
    ("Global Reader", "f2ef992c-3afb-46b9-b7cf-a126ee74c451"),
];

/// Global Administrator's template id.
pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
/// Application Administrator's template id.
pub const APPLICATION_ADMINISTRATOR: &str = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3";
/// Cloud Application Administrator's template id.
pub const CLOUD_APPLICATION_ADMINISTRATOR: &str = "158c047a-c907-4556-b7ef-446551a6b5f7";
/// Privileged Role Administrator's template id.
pub const PRIVILEGED_ROLE_ADMINISTRATOR: &str = "e8611ab8-c189-46e8-94e1-60213ab1f814";

/// Template id of a built-in role by display name (case-insensitive).
pub fn template_id(name: &str) -> Option<&'static str> {
    crate::table::id_of(ROLE_TEMPLATES, name)
}

/// Display name of a built-in role by template id.
pub fn role_name(template_id: &str) -> Option<&'static str> {
    crate::table::name_of(ROLE_TEMPLATES, template_id)
}

/// What kind of right an Entra change needs from the signed-in admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// Create/update/delete applications, service principals and secrets (§3.1: Application
    /// Administrator, Cloud Application Administrator, or Global Administrator).
    ManageApplications,
    /// Grant Microsoft Graph app roles (admin consent to application permissions): Privileged
    /// Role Administrator or Global Administrator (App/Cloud App Admin may not, §3.1).
    GrantGraphAppRoles,
    /// Grant app roles of other APIs (e.g. the Teams Tenant Admin API): application
    /// administrators may too.
    GrantOtherAppRoles,
    /// Assign Entra directory roles: Privileged Role Administrator or Global Administrator.
    AssignDirectoryRoles,
}

impl Right {
    /// Role template ids any one of which grants this right.
    pub fn granted_by(self) -> &'static [&'static str] {
        match self {
            Right::ManageApplications => &[
                GLOBAL_ADMINISTRATOR,
                APPLICATION_ADMINISTRATOR,
                CLOUD_APPLICATION_ADMINISTRATOR,
            ],
            Right::GrantGraphAppRoles | Right::AssignDirectoryRoles => {
                &[GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR]
            }
            Right::GrantOtherAppRoles => &[
                GLOBAL_ADMINISTRATOR,
                PRIVILEGED_ROLE_ADMINISTRATOR,
                APPLICATION_ADMINISTRATOR,
                CLOUD_APPLICATION_ADMINISTRATOR,
            ],
        }
    }

    /// Whether an admin holding these role template ids has the right.
    pub fn held_by(self, roles: &[String]) -> bool {
        self.granted_by()
            .iter()
            .any(|w| roles.iter().any(|r| r.eq_ignore_ascii_case(w)))
    }

    /// Human text: what the right is for and which roles grant it.
    pub fn describe(self) -> String {
        let what = match self {
            Right::ManageApplications => {
                "creating the app registration, service principal and secret"
            }
            Right::GrantGraphAppRoles => {
                "granting Microsoft Graph application permissions (admin consent)"
            }
            Right::GrantOtherAppRoles => "granting application permissions of other APIs",
            Right::AssignDirectoryRoles => "assigning Entra directory roles",
        };
        let who: Vec<&str> = self
            .granted_by()
            .iter()
            .filter_map(|id| role_name(id))
            .collect();
        format!("{what} needs one of: {}", who.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_round_trip() {
        assert_eq!(
            template_id("teams administrator"),
            Some("69091246-20e8-4a56-aa4d-066075b2a7a8")
        );
        assert_eq!(
            role_name(PRIVILEGED_ROLE_ADMINISTRATOR),
            Some("Privileged Role Administrator")
        );
        assert_eq!(template_id("Emperor"), None);
    }

    #[test]
    fn app_admin_cannot_consent_graph_roles_or_assign_roles() {
        let app_admin = vec![APPLICATION_ADMINISTRATOR.to_string()];
        assert!(Right::ManageApplications.held_by(&app_admin));
        assert!(Right::GrantOtherAppRoles.held_by(&app_admin));
        assert!(!Right::GrantGraphAppRoles.held_by(&app_admin));
        assert!(!Right::AssignDirectoryRoles.held_by(&app_admin));
        let pra = vec![PRIVILEGED_ROLE_ADMINISTRATOR.to_string()];
        assert!(!Right::ManageApplications.held_by(&pra));
        assert!(Right::AssignDirectoryRoles.held_by(&pra));
        let ga = vec![GLOBAL_ADMINISTRATOR.to_uppercase()];
        assert!(Right::GrantGraphAppRoles.held_by(&ga));
        assert!(
            Right::describe(Right::AssignDirectoryRoles).contains("Privileged Role Administrator")
        );
    }
}
