//! Names fixed by the vendor's flow.

/// Display name of the temporary enterprise app the device-code sign-in creates in the
/// customer's tenant: `<LivePlatform_servername>-<ServiceProvider_name>-token`, e.g.
/// `Sandbox1-sp2-token`.
pub fn token_app_name(server_name: &str, provider: &str) -> String {
    format!("{server_name}-{provider}-token")
}

/// Longest Direct Routing service id, in bytes.
pub const SERVICE_ID_MAX_BYTES: usize = 128;

/// The one rule for a Direct Routing service id, wherever one enters (an invitation, a
/// day-two call): 1-128 bytes, no `/` (the id is a path segment in the platform's API and in
/// our own keys) and no control characters. `Err` says the rule broken, for the field
/// violation on `service_id`.
pub fn check_service_id(service_id: &str) -> Result<(), &'static str> {
    if service_id.is_empty()
        || service_id.len() > SERVICE_ID_MAX_BYTES
        || service_id.contains('/')
        || service_id.chars().any(char::is_control)
    {
        return Err("required: 1-128 bytes, no '/' and no control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_service_id;

    #[test]
    fn a_service_id_is_1_to_128_bytes_without_a_slash_or_control() {
        assert!(check_service_id("svc-1").is_ok());
        assert!(check_service_id(&"a".repeat(128)).is_ok());
        for bad in ["", "sbc/eu-1", "a\u{7}b", &"a".repeat(129), &"é".repeat(65)] {
            assert!(check_service_id(bad).is_err(), "{bad:?}");
        }
    }
}
