//! Fault switches: the ways real Entra misbehaves that a robust client must survive.
//!
//! Rates are drawn from a small seeded generator so that a test which sets `seed`
//! sees the same sequence of 429s and 5xx on every run.

use serde::{Deserialize, Serialize};

use crate::tokens::ACCESS_TOKEN_LIFETIME;

/// How long after its creation an object may still be missing from a stale replica
/// ([`Faults::stale_replica_answers`]): five minutes, the lag Microsoft's forums and Terraform's
/// azuread provider report as common (entra-reference §4.3).
pub const STALE_REPLICA_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Which misbehaviours the emulator shows. `Faults::default()` is a well-behaved tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// A newly written object stays invisible to dependent calls for this long, as Entra's
    /// replicas lag behind the write (404 / NoBackingApplicationObject / "Not a valid reference update").
    pub replication_lag_ms: u64,
    /// App role assignments and directory role assignments stay out of the lists that show
    /// them (`servicePrincipals/{id}/appRoleAssignments`, `…/appRoleAssignedTo`,
    /// `roleManagement/directory/roleAssignments`) for this long after they are made, while
    /// the assignment itself is in force at once: a second create of the same one is refused
    /// as existing. Microsoft documents Entra as eventually consistent (a successful write does
    /// not promise that the next read sees it); a client that looks for a write whose answer
    /// was lost must wait for the list, not take one empty answer as "not made".
    pub assignment_list_lag_ms: u64,
    /// The next this many Graph requests that name an application or a service principal made
    /// in the last [`STALE_REPLICA_WINDOW_MS`] (`/applications/{key}…`,
    /// `/servicePrincipals/{key}…`: a read, an update, a delete, a sub-resource) are served by a
    /// replica that has not seen it yet: 404 `Request_ResourceNotFound`, although earlier
    /// requests found it. Counted down as they are answered (`GET /_sim/faults` shows what is
    /// left). Microsoft documents no read-your-writes promise ("a successful write doesn't
    /// guarantee the next read sees it", designing-for-eventual-consistency-for-microsoft-entra),
    /// so one 404 for an object made moments ago is no proof that it is gone. A list of
    /// applications or service principals served by such a replica leaves the recent ones out
    /// (a `$filter` by `appId` finds nothing). Unlike `replication_lag_ms`, what a client has
    /// seen it may not see again.
    pub stale_replica_answers: u32,
    /// Only requests with this method (`"DELETE"`, `"GET"`…) meet the stale replica; `None`:
    /// any method.
    pub stale_replica_method: Option<String>,
    /// Only requests to this path (after `/v1.0/`, without the query) meet the stale replica:
    /// `servicePrincipals` is the list of service principals, `servicePrincipals/{id}` one of
    /// them; `None`: any path.
    pub stale_replica_path: Option<String>,
    /// Fraction (0.0..=1.0) of Graph calls answered with 429 Too Many Requests.
    pub throttle_rate: f64,
    /// `Retry-After` seconds sent with each 429 (and each 503).
    pub throttle_retry_after_s: u64,
    /// Fraction (0.0..=1.0) of token and device-code requests the STS throttles: 429 with
    /// `Retry-After` and a plain-text "Too Many Requests" body, as Entra's STS sends.
    pub sts_throttle_rate: f64,
    /// Fraction (0.0..=1.0) of Graph calls answered with a server error.
    pub error_rate: f64,
    /// Status of those server errors (500, 503 or 504); `None` cycles 503, 500, 504 so clients meet all three.
    pub error_status: Option<u16>,
    /// Injected 500 and 504 answers to Graph writes (POST, PATCH, DELETE) come *after* the
    /// write landed, as when Graph's front end gives up on a directory write that then commits:
    /// the answer is lost, the change is made. A client that sends such a write again blindly
    /// meets "already exists" or makes a second object. (503 always comes before: Graph says a
    /// 503'd request may be repeated.)
    pub errors_after_write: bool,
    /// Conditional Access refuses every delegated (user) token at Graph with a claims
    /// challenge, as Graph does when a policy (MFA, a compliant device, a location; or a
    /// Continuous Access Evaluation event) needs a new sign-in that satisfies it: 401,
    /// `WWW-Authenticate: Bearer realm="", authorization_uri=…, client_id=…,
    /// error="insufficient_claims", claims="<base64 claims request>"` and an
    /// `InvalidAuthenticationToken` body. Only tokens of clients that declared the `cp1`
    /// capability (the token request's `claims` parameter) get it, as from Graph; app-only
    /// tokens are not affected.
    pub claims_challenge: bool,
    /// Access tokens for Microsoft's own APIs (Microsoft Graph, the Skype and Teams Tenant
    /// Admin API) are opaque strings, not JWTs. Microsoft: "access tokens must be treated as
    /// opaque strings … Tokens that a Microsoft API receives might not always be a JWT that
    /// can be decoded. Clients should use the token response data." (Learn, access-tokens).
    /// Graph still accepts them; a client that reads claims from them finds none.
    pub opaque_access_tokens: bool,
    /// App-only access tokens carry no `wids` claim, as for an application whose manifest does
    /// not set `groupMembershipClaims` (Learn, access-token-claims-reference: `wids` is
    /// configured per application). Its directory roles are then not in its tokens at all.
    pub app_tokens_without_wids: bool,
    /// Extra delay before every answer, to exercise client timeouts and progress reporting.
    pub latency_ms: u64,
    /// Seed for the rate draws; `None` seeds from the clock (not reproducible).
    pub seed: Option<u64>,
    /// At most this many injected faults (429 or 5xx) per operation, i.e. per
    /// `client-request-id` (a client sends the same id on every retry of one operation);
    /// `None`: no cap. Real Graph has no such cap; tests that must complete whatever the draws
    /// set one below their client's retry budget, so the outcome no longer depends on luck.
    pub max_faults_per_operation: Option<u32>,
    /// Every device sign-in ends as if the user pressed "Decline" (authorization_declined);
    /// every authorization code sign-in as if they pressed "Cancel" (access_denied).
    pub decline_all_signins: bool,
    /// A Conditional Access policy blocks the device code flow (the "Authentication flows"
    /// condition): approving a device sign-in is refused with AADSTS53003 "Access has been
    /// blocked by Conditional Access policies. The access policy does not allow token
    /// issuance.", and the token poll for that device code answers `invalid_grant` AADSTS53003
    /// (HTTP 400), as Azure CLI users saw (Azure/azure-cli#32809, #32544). The authorization
    /// code flow is not blocked.
    pub block_device_code: bool,
    /// Lifetime of an authorization code in seconds (Entra: about 10 minutes); 0 lets tests
    /// reach AADSTS70008 at once.
    pub auth_code_ttl_s: Option<u64>,
    /// Lifetime of a device code in seconds (Entra: 900); short values let tests reach `expired_token`.
    pub device_code_ttl_s: Option<u64>,
    /// Polling interval announced by /devicecode in seconds (Entra: 5); polls faster than this get `slow_down`.
    pub device_code_interval_s: Option<u64>,
    /// The first this many polls of each device code, while the sign-in is pending, are
    /// answered `slow_down` whatever their pace, as an authorization server may when it wants
    /// fewer polls (RFC 8628 §3.5: the client then adds 5 seconds to its interval "for this and
    /// all subsequent requests").
    pub slow_down_polls: u32,
    /// Tenant app management policy: longest allowed client-secret lifetime in days (`passwordLifetime`).
    pub password_lifetime_max_days: Option<u64>,
    /// Tenant app management policy: client secrets may not be added at all (`passwordAddition`).
    pub forbid_passwords: bool,
    /// Lifetime of the access tokens issued, in seconds (Entra: 60–90 minutes, reported as
    /// 3599; a token lifetime policy sets 10 minutes to a day). Shorter lets a test reach a
    /// token's end without waiting for it.
    pub access_token_lifetime_s: Option<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            replication_lag_ms: 0,
            assignment_list_lag_ms: 0,
            stale_replica_answers: 0,
            stale_replica_method: None,
            stale_replica_path: None,
            throttle_rate: 0.0,
            throttle_retry_after_s: 2,
            sts_throttle_rate: 0.0,
            error_rate: 0.0,
            error_status: None,
            errors_after_write: false,
            claims_challenge: false,
            opaque_access_tokens: false,
            app_tokens_without_wids: false,
            latency_ms: 0,
            seed: None,
            max_faults_per_operation: None,
            decline_all_signins: false,
            block_device_code: false,
            auth_code_ttl_s: None,
            device_code_ttl_s: None,
            device_code_interval_s: None,
            slow_down_polls: 0,
            password_lifetime_max_days: None,
            forbid_passwords: false,
            access_token_lifetime_s: None,
        }
    }
}

impl Faults {
    /// Device code lifetime in effect (Entra's documented default is 15 minutes).
    pub fn device_code_ttl(&self) -> u64 {
        self.device_code_ttl_s.unwrap_or(900)
    }

    /// Access token lifetime in effect, in seconds.
    pub fn access_token_lifetime(&self) -> i64 {
        self.access_token_lifetime_s
            .map_or(ACCESS_TOKEN_LIFETIME, |s| {
                i64::try_from(s).unwrap_or(i64::MAX)
            })
    }

    /// Lifetime of a delegated access token for a client that declared `capabilities`: the
    /// fault's when set, else a Continuous Access Evaluation session's long one for `cp1`
    /// ([`crate::CAE_ACCESS_TOKEN_LIFETIME`]), else Entra’s hour.
    pub fn delegated_token_lifetime(&self, capabilities: &[String]) -> i64 {
        let cae = capabilities.iter().any(|c| c.eq_ignore_ascii_case("cp1"));
        match self.access_token_lifetime_s {
            Some(_) => self.access_token_lifetime(),
            None if cae => crate::tokens::CAE_ACCESS_TOKEN_LIFETIME,
            None => ACCESS_TOKEN_LIFETIME,
        }
    }

    /// Polling interval in effect (Entra's default is 5 s).
    pub fn device_code_interval(&self) -> u64 {
        self.device_code_interval_s.unwrap_or(5)
    }

    /// Authorization code lifetime in effect ("Typically, they expire after about 10
    /// minutes", Learn v2-oauth2-auth-code-flow).
    pub fn auth_code_ttl(&self) -> u64 {
        self.auth_code_ttl_s.unwrap_or(600)
    }
}

/// What the fault layer decided for one Graph call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Answer normally.
    None,
    /// Answer 429 with this Retry-After.
    Throttle(u64),
    /// Answer this 5xx status (503 also carries Retry-After).
    ServerError(u16, u64),
}

/// SplitMix64: tiny, seedable and good enough to spread fault draws evenly.
#[derive(Debug, Clone)]
pub struct FaultRng {
    /// Generator state; advancing it yields the next draw.
    state: u64,
    /// Counts server errors so that `error_status: None` cycles through 503, 500, 504.
    errors_drawn: u64,
}

impl FaultRng {
    /// A generator for `seed`, or one seeded from the clock when no seed is given.
    pub fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed)
        });
        FaultRng {
            state: seed,
            errors_drawn: 0,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Decides whether the STS throttles one token request. No draw is taken while the rate is
    /// zero, so turning STS throttling off leaves the Graph fault sequence of a seed unchanged.
    pub fn decide_sts(&mut self, f: &Faults) -> Injected {
        if f.sts_throttle_rate > 0.0 && self.next_f64() < f.sts_throttle_rate {
            Injected::Throttle(f.throttle_retry_after_s)
        } else {
            Injected::None
        }
    }

    /// Decides the fate of one Graph call. Two draws are always taken so that changing one
    /// rate does not shift the other's sequence.
    pub fn decide(&mut self, f: &Faults) -> Injected {
        let t = self.next_f64();
        let e = self.next_f64();
        if t < f.throttle_rate {
            return Injected::Throttle(f.throttle_retry_after_s);
        }
        if e < f.error_rate {
            let status = f.error_status.unwrap_or_else(|| {
                let s = [503, 500, 504][(self.errors_drawn % 3) as usize];
                self.errors_drawn += 1;
                s
            });
            return Injected::ServerError(status, f.throttle_retry_after_s);
        }
        Injected::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_sequence() {
        let f = Faults {
            throttle_rate: 0.3,
            error_rate: 0.3,
            seed: Some(42),
            ..Faults::default()
        };
        let mut a = FaultRng::new(f.seed);
        let mut b = FaultRng::new(f.seed);
        let sa: Vec<_> = (0..50).map(|_| a.decide(&f)).collect();
        let sb: Vec<_> = (0..50).map(|_| b.decide(&f)).collect();
        assert_eq!(sa, sb);
        assert!(sa.iter().any(|x| matches!(x, Injected::Throttle(2))));
        assert!(sa.iter().any(|x| matches!(x, Injected::ServerError(..))));
        assert!(sa.contains(&Injected::None));
    }

    #[test]
    fn zero_rates_never_inject_and_full_rate_always_does() {
        let mut r = FaultRng::new(Some(1));
        let calm = Faults::default();
        assert!((0..200).all(|_| r.decide(&calm) == Injected::None));
        let storm = Faults {
            throttle_rate: 1.0,
            throttle_retry_after_s: 7,
            ..Faults::default()
        };
        assert!((0..200).all(|_| r.decide(&storm) == Injected::Throttle(7)));
    }

    #[test]
    fn sts_throttling_has_its_own_rate() {
        let mut r = FaultRng::new(Some(3));
        let graph_only = Faults {
            throttle_rate: 1.0,
            ..Faults::default()
        };
        assert!((0..50).all(|_| r.decide_sts(&graph_only) == Injected::None));
        let sts = Faults {
            sts_throttle_rate: 1.0,
            ..Faults::default()
        };
        assert_eq!(r.decide_sts(&sts), Injected::Throttle(2));
    }

    #[test]
    fn unset_error_status_cycles_through_the_three_5xx() {
        let mut r = FaultRng::new(Some(9));
        let f = Faults {
            error_rate: 1.0,
            ..Faults::default()
        };
        let got: Vec<_> = (0..3).map(|_| r.decide(&f)).collect();
        assert_eq!(
            got,
            vec![
                Injected::ServerError(503, 2),
                Injected::ServerError(500, 2),
                Injected::ServerError(504, 2)
            ]
        );
    }

    #[test]
    fn faults_deserialize_from_partial_json() {
        let f: Faults = serde_json::from_str(r#"{"replication_lag_ms": 1500}"#).unwrap();
        assert_eq!(f.replication_lag_ms, 1500);
        assert_eq!(f.throttle_retry_after_s, 2);
        assert_eq!(f.device_code_ttl(), 900);
    }
}
