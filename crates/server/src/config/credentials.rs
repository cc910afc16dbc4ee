//! `[credentials]`: day-two credential management (expiry, automatic rotation, self-rotation
//! and admin sessions).

use serde::Deserialize;

/// `[credentials]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSection {
    /// Secrets expiring within this many days are reported by ListExpiring (and rotated when
    /// `auto_rotate` is on).
    #[serde(default = "default_horizon")]
    pub expiry_horizon_days: u32,
    /// Rotate expiring secrets automatically, checking every `check_interval_secs`.
    #[serde(default)]
    pub auto_rotate: bool,
    /// Overlap of automatic rotations: how long the old secret stays valid after hand-over.
    #[serde(default = "default_overlap")]
    pub auto_rotate_overlap_secs: u64,
    /// How often the automatic rotation looks for expiring secrets.
    #[serde(default = "default_check_interval")]
    pub check_interval_secs: u64,
    /// Lifetime of new secrets in days (0: Graph's default of two years).
    #[serde(default = "default_secret_lifetime")]
    pub secret_lifetime_days: u32,
    /// How long a self-rotating registration's change waits for its
    /// `Application.ReadWrite.OwnedBy` grant to reach its tokens (right after provisioning).
    #[serde(default = "default_self_rotation_wait")]
    pub self_rotation_wait_secs: u64,
    /// A day-two admin sign-in is for the change it was made for: once a change that used it
    /// succeeded, the session ends (the re-created temporary app removed, audited).
    #[serde(default = "default_true")]
    pub end_admin_session_after_change: bool,
    /// The backstop: an admin session unused this long is ended the same way (0: never).
    #[serde(default = "default_admin_session_idle")]
    pub admin_session_idle_secs: u64,
}

impl Default for CredentialsSection {
    fn default() -> Self {
        Self {
            expiry_horizon_days: default_horizon(),
            auto_rotate: false,
            auto_rotate_overlap_secs: default_overlap(),
            check_interval_secs: default_check_interval(),
            secret_lifetime_days: default_secret_lifetime(),
            self_rotation_wait_secs: default_self_rotation_wait(),
            end_admin_session_after_change: true,
            admin_session_idle_secs: default_admin_session_idle(),
        }
    }
}

fn default_self_rotation_wait() -> u64 {
    300
}

fn default_true() -> bool {
    true
}

fn default_admin_session_idle() -> u64 {
    3_600
}

fn default_horizon() -> u32 {
    30
}

fn default_overlap() -> u64 {
    86_400
}

fn default_check_interval() -> u64 {
    3_600
}

fn default_secret_lifetime() -> u32 {
    180
}
