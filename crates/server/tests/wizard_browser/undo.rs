//! An undo Microsoft stops: the page says what stays in the tenant and offers "Try removing
//! again", which goes on where the undo stopped, to "Onboarding cancelled". The Cancel is of a
//! run Microsoft stopped first, whose page has no stream open: it follows the undo.

use anyhow::{Result, ensure};
use testkit::snapshot;

use super::Wiz;

#[tokio::test]
async fn an_undo_microsoft_stops_is_tried_again_from_the_page() -> Result<()> {
    let w = Wiz::start_slow(Some("undo-retry"), 3000).await?;
    let token = w.provisioning("SbcUndo", ".ok").await?;
    // Every Microsoft Graph call fails from now on, past the client's retries.
    // As Wiz::start_slow set them.
    let calm = entra_sim::Faults {
        latency_ms: 150,
        replication_lag_ms: 3000,
        ..testkit::sim::calm()
    };
    w.env.sim.set_faults(entra_sim::Faults {
        error_rate: 1.0,
        error_status: Some(500),
        max_faults_per_operation: None,
        ..calm.clone()
    });
    // The run stops first (its step gives up on Microsoft's 500s), so the Cancel below is
    // always of a stopped run: a Cancel racing the step's last retry would make this test
    // take one path or the other (CI once saw the run fail first). The page follows the
    // undo it starts.
    w.wait_shown("progress-failed", "the stopped run").await?;
    w.chrome.click("btn-cancel").await?;
    w.chrome.click("btn-cancel-yes").await?;
    w.wait_shown("undo-failed", "the stopped undo").await?;
    ensure!(w.chrome.focus().await? == "s-progress/h2/undo-failed-h");
    let heading = w.chrome.text("#progress-h").await?;
    ensure!(heading == "Cancelling stopped", "heading: {heading}");
    // Said once, in the box: the connection line does not repeat Microsoft's answer.
    let conn = w.chrome.text("#conn").await?;
    ensure!(conn.is_empty(), "{conn}");
    let box_text = w.chrome.text("#undo-failed").await?;
    ensure!(
        box_text.contains("stays in your tenant") && !box_text.contains("Sign in again"),
        "{box_text}"
    );
    let hidden = "return document.getElementById('progress-failed').hidden \
                  && document.getElementById('cancel-area').hidden";
    ensure!(
        w.chrome.js(hidden).await?.as_bool() == Some(true),
        "the provisioning failure or Cancel is offered for a stopped undo"
    );
    w.shoot("06e-undo-stopped").await?;
    ensure!(
        !snapshot::apps_named(&w.env.sim.snapshot(), "SbcUndo").is_empty(),
        "the app is still there while the undo stopped"
    );

    // Microsoft answers again: the same page removes the rest.
    w.env.sim.set_faults(calm);
    w.chrome.click("btn-undo-retry").await?;
    w.wait_shown("progress-cancelled", "the cancellation")
        .await?;
    w.shows_cancelled().await?;
    let text = w.chrome.text("#cancelled-text").await?;
    ensure!(text.starts_with("You cancelled it"), "{text}");
    ensure!(
        snapshot::apps_named(&w.env.sim.snapshot(), "SbcUndo").is_empty(),
        "the app outlived the cancellation"
    );
    w.check_exchanges(&token)?;
    w.chrome.close().await
}
