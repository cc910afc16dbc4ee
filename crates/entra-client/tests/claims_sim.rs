//! A Conditional Access claims challenge from Graph: recognised as one, answered once by a
//! token asked for silently with its claims request (Microsoft's guidance: some policies need no
//! interaction), never retried blindly, never read as a lack of rights; returned as it came when
//! only a new sign-in satisfies the policy (the emulator's `claims_challenge` switch, a revoked
//! session).

use std::sync::{Arc, Mutex};

use entra_client::{GraphClient, OpContext, RenewingToken, observer_fn};
use entra_sim::Faults;
use testkit::sim::{SIGN_IN_SCOPES, SimEnv, calm, ok};

/// A Graph client renewing `globaladmin`'s sign-in with its refresh token.
async fn signed_in_graph(env: &SimEnv) -> GraphClient {
    let tokens = env.sign_in("globaladmin").await.unwrap();
    env.client
        .graph_with_tokens(Arc::new(RenewingToken::from_user_sign_in(
            env.client.sts(),
            &env.info.tenant_domain,
            &env.info.token_app_client_id,
            SIGN_IN_SCOPES,
            tokens,
        )))
}

#[tokio::test]
async fn a_claims_challenge_only_a_sign_in_satisfies_is_recognised_and_not_retried() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = signed_in_graph(&env).await;
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
    // The policy refuses every token: the one asked for silently is challenged too.
    assert_eq!(
        after.graph - before.graph,
        2,
        "one Graph request, one more with the silently asked-for token: no retry"
    );
    assert_eq!(after.sts - before.sts, 1, "one silent token request");
    assert!(retries.lock().unwrap().is_empty(), "no retry was announced");

    // Once the policy is satisfied (the switch off), the same client works again.
    env.sim.set_faults(calm());
    assert_eq!(
        ok(g.me(&OpContext::new())).await.user_principal_name,
        env.upn("globaladmin")
    );
}

/// A policy change every sign-in still satisfies: the token asked for silently with the
/// challenge's claims request is accepted, and the call goes through without the admin.
#[tokio::test]
async fn a_claims_challenge_a_silent_token_satisfies_goes_through() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = signed_in_graph(&env).await;
    ok(g.me(&OpContext::new())).await;
    env.sim.change_conditional_access_policies().await;
    let before = env.sim.request_counts();
    let me = ok(g.me(&OpContext::new())).await;
    let after = env.sim.request_counts();
    assert_eq!(me.user_principal_name, env.upn("globaladmin"));
    assert_eq!((after.graph - before.graph, after.sts - before.sts), (2, 1));
    // The new token holds: the next call needs no second request.
    ok(g.me(&OpContext::new())).await;
    assert_eq!(env.sim.request_counts().sts, after.sts);
}

/// A revoked session: the STS refuses the silent request (AADSTS50173) and the challenge, not
/// the STS's answer, comes back, saying a new sign-in is needed.
#[tokio::test]
async fn a_claims_challenge_of_a_revoked_session_comes_back_as_it_came() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = signed_in_graph(&env).await;
    env.sim.revoke_sign_in_sessions().await;
    let before = env.sim.request_counts();
    let err = g.me(&OpContext::new()).await.unwrap_err();
    let after = env.sim.request_counts();
    assert!(err.is_claims_challenge(), "{err:?}");
    assert_eq!((after.graph - before.graph, after.sts - before.sts), (1, 1));
}
