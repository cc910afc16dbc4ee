//! Microsoft Entra B2B collaboration users ("guests"), as Learn "B2B collaboration user
//! properties" and "Understand user tokens in Microsoft Entra B2B collaboration" describe them:
//! a user object in the resource tenant, with its own object id and `#EXT#` UPN, standing for a
//! member of another (home) tenant who signs in with their home account at the resource
//! tenant's authority. Who a sign-in at an authority becomes, and AADSTS50020 for an account of
//! another tenant that has no guest there.

use crate::model::{HomeAccount, User};
use crate::state::{Inner, Shared, new_guid, random_key};
use crate::tokens::v1_issuer;
use crate::{SimError, SimUser};

/// A guest's `userPrincipalName`: the home UPN with `@` replaced by `_`, then `#EXT#@` and the
/// resource tenant's initial domain (user-properties, "User principal name").
pub fn guest_upn(home_upn: &str, resource_domain: &str) -> String {
    format!("{}#EXT#@{resource_domain}", home_upn.replace('@', "_"))
}

/// AADSTS50020's text (Learn reference-error-codes, UserUnauthorized): `upn` of the home
/// tenant `home_tid` is not in tenant `tenant_name`, where it tried to use app `app_id`
/// (`app_name`).
pub fn external_user_text(
    upn: &str,
    home_tid: &str,
    tenant_name: &str,
    app_id: &str,
    app_name: &str,
) -> String {
    format!(
        "User account '{upn}' from identity provider '{}' does not exist in tenant '{tenant_name}' and cannot access the application '{app_id}'({app_name}) in that tenant. The account needs to be added as an external user in the tenant first. Sign out and sign in again with a different Azure Active Directory user account.",
        v1_issuer(home_tid)
    )
}

impl Shared {
    /// The user `upn` signing in through an authority for client `client_id`: at a specific
    /// tenant (`tenant`) the member with that UPN or the guest standing for it; at
    /// organizations/common (`None`) the member in its home tenant. Selects that tenant.
    /// An account of another tenant with no guest here is AADSTS50020; an account no tenant
    /// has, AADSTS50034.
    pub fn signing_in_user(
        &self,
        inner: &mut Inner,
        tenant: Option<&str>,
        upn: &str,
        client_id: &str,
    ) -> Result<User, SimError> {
        let unknown = || SimError::UnknownUser(upn.to_string());
        let Some(tenant) = tenant else {
            let home = inner.tenant_of_member(upn).ok_or_else(unknown)?;
            inner.select(&home);
            return inner.dir.member(upn).cloned().ok_or_else(unknown);
        };
        if !inner.select(tenant) {
            return Err(unknown());
        }
        if let Some(u) = inner.dir.account(upn) {
            return Ok(u.clone());
        }
        let home = inner.tenant_of_member(upn).ok_or_else(unknown)?;
        let tenant_name = inner.dir.tenant.display_name.clone();
        let (app_id, app_name) = match self.client_app(inner, client_id) {
            Some(app) => (app.app_id, app.display_name),
            None => (client_id.to_string(), String::new()),
        };
        let text = external_user_text(upn, &home, &tenant_name, &app_id, &app_name);
        Err(SimError::ExternalUserNotInTenant(text))
    }

    /// [`crate::Sim::add_guest`].
    pub fn add_guest(
        &self,
        home_upn: &str,
        resource_tenant: &str,
        roles: &[&str],
    ) -> Result<SimUser, SimError> {
        let mut inner = self.lock();
        let unknown = || SimError::UnknownUser(home_upn.to_string());
        let home_tid = inner.tenant_of_member(home_upn).ok_or_else(unknown)?;
        inner.select(&home_tid);
        let home = inner.dir.member(home_upn).cloned().ok_or_else(unknown)?;
        if !inner.select(resource_tenant) {
            return Err(SimError::UnknownTenant(resource_tenant.to_string()));
        }
        if inner.dir.tenant.id == home_tid {
            let domain = inner.dir.tenant.domain.clone();
            return Err(SimError::AlreadyMember(home.upn, domain));
        }
        let dir = &mut inner.dir;
        let id = match dir.guest_of(&home.upn) {
            Some(g) => g.id.clone(),
            None => {
                let guest = User {
                    id: new_guid(),
                    upn: guest_upn(&home.upn, &dir.tenant.domain),
                    display_name: home.display_name.clone(),
                    given_name: home.given_name.clone(),
                    surname: home.surname.clone(),
                    home: Some(HomeAccount {
                        tenant_id: home_tid,
                        user_id: home.id.clone(),
                        upn: home.upn.clone(),
                    }),
                };
                let id = guest.id.clone();
                dir.users.push(guest);
                id
            }
        };
        dir.assign_roles(&id, roles, || random_key(32));
        let tid = dir.tenant.id.clone();
        self.persist(&inner);
        drop(inner);
        self.sim_user(&tid, &id)
            .ok_or_else(|| SimError::State(format!("guest {id} not found after adding it")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_upn_is_the_home_upn_escaped_under_the_resource_domain() {
        assert_eq!(
            guest_upn("alice@provider.example", "customer.onmicrosoft.com"),
            "alice_provider.example#EXT#@customer.onmicrosoft.com"
        );
        let text = external_user_text("a@b.example", "t1", "Contoso", "c1", "App");
        assert!(
            text.starts_with(
                "User account 'a@b.example' from identity provider 'https://sts.windows.net/t1/' does not exist in tenant 'Contoso' and cannot access the application 'c1'(App) in that tenant."
            ),
            "{text}"
        );
    }
}
