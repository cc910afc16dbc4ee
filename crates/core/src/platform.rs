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
/// day-two call): 1-128 bytes after trimming, no `/` (the id is a path segment in the
/// platform's API and in our own keys), no control characters, and, since it names secrets in
/// Entra, the free-text character rules ([`crate::text::check_chars`]: visible characters in
/// NFKC form, no bidi override or zero-width character). `Ok` is the id as stored and looked
/// up: trimmed, so `"svc "` and `"svc"` are one service. `Err` says the rule broken, for the
/// field violation on `service_id`.
pub fn service_id(raw: &str) -> Result<&str, String> {
    let id = raw.trim();
    if id.is_empty()
        || id.len() > SERVICE_ID_MAX_BYTES
        || id.contains('/')
        || id.chars().any(char::is_control)
    {
        return Err(
            "required: 1-128 bytes after trimming, no '/' and no control characters".into(),
        );
    }
    crate::text::check_chars(id).map_err(|rule| rule.to_string())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::service_id;

    #[test]
    fn a_service_id_is_1_to_128_bytes_after_trimming_without_a_slash_or_control() {
        assert_eq!(service_id("svc-1"), Ok("svc-1"));
        assert_eq!(service_id(" svc-1\t"), Ok("svc-1"));
        let long = "a".repeat(128);
        assert_eq!(service_id(&format!(" {long} ")), Ok(long.as_str()));
        for bad in [
            "",
            "   ",
            "sbc/eu-1",
            "a\u{7}b",
            &"a".repeat(129),
            &"é".repeat(65),
            "svc\u{200B}1",
            "svc\u{202E}1",
            "ｓｖｃ",
        ] {
            assert!(service_id(bad).is_err(), "{bad:?}");
        }
    }
}
