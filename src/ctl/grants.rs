//! `onboard ctl grants list|update`, `onboard ctl attach` and `onboard ctl end-admin-session`.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use onboard_proto::v1 as pb;
use onboard_proto::v1::credentials_client::CredentialsClient;
use zeroize::Zeroizing;

use super::exit::{CtlError, Exit};
use super::output::{self, Output, ts};
use super::{AuthChannel, RegArgs, call};

/// `onboard ctl grants …`
#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// The Graph application permissions and directory roles as Entra has them now.
    List {
        /// The registration.
        #[command(flatten)]
        reg: RegArgs,
    },
    /// Adds and removes directory roles and application permissions (roles first).
    Update {
        /// The registration.
        #[command(flatten)]
        reg: RegArgs,
        /// A directory role to assign (display name or template id); repeatable.
        #[arg(long)]
        add_role: Vec<String>,
        /// A directory role to remove; repeatable.
        #[arg(long)]
        remove_role: Vec<String>,
        /// A permission to grant (`User.Read.All`, or `<API display name>/<value>`); repeatable.
        #[arg(long)]
        add_permission: Vec<String>,
        /// A permission to remove; repeatable.
        #[arg(long)]
        remove_permission: Vec<String>,
        /// Allow removing roles and permissions the registration's profile requires.
        #[arg(long = "override")]
        override_required: bool,
    },
}

/// `onboard ctl attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The registration.
    #[command(flatten)]
    reg: RegArgs,
    /// The profile the registration should match.
    #[arg(long)]
    profile: String,
    /// A service that uses it; repeatable.
    #[arg(long = "service-id", required = true)]
    service_ids: Vec<String>,
    /// The platform version the profile is resolved for (default: current).
    #[arg(long, default_value = "")]
    platform_version: String,
    /// A file holding the registration's client secret (`-`: standard input). Never a flag
    /// value: command lines show in `ps`.
    #[arg(long)]
    secret_file: PathBuf,
}

/// Runs one grants command.
pub async fn run(cmd: GrantsCommand, ch: AuthChannel, out: Output) -> Result<Exit, CtlError> {
    let mut c = CredentialsClient::new(ch);
    match cmd {
        GrantsCommand::List { reg } => {
            let g = call(
                "ListGrants",
                c.list_grants(pb::ListGrantsRequest {
                    registration: Some(reg.to_pb()),
                }),
            )
            .await?;
            print_grants(&g, out)
        }
        GrantsCommand::Update {
            reg,
            add_role,
            remove_role,
            add_permission,
            remove_permission,
            override_required,
        } => {
            let roles = !(add_role.is_empty() && remove_role.is_empty());
            let perms = !(add_permission.is_empty() && remove_permission.is_empty());
            if !roles && !perms {
                return Err(CtlError::usage(
                    "nothing to change: give --add-role, --remove-role, --add-permission or --remove-permission",
                ));
            }
            let mut seqs = Vec::new();
            let mut last = None;
            if roles {
                let g = call(
                    "UpdateRoles",
                    c.update_roles(pb::UpdateRolesRequest {
                        registration: Some(reg.to_pb()),
                        add: add_role,
                        remove: remove_role,
                        override_required_roles: override_required,
                    }),
                )
                .await?;
                seqs.extend(g.audit_seqs.iter().copied());
                last = Some(g);
            }
            if perms {
                let answer = call(
                    "UpdatePermissions",
                    c.update_permissions(pb::UpdatePermissionsRequest {
                        registration: Some(reg.to_pb()),
                        add: add_permission,
                        remove: remove_permission,
                        override_required_permissions: override_required,
                    }),
                )
                .await;
                let g = match (answer, &last) {
                    (Ok(g), _) => g,
                    // The roles were changed (and their change may have ended the admin
                    // session the permissions needed): say so, then why the rest was not.
                    (Err(e), Some(roles)) => {
                        print_grants(roles, out)?;
                        eprintln!("the role change above was made; the permission change was not:");
                        return Err(e);
                    }
                    (Err(e), None) => return Err(e),
                };
                seqs.extend(g.audit_seqs.iter().copied());
                last = Some(g);
            }
            let mut g = last.unwrap_or_default();
            g.audit_seqs = seqs;
            print_grants(&g, out)
        }
    }
}

/// Permissions and roles, one per line, and the audit entries of changes.
fn print_grants(g: &pb::Grants, out: Output) -> Result<Exit, CtlError> {
    output::print_answer(out, g, |g| {
        let mut t = output::table(&["KIND", "NAME"]);
        for p in &g.permissions {
            t.add_row(vec!["permission", p.as_str()]);
        }
        for r in &g.roles {
            t.add_row(vec!["role", r.as_str()]);
        }
        output::print_table(&t);
        if !g.audit_seqs.is_empty() {
            let seqs: Vec<String> = g.audit_seqs.iter().map(u64::to_string).collect();
            println!("audit entries: {}", seqs.join(", "));
        }
    })
}

/// Attaches a hand-made registration.
pub async fn attach(a: AttachArgs, ch: AuthChannel, out: Output) -> Result<Exit, CtlError> {
    let mut secret = Zeroizing::new(String::new());
    if a.secret_file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut secret)
            .context("reading the secret from standard input")?;
    } else {
        *secret = std::fs::read_to_string(&a.secret_file)
            .with_context(|| format!("reading {}", a.secret_file.display()))?;
    }
    let r = call(
        "AttachRegistration",
        CredentialsClient::new(ch).attach_registration(pb::AttachRegistrationRequest {
            registration: Some(a.reg.to_pb()),
            profile: a.profile,
            service_ids: a.service_ids,
            client_secret: secret.trim().to_owned(),
            platform_version: a.platform_version,
        }),
    )
    .await?;
    output::print_answer(out, &r, |r| {
        let reg = r.registration.clone().unwrap_or_default();
        println!(
            "attached {} ({}) in tenant {}: profile {}, services {}, auth {}, at {}",
            reg.client_id,
            r.display_name,
            reg.tenant_id,
            r.profile,
            r.service_ids.join(", "),
            r.auth_mode,
            ts(&r.attached_at)
        );
    })
}

/// Ends a tenant's day-two admin session.
pub async fn end_admin_session(
    tenant: String,
    ch: AuthChannel,
    out: Output,
) -> Result<Exit, CtlError> {
    let r = call(
        "EndAdminSession",
        CredentialsClient::new(ch).end_admin_session(pb::EndAdminSessionRequest {
            tenant_id: tenant.clone(),
        }),
    )
    .await?;
    output::print_answer(out, &r, |r| {
        println!(
            "admin session of {tenant} ended: {} temporary app(s) removed{}",
            r.temporary_apps_removed,
            if r.session_was_usable {
                ""
            } else {
                " (the session could no longer act: remove a remaining temporary app by hand)"
            }
        );
    })
}
