//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1), and the one Graph sends under Conditional
//! Access: a *claims challenge*, `Bearer … error="insufficient_claims", claims="<base64>"`
//! (Microsoft: "Claims challenges, claims requests and client capabilities"; "How to use
//! Continuous Access Evaluation enabled APIs in your applications"; docs/microsoft.md §17).
//!
//! The parser is lenient, as a client reading someone else's header must be: it never fails,
//! keeps what it can read and skips what it cannot. It reads quoted strings with `\` escapes
//! (commas and `=` inside them are text), bare values (Graph has been seen sending
//! `authorization_uri=https://…` unquoted, which is not an RFC token), a bare JSON object up to
//! its closing brace (Microsoft's Conditional Access developer guidance shows
//! `claims={"access_token":{…}}` unquoted), `token68`, several challenges in one header value,
//! and several header values.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};

/// One challenge: an auth scheme and its parameters (or its `token68`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    /// The auth scheme as sent (`Bearer`, `PoP`); compare case-insensitively.
    pub scheme: String,
    /// A `token68` given instead of parameters (`Basic dXNlcg==`), if any.
    pub token68: Option<String>,
    /// Parameters in the order sent, names lower-cased (they are case-insensitive), values
    /// unquoted and unescaped.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The first value of parameter `name` (case-insensitive); RFC 9110 allows each once.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a Graph answer's claims challenge says: Conditional Access (or Continuous Access
/// Evaluation) refused the token; a token asked for with its claims request may satisfy the
/// policy silently, else only a new sign-in that satisfies it helps.
/// Present on a [`GraphError`](crate::GraphError) exactly when a `Bearer` challenge of the
/// answer said `error="insufficient_claims"`. Holds no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsChallenge {
    /// The `claims` parameter as sent: base64 of a JSON claims request for the new token, e.g.
    /// `{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}`, or that JSON itself
    /// when sent bare. Microsoft requires it with `insufficient_claims`; `None` when a server
    /// left it out.
    pub claims: Option<String>,
    /// `error_description` (Graph also spells it `errorDescription`), e.g. "Continuous access
    /// evaluation resulted in challenge with result: InteractionRequired and code: …".
    pub description: Option<String>,
}

impl ClaimsChallenge {
    /// The claims request decoded to its JSON text; `None` when absent or not base64 of UTF-8.
    /// Padded standard base64 is what Microsoft documents; URL-safe unpadded is accepted too,
    /// and a request sent as bare JSON (`{…}`, never base64) is returned as it is.
    pub fn claims_request(&self) -> Option<String> {
        let raw = self.claims.as_deref()?.trim();
        if raw.starts_with('{') {
            return Some(raw.to_owned());
        }
        let bytes = STANDARD
            .decode(raw)
            .or_else(|_| URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')))
            .ok()?;
        String::from_utf8(bytes).ok()
    }

    /// The `claims` parameter for a token request that answers this challenge: the claims
    /// request merged with this client's capabilities ([`crate::sts::CLIENT_CAPABILITIES`]),
    /// as MSAL merges them (Microsoft, "Claims challenges, claims requests and client
    /// capabilities": the client passes the decoded claims request to the token endpoint and
    /// keeps declaring `cp1`). `None` when the challenge holds no claims request, or one that
    /// is not a JSON object (a bare `access_token` key that is not an object included), or
    /// one longer than [`MAX_CLAIMS_REQUEST`]: nothing sensible can be asked for then.
    pub fn token_request_claims(&self) -> Option<String> {
        let text = self.claims_request()?;
        if text.len() > MAX_CLAIMS_REQUEST {
            return None;
        }
        let mut request: serde_json::Value = serde_json::from_str(&text).ok()?;
        let capabilities: serde_json::Value =
            serde_json::from_str(crate::sts::CLIENT_CAPABILITIES).ok()?;
        let access = request
            .as_object_mut()?
            .entry("access_token")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()?;
        for (claim, value) in capabilities["access_token"].as_object()? {
            access.insert(claim.clone(), value.clone());
        }
        Some(request.to_string())
    }
}

/// The longest claims request this client passes on to the token endpoint (decoded); Microsoft's
/// are a few hundred bytes.
pub const MAX_CLAIMS_REQUEST: usize = 16 * 1024;

/// The claims challenge among `values` (the `WWW-Authenticate` header values of one answer):
/// the first `Bearer` challenge whose `error` is `insufficient_claims`. Microsoft: all its
/// fields are in the same header value, and an answer may carry several values.
pub fn find_claims_challenge<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Option<ClaimsChallenge> {
    values
        .into_iter()
        .flat_map(parse_www_authenticate)
        .find(|c| {
            c.scheme.eq_ignore_ascii_case("Bearer")
                && c.param("error")
                    .is_some_and(|e| e.trim().eq_ignore_ascii_case("insufficient_claims"))
        })
        .map(|c| ClaimsChallenge {
            claims: c.param("claims").map(str::to_owned),
            description: c
                .param("error_description")
                .or_else(|| c.param("errordescription"))
                .map(str::to_owned),
        })
}

/// The claims challenge of an answer's headers, if any (every `WWW-Authenticate` value is read;
/// bytes that are not UTF-8 are replaced, not fatal).
pub(crate) fn claims_challenge_of(headers: &HeaderMap) -> Option<ClaimsChallenge> {
    let values: Vec<String> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    find_claims_challenge(values.iter().map(String::as_str))
}

/// Parses one `WWW-Authenticate` value into its challenges. Never fails: what cannot be read
/// is skipped, and parameters before any scheme are dropped.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let mut p = Cursor {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip(|b| b == b',' || is_ows(b));
        if p.at_end() {
            break;
        }
        let name = p.take(is_tchar);
        if name.is_empty() {
            // Not a token (a stray quote or `=`): step over one character and go on.
            p.skip_value();
            continue;
        }
        let after_name = p.i;
        p.skip(is_ows);
        if p.peek() == Some(b'=') && p.peek_at(1) != Some(b'=') {
            p.i += 1;
            p.skip(is_ows);
            let value = p.value();
            if let Some(c) = out.last_mut() {
                c.params.push((name.to_ascii_lowercase(), value));
            }
            continue;
        }
        p.i = after_name;
        let mut challenge = Challenge {
            scheme: name,
            ..Challenge::default()
        };
        p.skip(is_ows);
        challenge.token68 = p.token68();
        out.push(challenge);
    }
    out
}

/// A read position in a header value.
struct Cursor<'a> {
    /// The header value's bytes.
    s: &'a [u8],
    /// The next byte to read.
    i: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.s.get(self.i + n).copied()
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn take(&mut self, f: impl Fn(u8) -> bool) -> String {
        let start = self.i;
        self.skip(f);
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// Steps over one unreadable item: a quoted string, or one other byte.
    fn skip_value(&mut self) {
        if self.peek() == Some(b'"') {
            let _ = self.value();
        } else {
            self.i += 1;
        }
    }

    /// A parameter value: a quoted string (unescaped; an unterminated one runs to the end), a
    /// bare JSON object ([`Cursor::braced`]), or a bare value up to the next comma or space.
    fn value(&mut self) -> String {
        match self.peek() {
            Some(b'"') => {}
            Some(b'{') => return self.braced(),
            _ => return self.take(|b| b != b',' && !is_ows(b)),
        }
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A bare JSON object, as sent: up to the brace that closes the first one; braces inside
    /// JSON strings do not count. An unbalanced one runs to the end of the header value.
    fn braced(&mut self) -> String {
        let start = self.i;
        let (mut depth, mut in_string) = (0usize, false);
        while let Some(b) = self.peek() {
            self.i += 1;
            if in_string {
                match b {
                    b'\\' if self.peek().is_some() => self.i += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// A `token68` right after a scheme: token68 characters, then `=` padding, then the end or
    /// a comma. Anything else (`realm="…"`) leaves the cursor where it was.
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        self.skip(is_token68_char);
        if self.i == start {
            return None;
        }
        self.skip(|b| b == b'=');
        let end = self.i;
        self.skip(is_ows);
        if self.at_end() || self.peek() == Some(b',') {
            return Some(String::from_utf8_lossy(&self.s[start..end]).into_owned());
        }
        self.i = start;
        None
    }
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

#[cfg(test)]
mod tests;
