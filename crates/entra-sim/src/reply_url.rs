//! How Entra compares a request's `redirect_uri` with the ones an app registered
//! (learn.microsoft.com/entra/identity-platform/reply-url): to the letter (the path is
//! case-sensitive), except Microsoft's "localhost exceptions" after RFC 8252 §7.3 and §8.3: on
//! a loopback host, `localhost` or `127.0.0.1`, the port is ignored, so `http://localhost/cb`
//! registered accepts `http://localhost:53123/cb` (a native app's ephemeral port), and the
//! other way round. The scheme and host still count (`localhost` does not stand for
//! `127.0.0.1`), and Microsoft does not support the IPv6 loopback `[::1]`, so it gets no
//! exception.
//!
//! The redemption of a code is stricter and stays exact: its `redirect_uri` must be the one the
//! authorization request named (`code_grant.rs`, RFC 6749 §4.1.3).

/// Whether a request's `requested` redirect URI matches the registered `registered`.
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (
        without_loopback_port(registered),
        without_loopback_port(requested),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A loopback URI as scheme, host (lowercase) and what follows the authority, its port left
/// out; `None` for any other URI.
fn without_loopback_port(uri: &str) -> Option<(&str, String, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return None,
        None => authority,
    };
    let host = host.to_ascii_lowercase();
    (host == "localhost" || host == "127.0.0.1").then_some((scheme, host, tail))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn loopback_ports_are_ignored_and_nothing_else_is() {
        let table = [
            ("http://localhost/cb", "http://localhost:53123/cb", true),
            ("http://localhost:8080/cb", "http://localhost:9/cb", true),
            ("http://localhost:8080/cb", "http://localhost/cb", true),
            ("http://127.0.0.1/cb", "http://127.0.0.1:5001/cb", true),
            ("https://127.0.0.1/cb", "https://127.0.0.1:443/cb", true),
            ("http://LOCALHOST/cb", "http://localhost:1/cb", true),
            (
                "https://wizard.example.net/cb",
                "https://wizard.example.net/cb",
                true,
            ),
            // Host, scheme and path still count.
            ("http://localhost/cb", "http://127.0.0.1:1/cb", false),
            ("http://localhost/cb", "https://localhost:1/cb", false),
            ("http://localhost/cb", "http://localhost:1/CB", false),
            ("http://localhost/cb", "http://localhost:1/cb/", false),
            ("http://localhost/cb", "http://localhost:1/cb?x=1", false),
            // No exception off loopback, nor for [::1] (not supported by Microsoft).
            (
                "https://wizard.example.net/cb",
                "https://wizard.example.net:8443/cb",
                false,
            ),
            ("http://[::1]/cb", "http://[::1]:1/cb", false),
            (
                "http://localhost.example.net/cb",
                "http://localhost.example.net:1/cb",
                false,
            ),
            ("http://localhost/cb", "http://localhost:x/cb", false),
        ];
        for (registered, requested, want) in table {
            assert_eq!(
                matches(registered, requested),
                want,
                "{registered} ~ {requested}"
            );
        }
    }
}
