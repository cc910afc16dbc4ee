//! The Invitations service over a real socket: create, get by id and token, list by state,
//! revoke, expiry, single use, forged tokens, validation, and what reaches the audit log.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use onboard_proto::v1 as pb;
use onboard_proto::v1::get_invitation_request::Key;
use onboard_proto::v1::invitations_client::InvitationsClient;
use testkit::server::{Authed, OPERATOR, TestServer, bad_fields};
use testkit::server_helpers::Refused;
use tonic::Code;

fn request(customer: &str) -> pb::CreateInvitationRequest {
    pb::CreateInvitationRequest {
        customer: customer.into(),
        service_id: "svc-42".into(),
        platform_version: "8.0.517.200".into(),
        profile: "direct-routing".into(),
        admin_upn: "admin@contoso.example".into(),
        ..Default::default()
    }
}

fn by_token(t: &str) -> pb::GetInvitationRequest {
    pb::GetInvitationRequest {
        key: Some(Key::Token(t.into())),
    }
}

fn by_id(id: &str) -> pb::GetInvitationRequest {
    pb::GetInvitationRequest {
        key: Some(Key::Id(id.into())),
    }
}

fn state(i: &pb::Invitation) -> pb::InvitationState {
    pb::InvitationState::try_from(i.state).unwrap_or(pb::InvitationState::Unspecified)
}

/// A change to a valid request.
type Edit = fn(&mut pb::CreateInvitationRequest);

/// A test server and an operator's Invitations client on it.
async fn operator() -> Result<(TestServer, InvitationsClient<Authed>)> {
    let s = TestServer::start().await?;
    let c = s.invitations(Some(OPERATOR)).await?;
    Ok((s, c))
}

/// RevokeInvitation of `id` for `reason`.
fn revocation(id: &str, reason: &str) -> pb::RevokeInvitationRequest {
    pb::RevokeInvitationRequest {
        id: id.into(),
        reason: reason.into(),
    }
}

/// Revokes invitation `id` for `reason`, checked to answer it Revoked.
async fn revoke(
    c: &mut InvitationsClient<Authed>,
    id: &str,
    reason: &str,
) -> Result<pb::Invitation> {
    let revoked = c
        .revoke_invitation(revocation(id, reason))
        .await?
        .into_inner();
    assert_eq!(state(&revoked), pb::InvitationState::Revoked);
    Ok(revoked)
}

/// Revoking invitation `id` is refused: FAILED_PRECONDITION.
async fn revoke_refused(c: &mut InvitationsClient<Authed>, id: &str) -> Result<()> {
    c.revoke_invitation(revocation(id, ""))
        .await
        .refused(Code::FailedPrecondition, &[])?;
    Ok(())
}

/// Redeeming `token` (as the onboarding service would) is refused: FAILED_PRECONDITION
/// saying `why`.
async fn redeem_refused(s: &TestServer, token: &str, why: &str) -> Result<()> {
    let e = s
        .app
        .invitations()
        .redeem("wizard", token, "ob-2")
        .await
        .err()
        .context("redeemed")?;
    let status = tonic::Status::from(onboard_server::ServerError::from(e));
    ensure!(
        status.code() == Code::FailedPrecondition && status.message().contains(why),
        "{status:?}"
    );
    Ok(())
}

#[tokio::test]
async fn create_get_list_revoke() -> Result<()> {
    let (s, mut c) = operator().await?;
    let created = c
        .create_invitation(request("<Contoso & \"Co\">"))
        .await?
        .into_inner();
    let inv = created.invitation.clone().context("invitation")?;
    let token = created.token.clone();
    assert_eq!(inv.provider_name, "sp2", "configured default");
    assert_eq!(inv.platform_server_name, "Sandbox1", "configured default");
    assert_eq!(inv.created_by, "portal");
    assert_eq!(state(&inv), pb::InvitationState::Pending);
    assert_eq!(
        created.activation_url,
        format!("https://wizard.example.net/activate#token={token}")
    );
    assert_eq!(URL_SAFE_NO_PAD.decode(&token)?.len(), 48);

    // The email names customer, service and provider; HTML escapes the customer's name.
    let email = created.email.context("email")?;
    assert!(email.subject.contains("<Contoso & \"Co\">") && email.subject.contains("sp2"));
    assert!(email.text.contains("svc-42") && email.text.contains("Teams Direct Routing"));
    assert!(email.text.contains(&created.activation_url));
    assert!(email.html.contains("&lt;Contoso &amp; &quot;Co&quot;&gt;"));
    assert!(!email.html.contains("<Contoso"));
    assert!(email.html.contains("Teams Direct Routing") && email.html.contains(&token));

    // By id and by token.
    let got = c.get_invitation(by_id(&inv.id)).await?.into_inner();
    assert_eq!(got, inv);
    let got = c.get_invitation(by_token(&token)).await?.into_inner();
    assert_eq!(got.id, inv.id);

    // Listing by state, newest first, paged.
    let second = c.create_invitation(request("Fabrikam")).await?.into_inner();
    let third = c
        .create_invitation(request("Northwind"))
        .await?
        .into_inner();
    let ids = |r: &pb::ListInvitationsResponse| {
        r.invitations
            .iter()
            .map(|i| i.id.clone())
            .collect::<Vec<_>>()
    };
    let id_of = |c: &pb::CreateInvitationResponse| {
        c.invitation
            .as_ref()
            .map(|i| i.id.clone())
            .unwrap_or_default()
    };
    let page1 = c
        .list_invitations(pb::ListInvitationsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(ids(&page1), [id_of(&third), id_of(&second)]);
    assert!(!page1.next_page_token.is_empty());
    let page2 = c
        .list_invitations(pb::ListInvitationsRequest {
            page_size: 2,
            page_token: page1.next_page_token.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(ids(&page2), [inv.id.as_str()]);
    assert!(page2.next_page_token.is_empty());

    // Revoke: the state changes, the token is dead, a second revoke is refused.
    let revoked = revoke(&mut c, &inv.id, "sent to the wrong person").await?;
    assert_eq!(revoked.revoked_by, "portal");
    assert_eq!(
        state(&c.get_invitation(by_token(&token)).await?.into_inner()),
        pb::InvitationState::Revoked
    );
    revoke_refused(&mut c, &inv.id).await?;
    redeem_refused(&s, &token, "").await?;

    let list = |st: pb::InvitationState| pb::ListInvitationsRequest {
        state: st as i32,
        ..Default::default()
    };
    let revoked_list = c
        .list_invitations(list(pb::InvitationState::Revoked))
        .await?
        .into_inner();
    assert_eq!(ids(&revoked_list), [inv.id.as_str()]);
    let pending = c
        .list_invitations(list(pb::InvitationState::Pending))
        .await?
        .into_inner();
    assert_eq!(ids(&pending), [id_of(&third), id_of(&second)]);

    // Audit: intent and outcome for create and revoke; never a token or its hash.
    let entries = s.entries()?;
    let actions: Vec<String> = entries
        .iter()
        .filter(|e| e["target"]["id"] == inv.id.as_str())
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap_or(""),
                e["phase"].as_str().unwrap_or("")
            )
        })
        .collect();
    // The refused redemption was stopped by the pending check before any entry.
    assert_eq!(
        actions,
        [
            "invitation.create intent",
            "invitation.create succeeded",
            "invitation.revoke intent",
            "invitation.revoke succeeded",
        ]
    );
    let all = entries.iter().map(|e| e.to_string()).collect::<String>();
    let hash = onboard_server::token_sha256_hex(&token);
    for secret in [&token, &hash, &third.token, &second.token] {
        assert!(
            !all.contains(secret.as_str()),
            "a token reached the audit log"
        );
    }
    s.stop().await
}

#[tokio::test]
async fn tokens_are_single_use() -> Result<()> {
    let (s, mut c) = operator().await?;
    let created = c.create_invitation(request("Contoso")).await?.into_inner();
    let inv = s.app.invitations();
    // The onboarding service's hook: the capability check, then redemption.
    inv.verify_token(&created.token)?;
    let used = inv
        .redeem("admin@contoso.example", &created.token, "ob-1")
        .await?;
    assert_eq!(used.onboarding_id.as_deref(), Some("ob-1"));
    redeem_refused(&s, &created.token, "already been used").await?;
    let got = c
        .get_invitation(by_token(&created.token))
        .await?
        .into_inner();
    assert_eq!(state(&got), pb::InvitationState::Used);
    assert_eq!(got.onboarding_id, "ob-1");
    assert!(got.used_at.is_some());
    // A used invitation can be revoked (its token then unlocks its onboarding no more), once.
    let revoked = revoke(&mut c, &got.id, "customer left").await?;
    assert_eq!(revoked.onboarding_id, "ob-1");
    revoke_refused(&mut c, &got.id).await?;
    s.stop().await
}

#[tokio::test]
async fn invitations_expire() -> Result<()> {
    let (s, mut c) = operator().await?;
    let mut req = request("Contoso");
    req.valid_for = Some(prost_types::Duration {
        seconds: 1,
        nanos: 0,
    });
    let created = c.create_invitation(req).await?.into_inner();
    assert_eq!(
        state(created.invitation.as_ref().context("inv")?),
        pb::InvitationState::Pending
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let got = c
        .get_invitation(by_token(&created.token))
        .await?
        .into_inner();
    assert_eq!(state(&got), pb::InvitationState::Expired);
    let expired = c
        .list_invitations(pb::ListInvitationsRequest {
            state: pb::InvitationState::Expired as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(expired.invitations.len(), 1);
    redeem_refused(&s, &created.token, "expired").await?;
    revoke_refused(&mut c, &got.id).await?;
    s.stop().await
}

#[tokio::test]
async fn forged_and_unknown_tokens_are_rejected() -> Result<()> {
    let (s, mut c) = operator().await?;
    let created = c.create_invitation(request("Contoso")).await?.into_inner();

    // Right length, wrong tag: refused before lookup.
    let forged = URL_SAFE_NO_PAD.encode([7u8; 48]);
    // The genuine token with one bit of its random part flipped.
    let mut raw = URL_SAFE_NO_PAD.decode(&created.token)?;
    raw[0] ^= 1;
    let tampered = URL_SAFE_NO_PAD.encode(&raw);
    for bad in [
        forged.as_str(),
        tampered.as_str(),
        "short",
        "",
        "!!!not base64!!!",
    ] {
        let e = c
            .get_invitation(by_token(bad))
            .await
            .err()
            .context("accepted")?;
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert_eq!(bad_fields(&e), ["token"]);
        assert!(!e.message().contains(&created.token));
        assert!(s.app.invitations().verify_token(bad).is_err());
    }
    // A genuine token from another server (another key) is forged here too.
    let other = TestServer::start().await?;
    let theirs = other
        .invitations(Some(OPERATOR))
        .await?
        .create_invitation(request("Elsewhere"))
        .await?
        .into_inner();
    c.get_invitation(by_token(&theirs.token))
        .await
        .refused(Code::InvalidArgument, &[])?;

    c.get_invitation(by_id("0190b3d2-0000-7000-8000-0000000000a1"))
        .await
        .refused(Code::NotFound, &[])?;
    let e = c
        .get_invitation(pb::GetInvitationRequest { key: None })
        .await
        .err()
        .context("ok")?;
    assert_eq!(bad_fields(&e), ["key"]);
    let e = c.get_invitation(by_id("")).await.err().context("ok")?;
    assert_eq!(bad_fields(&e), ["id"]);
    other.stop().await?;
    s.stop().await
}

#[tokio::test]
async fn invalid_requests_name_every_bad_field() -> Result<()> {
    let (s, mut c) = operator().await?;
    let e = c
        .create_invitation(pb::CreateInvitationRequest {
            admin_upn: "not-an-upn".into(),
            valid_for: Some(prost_types::Duration {
                seconds: 31 * 24 * 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .err()
        .context("accepted")?;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        bad_fields(&e),
        [
            "customer",
            "service_id",
            "profile",
            "admin_upn",
            "valid_for"
        ]
    );
    // One bad field each: the field, and what the message also says (if checked).
    let one_bad: [(Edit, &str, Option<&str>); 14] = [
        // 201 characters once trimmed ("C C … C").
        (|r| r.customer = " C".repeat(101), "customer", Some("200")),
        (
            |r| {
                r.valid_for = Some(prost_types::Duration {
                    seconds: -5,
                    nanos: 0,
                })
            },
            "valid_for",
            None,
        ),
        // Not a well-formed duration: nanos are below one second.
        (
            |r| {
                r.valid_for = Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 1_000_000_000,
                })
            },
            "valid_for",
            Some("nanos"),
        ),
        (
            |r| r.profile = "no-such-profile".into(),
            "profile",
            Some("direct-routing"),
        ),
        (
            |r| r.platform_version = "eight".into(),
            "platform_version",
            None,
        ),
        // What reaches the email or Entra: visible characters in NFKC form.
        (
            |r| r.customer = "Contoso\u{202E}moc.evil".into(),
            "customer",
            Some("U+202E"),
        ),
        (
            |r| r.provider_name = "Fabrikam\u{200B}".into(),
            "provider_name",
            Some("U+200B"),
        ),
        (
            |r| r.platform_server_name = "ＬＰ1".into(),
            "platform_server_name",
            Some("NFKC"),
        ),
        // The rule every Credentials call checks a service id by: an invitation never takes
        // an id its service's secrets and rotations would later be refused for.
        (
            |r| r.service_id = "sbc/eu-1".into(),
            "service_id",
            Some("'/'"),
        ),
        (
            |r| r.service_id = "é".repeat(65),
            "service_id",
            Some("128 bytes"),
        ),
        // An admin UPN SignIn could never match.
        (
            |r| r.admin_upn = "a@".into(),
            "admin_upn",
            Some("user@domain"),
        ),
        (
            |r| r.admin_upn = "ad min@contoso.example".into(),
            "admin_upn",
            Some("no blanks"),
        ),
        (
            |r| r.admin_upn = "adm\u{7}in@contoso.example".into(),
            "admin_upn",
            Some("U+0007"),
        ),
        (
            |r| r.admin_upn = "admin\u{200b}@contoso.example".into(),
            "admin_upn",
            Some("U+200B"),
        ),
    ];
    for (edit, field, says) in one_bad {
        let mut req = request("Contoso");
        edit(&mut req);
        let e = c.create_invitation(req).await.err().context("accepted")?;
        assert_eq!(bad_fields(&e), [field]);
        if let Some(says) = says {
            assert!(e.message().contains(says), "{e:?}");
        }
    }
    // Every violation at once: a malformed duration does not hide the others (it was checked
    // on its own first), nor does a refused profile hide a malformed version.
    for nanos in [0, -1, 1_000_000_000] {
        let e = c
            .create_invitation(pb::CreateInvitationRequest {
                service_id: "   ".into(),
                valid_for: Some(prost_types::Duration { seconds: -1, nanos }),
                ..request("")
            })
            .await
            .err()
            .context("accepted")?;
        assert_eq!(
            bad_fields(&e),
            ["customer", "service_id", "valid_for"],
            "{e:?}"
        );
    }
    for profile in ["", "no-such-profile"] {
        let mut req = request("Contoso");
        (req.profile, req.platform_version) = (profile.into(), "banana".into());
        let e = c.create_invitation(req).await.err().context("accepted")?;
        assert_eq!(bad_fields(&e), ["profile", "platform_version"], "{e:?}");
    }
    let e = c
        .list_invitations(pb::ListInvitationsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .err()
        .context("accepted")?;
    assert_eq!(bad_fields(&e), ["page_token"]);
    // Nothing was created or audited by the refused calls.
    assert_eq!(s.app.audit().size(), 0);
    s.stop().await
}

/// Surrounding blanks of the expected admin, the service id and the customer (measured as
/// stored: 200 characters) are not stored: SignIn compares the admin with the trimmed UPN.
#[tokio::test]
async fn the_expected_admin_and_service_are_stored_trimmed() -> Result<()> {
    let (s, mut c) = operator().await?;
    let mut padded = request(&format!("  {}  ", "C".repeat(200)));
    padded.admin_upn = "  admin@contoso.example ".into();
    padded.service_id = " svc-42 ".into();
    // Blank names are "not given" (the configured ones), as empty ones are.
    padded.provider_name = "   ".into();
    padded.platform_server_name = " LP-1 ".into();
    let created = c.create_invitation(padded).await?.into_inner();
    let inv = created.invitation.context("invitation")?;
    assert_eq!(
        (inv.admin_upn.as_str(), inv.service_id.as_str()),
        ("admin@contoso.example", "svc-42")
    );
    assert_eq!(inv.customer, "C".repeat(200));
    let plain = c.create_invitation(request("Contoso")).await?.into_inner();
    let configured = plain.invitation.context("invitation")?.provider_name;
    assert!(!configured.trim().is_empty());
    assert_eq!(
        (
            inv.provider_name.as_str(),
            inv.platform_server_name.as_str()
        ),
        (configured.as_str(), "LP-1")
    );
    s.stop().await
}

#[tokio::test]
async fn nothing_is_created_when_the_audit_log_cannot_record_it() -> Result<()> {
    let (s, mut c) = operator().await?;
    let kept = c.create_invitation(request("Contoso")).await?.into_inner();
    // Stop the log's writer: appends now fail, so changes must be refused (fail closed).
    s.app.close();
    c.create_invitation(request("Fabrikam"))
        .await
        .refused(Code::Unavailable, &[])?;
    c.revoke_invitation(revocation(
        kept.invitation.as_ref().map_or("", |i| i.id.as_str()),
        "",
    ))
    .await
    .refused(Code::Unavailable, &[])?;
    let all = c
        .list_invitations(pb::ListInvitationsRequest::default())
        .await?
        .into_inner();
    assert_eq!(all.invitations.len(), 1);
    assert_eq!(state(&all.invitations[0]), pb::InvitationState::Pending);
    s.stop().await
}

#[tokio::test]
async fn invitations_name_a_profile_from_the_configured_profiles_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let profiles = dir.path().join("profiles.toml");
    std::fs::write(
        &profiles,
        r#"version = 7
[[profile]]
name = "call-quality-only"
description = "QOE only"
graph_permissions = ["CallRecords.Read.All"]
teams_admin_api_permissions = []
directory_roles = []
"#,
    )?;
    let s = TestServer::start_with(|b| Ok(b.profiles_path(&profiles))).await?;
    assert_eq!(s.app.profiles().version, 7);
    let mut c = s.invitations(Some(OPERATOR)).await?;
    let mut ok = request("Contoso");
    ok.profile = "call-quality-only".into();
    c.create_invitation(ok).await?;
    // The shipped profiles are replaced, not merged.
    let e = c
        .create_invitation(request("Contoso"))
        .await
        .err()
        .context("accepted a profile the file does not have")?;
    assert_eq!(bad_fields(&e), ["profile"]);
    s.stop().await?;

    // A broken profiles file stops the server from starting, naming the file.
    let dir = tempfile::tempdir()?;
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "version = \"x\"\n")?;
    let err = match TestServer::start_with(|b| Ok(b.profiles_path(&broken))).await {
        Ok(_) => anyhow::bail!("a broken profiles file was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("broken.toml"), "{err}");
    Ok(())
}
