//! Names fixed by the vendor's flow.

/// Display name of the temporary enterprise app the device-code sign-in creates in the
/// customer's tenant: `<LivePlatform_servername>-<ServiceProvider_name>-token`, e.g.
/// `Sandbox1-sp2-token`.
pub fn token_app_name(server_name: &str, provider: &str) -> String {
    format!("{server_name}-{provider}-token")
}
