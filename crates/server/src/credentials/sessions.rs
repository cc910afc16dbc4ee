//! Day-two admin sessions end by design: a sign-in is for the change it was made for, and an
//! idle timeout is the backstop (`[credentials] end_admin_session_after_change`,
//! `admin_session_idle_secs`). Ending removes the temporary app the sign-in re-created
//! (audited as `temporary_app.delete`, by the actor given) and forgets the session.

use std::time::Duration;

use credentials::{AuthMode, RegistrationRef};

use super::CredentialsService;
use crate::App;

/// The audit actor of sessions ended for being idle.
pub const SESSION_IDLE_ACTOR: &str = "system:admin-session-idle";

impl CredentialsService {
    /// Called after a change to `reg` succeeded: when the change went through the tenant's
    /// admin session (`used_session`, or the registration changes its secrets through one),
    /// the session ends now, by `actor`, whose change it was. A failure to end it is logged,
    /// not returned: the change itself is done, and the idle timeout ends the session later.
    pub(super) async fn change_done(&self, reg: &RegistrationRef, used_session: bool, actor: &str) {
        if !self.app.config().credentials.end_admin_session_after_change {
            return;
        }
        let via_session = used_session
            || self
                .app
                .credentials()
                .registration(reg)
                .is_ok_and(|r| r.auth_mode == AuthMode::AdminSession);
        if !via_session {
            return;
        }
        end(&self.app, &reg.tenant_id, actor).await;
    }
}

/// Ends `tenant_id`'s admin session if there is one; logs what happened.
pub(super) async fn end(app: &App, tenant_id: &str, actor: &str) {
    let creds = app.credentials();
    if !matches!(creds.admin_session(tenant_id), Ok(Some(_))) {
        return;
    }
    match creds
        .end_admin_session(tenant_id, &app.config().platform.token_app_name(), actor)
        .await
    {
        Ok(e) => tracing::info!(
            tenant_id,
            removed = e.temporary_apps_removed,
            "admin session ended after its change"
        ),
        Err(e) => tracing::warn!(tenant_id, error = %e, "admin session not ended"),
    }
}

/// The idle backstop: every `idle / 4` (at most a minute) ends the sessions unused for
/// `idle`; stops at shutdown.
pub(super) fn spawn_idle_sessions(app: &App) {
    let secs = app.config().credentials.admin_session_idle_secs;
    if secs == 0 {
        return;
    }
    let idle = Duration::from_secs(secs);
    let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let a = app.clone();
    app.credentials().spawn(async move {
        let stop = a.shutdown();
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.recv() => return,
            }
            match a
                .credentials()
                .end_idle_admin_sessions(
                    idle,
                    &a.config().platform.token_app_name(),
                    SESSION_IDLE_ACTOR,
                )
                .await
            {
                Ok(t) if !t.is_empty() => tracing::info!(tenants = ?t, "idle admin sessions ended"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "idle admin sessions not checked"),
            }
        }
    });
}
