//! The app-name rules as the admin types: each broken rule is named by the server's check and
//! marked in the list; a name another onboarding of the service holds is refused on submit.

use anyhow::{Result, ensure};
use testkit::sim::users;

use crate::Wiz;

#[tokio::test]
async fn a_name_breaking_each_rule_is_told_which_one() -> Result<()> {
    let w = Wiz::start(Some("names")).await?;
    w.env.onboarded("direct-routing", "Taken1").await?;
    let token = w.invite().await?;
    w.open(&token).await?;
    w.sign_in_as(users::GLOBAL_ADMIN).await?;
    w.chrome.click("btn-next").await?;
    w.chrome.wait_screen("s-name").await?;
    let cases = [
        ("ab", "length", "3"),
        ("abcdefghijklmnop", "length", "15"),
        ("sbc/one", "forbidden_character", "/"),
        ("sbc:one", "forbidden_character", ":"),
        ("sbc.one", "dot", "dot"),
        ("sbc one", "blank", "blank"),
        ("AUDIT", "reserved", "audit"),
        ("sbc\u{200B}one", "invisible", ""),
    ];
    for (name, rule, words) in cases {
        w.chrome.type_into("app-name", name).await?;
        let check = format!(
            "document.querySelector('#name-rules li.bad') && \
             document.querySelector('#name-rules li.bad').dataset.rule === '{rule}'"
        );
        w.chrome
            .wait_js(&check, &format!("rule {rule} for {name:?}"))
            .await?;
        let msg = w.chrome.text("#name-msg").await?;
        ensure!(
            msg.to_lowercase().contains(&words.to_lowercase()),
            "{name:?}: {msg}"
        );
        ensure!(
            w.chrome.disabled("btn-provision").await?,
            "{name:?} cannot be submitted"
        );
        let invalid = w
            .chrome
            .js("return document.getElementById('app-name').getAttribute('aria-invalid')")
            .await?;
        ensure!(invalid.as_str() == Some("true"));
    }
    w.shoot("05d-name-invisible-character").await?;
    // A name breaking two rules has both marked and both said, not only the first.
    w.chrome.type_into("app-name", "my app.").await?;
    w.chrome
        .wait_js(
            "[...document.querySelectorAll('#name-rules li.bad')].map(li => li.dataset.rule) \
             .join(' ') === 'dot blank'",
            "the dot and the blank rule both marked",
        )
        .await?;
    let msg = w.chrome.text("#name-msg").await?;
    ensure!(msg.contains("dot") && msg.contains("blanks"), "{msg}");
    w.shoot("05d-name-two-rules").await?;
    // Taken by another onboarding of this tenant: said as the admin types (Plan refuses it),
    // the rule marked, nothing can be started.
    w.chrome.type_into("app-name", "taken1").await?;
    w.chrome
        .wait_js(
            "document.getElementById('name-msg').textContent.length > 0 && \
             document.querySelector('#name-rules li.bad') && \
             document.querySelector('#name-rules li.bad').dataset.rule === 'not_unique'",
            "the uniqueness error",
        )
        .await?;
    let msg = w.chrome.text("#name-msg").await?;
    ensure!(
        msg.contains("“taken1” is already used") && !msg.contains("onboarding "),
        "{msg}"
    );
    ensure!(w.chrome.disabled("btn-provision").await?, "startable");
    w.shoot("05e-name-taken").await?;
    w.chrome.close().await
}
