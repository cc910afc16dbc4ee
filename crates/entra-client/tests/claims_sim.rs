//! A Conditional Access claims challenge from Graph (the emulator's `claims_challenge` switch):
//! recognised as one, not renewed, not retried, not read as a lack of rights.

use std::sync::{Arc, Mutex};

use entra_client::{OpContext, RenewingToken, observer_fn};
use entra_sim::Faults;
use testkit::sim::{SIGN_IN_SCOPES, SimEnv, calm, ok};

#[tokio::test]
async fn a_claims_challenge_is_recognised_and_neither_renewed_nor_retried() {
    let env = SimEnv::start(calm()).await.unwrap();
    let tokens = env.sign_in("globaladmin").await.unwrap();
    // A token source that can renew: a plain 401 would be answered with one renewal.
    let g = env
        .client
        .graph_with_tokens(Arc::new(RenewingToken::from_user_sign_in(
            env.client.sts(),
            &env.info.tenant_domain,
            &env.info.token_app_client_id,
            SIGN_IN_SCOPES,
            tokens,
        )));
    env.sim.set_faults(Faults {
        claims_challenge: true,
        ..calm()
    });
    let before = env.sim.request_counts();
    let retries = Arc::new(Mutex::new(Vec::new()));
    let sink = retries.clone();
    let ctx =
        OpContext::new().with_observer(observer_fn(move |e| sink.lock().unwrap().push(e.clone())));

    let err = g.me(&ctx).await.unwrap_err();

    let after = env.sim.request_counts();
    assert!(err.is_claims_challenge(), "{err:?}");
    assert!(
        !err.is_authorization_denied(),
        "not a lack of rights: {err:?}"
    );
    let graph = err.graph().expect("a Graph error");
    assert_eq!(
        (graph.status, graph.code.as_str()),
        (401, "InvalidAuthenticationToken")
    );
    assert!(
        graph.request_id.is_some(),
        "the request id is kept for support"
    );
    let challenge = err.claims_challenge().expect("the challenge");
    let request = challenge.claims_request().expect("a base64 claims request");
    let request: serde_json::Value = serde_json::from_str(&request).unwrap();
    assert_eq!(
        request["access_token"]["nbf"]["essential"], true,
        "{request}"
    );
    assert!(err.to_string().contains("claims challenge"), "{err}");
    assert_eq!(
        after.graph - before.graph,
        1,
        "one Graph request: no retry, no second try"
    );
    assert_eq!(after.sts - before.sts, 0, "no token renewal");
    assert!(retries.lock().unwrap().is_empty(), "no retry was announced");

    // Once the policy is satisfied (the switch off), the same client works again.
    env.sim.set_faults(calm());
    assert_eq!(
        ok(g.me(&OpContext::new())).await.user_principal_name,
        env.upn("globaladmin")
    );
}
