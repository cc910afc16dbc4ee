//! The second directory release 0.1 wrote (`testdata/release-0.1-records`): every kind of
//! record it stored reads back as 0.1's manifest says, and served, the run it left in flight
//! resumes and ends asking for a new sign-in.

use anyhow::{Context, Result, bail, ensure};
use onboard_core::audit::Action;
use onboard_core::provisioned::Provisioned;
use onboard_proto::v1 as pb;
use onboard_server::App;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use testkit::config::OPERATOR;
use testkit::server::TestServer;

use super::{
    configured, copy_with_emulator, fixture_named, open_copy, release_0_1_entries, verify_since,
};

/// Every kind of record release 0.1 could store reads back with this build, before and after
/// the records' migration: `testdata/release-0.1-records` was made by 0.1's own code (its
/// README says how), and `manifest.json`, written by the same 0.1 run, says what each record
/// holds. Onboardings in every state 0.1 leaves (completed, self-rotating, failed, cancelled,
/// running), invitations (used, pending, revoked, expired), day-two registrations (secrets for
/// two services, one rotation finished and one waiting out its overlap, a revoked secret, an
/// attached app, one stored under its hint), drift, the admin session and the onboarding links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_record_release_0_1_stored_reads_back() -> Result<()> {
    let fixture = fixture_named("release-0.1-records");
    let manifest: Value = serde_json::from_slice(&std::fs::read(fixture.join("manifest.json"))?)?;
    let dir = tempfile::tempdir()?;
    let (app, _sim, _) = open_copy(&fixture, dir.path()).await?;

    // The log, with the kinds of entry the demo never writes.
    let size = manifest["audit"]["size"].as_u64().context("size")?;
    let actions = release_0_1_entries(&app, size)?;
    for a in [
        Action::VerificationReport,
        Action::DriftDetected,
        Action::DriftList,
        Action::SecretRotate,
        Action::RegistrationAttach,
        Action::InvitationRevoke,
        Action::OnboardingCancel,
        Action::PasswordCredentialDelete,
    ] {
        ensure!(actions.contains(&a), "no {a:?} entry in the fixture");
    }

    records_as_manifest(&app, &manifest, "as 0.1 stored them")?;
    // 0.1 kept a cancelled onboarding's sign-in; served, this build forgets it (below).
    let cancelled = cancelled_onboarding(&manifest)?;
    ensure!(app.engine().admin_session(cancelled)?.is_some());
    let before_migration = app.audit().size();
    ensure!(
        onboard_server::migrate_records(&app).await? > 0,
        "nothing migrated"
    );
    ensure!(app.audit().size() == before_migration + 2);
    records_as_manifest(&app, &manifest, "after the migration")?;
    let closing = app.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    Ok(())
}

/// Checks every record `manifest` lists against what `app` reads.
fn records_as_manifest(app: &App, manifest: &Value, when: &str) -> Result<()> {
    let now_ms = onboard_core::time::now_ms();
    // Onboardings: state, ids, steps and events as 0.1 left them; completed ones' secrets open.
    for o in array(manifest, "onboardings")? {
        let id = str_of(o, "id")?;
        let got = app
            .engine()
            .get(id)?
            .with_context(|| format!("{when}: {id}"))?;
        let same = serde_json::to_value(got.status)? == o["status"]
            && got.app_name == str_of(o, "app_name")?
            && json!(got.client_id) == o["client_id"]
            && json!(got.app_object_id) == o["app_object_id"]
            && json!(got.sp_id) == o["sp_id"]
            && json!(got.secret_key_id) == o["secret_key_id"]
            && json!(got.steps_done) == o["steps_done"]
            && json!(got.error) == o["error"]
            && json!(app.engine().events(id)?.len()) == o["stored_events"];
        ensure!(same, "{when}: onboarding {id}: {got:?}\nmanifest: {o}");
    }
    let completed: Vec<String> = app
        .engine()
        .completed()?
        .iter()
        .map(|c| {
            ensure!(
                c.secret.value.expose_secret().len() >= 30,
                "{when}: a secret opens"
            );
            Ok(c.onboarding_id.clone())
        })
        .collect::<Result<_>>()?;
    let want: Vec<&str> = array(manifest, "onboardings")?
        .iter()
        .filter(|o| o["status"] == "completed")
        .map(|o| str_of(o, "id"))
        .collect::<Result<_>>()?;
    ensure!(
        completed.len() == want.len() && want.iter().all(|w| completed.contains(&w.to_string()))
    );
    // Invitations, in the state the time now gives them (the pending one expires 30 days
    // after the fixture was made), and the onboarding each was used for.
    for i in array(manifest, "invitations")? {
        let id = str_of(i, "id")?;
        let got = app.invitations().get(id)?;
        let expired = i["expires_at_ms"].as_i64().context("expiry")? <= now_ms;
        let want = match str_of(i, "state")? {
            "pending" if expired => "expired",
            state => state,
        };
        let state = format!("{:?}", got.state(now_ms)).to_lowercase();
        ensure!(
            state == want
                && json!(got.onboarding_id) == i["onboarding_id"]
                && got.customer == str_of(i, "customer")?
                && got.admin_upn == str_of(i, "admin_upn")?,
            "{when}: invitation {id}: {state} {got:?}\nmanifest: {i}"
        );
    }
    let links = app.state_db().open_tree("onboarding_invitations")?;
    for (onboarding, invitation) in manifest["onboarding_links"].as_object().context("links")? {
        let stored = links.get(onboarding)?.context("link")?;
        let value =
            app.record_mac()
                .open("onboarding_invitations", onboarding.as_bytes(), &stored)?;
        ensure!(
            json!(String::from_utf8_lossy(value)) == *invitation,
            "{when}: link {onboarding}"
        );
    }
    // Registrations: services and their current secrets, every secret held (opening), the
    // rotation waiting out its overlap; revoked and rotated-out secrets gone.
    for r in array(manifest, "registrations")? {
        let at =
            credentials::RegistrationRef::new(str_of(r, "tenant_id")?, str_of(r, "client_id")?);
        let reg = app.credentials().registration(&at)?;
        let got = serde_json::to_value(&reg)?;
        // Rotations in flight (a list in the manifest, a map by service in the record): their
        // service, id and stage.
        let rotations = |v: &Value| -> Vec<(Value, Value, Value)> {
            let mut all: Vec<_> = match v {
                Value::Array(a) => a.iter().collect(),
                Value::Object(m) => m.values().collect(),
                _ => Vec::new(),
            }
            .into_iter()
            .map(|x| (x["service_id"].clone(), x["id"].clone(), x["stage"].clone()))
            .collect();
            all.sort_by_key(|x| x.0.to_string());
            all
        };
        let same = got["id"] == r["id"]
            && got["current"] == r["current"]
            && got["source"] == r["source"]
            && got["auth_mode"] == r["auth_mode"]
            && got["app_object_id"] == r["app_object_id"]
            && rotations(&got["rotations"]) == rotations(&r["rotations_in_flight"]);
        ensure!(
            same,
            "{when}: registration {}: {got}\nmanifest: {r}",
            at.client_id
        );
        for s in array(r, "secrets")? {
            let key = str_of(s, "key")?;
            let (stored, value) = app
                .credentials()
                .secret(&at, key)?
                .with_context(|| format!("{when}: secret {key}"))?;
            ensure!(
                stored.hint == str_of(s, "hint")?
                    && value.expose_secret().starts_with(&stored.hint)
            );
        }
        ensure!(
            reg.secrets.len() == array(r, "secrets")?.len(),
            "{when}: {got}"
        );
    }
    for gone in [
        "revoked_secret_key_ids",
        "removed_by_finished_rotation_key_ids",
    ] {
        for key in array(manifest, gone)? {
            let key = key.as_str().context("key id")?;
            let held = app
                .credentials()
                .list()?
                .iter()
                .any(|v| v.secrets.iter().any(|s| s.key_id == key));
            ensure!(!held, "{when}: {gone} {key} is held");
        }
    }
    // Drift, and the tenant's admin session.
    let drift: Vec<(String, String)> = app
        .drift()
        .open_drift(None)?
        .into_iter()
        .map(|d| (d.client_id, d.key))
        .collect();
    for d in array(manifest, "drift")? {
        let item = (
            str_of(d, "client_id")?.to_owned(),
            str_of(d, "key")?.to_owned(),
        );
        ensure!(
            drift.contains(&item),
            "{when}: drift {item:?} not in {drift:?}"
        );
    }
    ensure!(drift.len() == array(manifest, "drift")?.len());
    for a in array(manifest, "admin_sessions")? {
        let session = app
            .credentials()
            .admin_session(str_of(a, "tenant_id")?)?
            .context("session")?;
        ensure!(session.upn == str_of(a, "upn")?, "{when}: {session:?}");
    }
    Ok(())
}

/// The id of the onboarding the manifest lists as cancelled.
fn cancelled_onboarding(manifest: &Value) -> Result<&str> {
    let o = array(manifest, "onboardings")?
        .iter()
        .find(|o| o["status"] == "cancelled")
        .context("the fixture's cancelled onboarding")?;
    str_of(o, "id")
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    v[key]
        .as_array()
        .with_context(|| format!("manifest: no array {key}"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v[key]
        .as_str()
        .with_context(|| format!("manifest: no string {key} in {v}"))
}

/// Serving the directory 0.1 left with a run in flight (`onboard serve` after an upgrade): the
/// run resumes and ends at its first Graph call, which refuses the sign-in it held (0.1 kept no
/// refresh token, its access token expired long ago, and this emulator never issued it):
/// failed, audited, its streams ended with the cause SIGN_IN_AGAIN, which sends the customer's
/// admin to sign in again with the same invitation. A second start leaves it failed, and the
/// log keeps extending 0.1's checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_release_0_1_left_running_resumes_and_asks_for_a_new_sign_in() -> Result<()> {
    let fixture = fixture_named("release-0.1-records");
    let manifest: Value = serde_json::from_slice(&std::fs::read(fixture.join("manifest.json"))?)?;
    let running = array(&manifest, "onboardings")?
        .iter()
        .find(|o| o["status"] == "running")
        .context("the fixture's running onboarding")?;
    let id = str_of(running, "id")?;
    let stored = running["stored_events"].as_u64().context("stored_events")?;
    let size = manifest["audit"]["size"].as_u64().context("size")?;
    let dir = tempfile::tempdir()?;
    let (data, sim) = copy_with_emulator(&fixture, dir.path()).await?;
    let cfg = configured(&data, &fixture, &sim)?.build()?;
    let server = TestServer::open(tempfile::tempdir()?, cfg).await?;

    // Watch, as the platform would after the upgrade: 0.1's events, then the run's end.
    let events = testkit::wizard::drain(
        server
            .onboarding(Some(OPERATOR))
            .await?
            .watch(pb::WatchRequest {
                onboarding_id: id.into(),
                from_event: 1,
                ..Default::default()
            })
            .await?
            .into_inner(),
    )
    .await?;
    ensure!(events.len() as u64 == stored + 1, "{events:#?}");
    let Some(pb::provision_event::Event::Failed(failed)) = &events[stored as usize].event else {
        bail!("the resumed run did not fail: {events:#?}");
    };
    ensure!(
        failed.cause() == pb::FailureCause::SignInAgain && failed.reason.contains("401"),
        "{failed:?}"
    );
    let rec = server.app.engine().get(id)?.context("the record")?;
    ensure!(rec.status == provision::Status::Failed, "{rec:?}");
    // The start forgot the sign-in 0.1 kept for an onboarding it had cancelled.
    let cancelled = cancelled_onboarding(&manifest)?;
    ensure!(server.app.engine().admin_session(cancelled)?.is_none());

    // On the log: the records' migration, then the run's end (the Watch's own entry lands
    // before or after it), each of the current schema.
    let added = server.raw_entries()?.split_off(usize::try_from(size)?);
    testkit::audit::check_schema(&added)?;
    let (watched, added): (Vec<_>, Vec<_>) = added
        .into_iter()
        .partition(|e| e["action"] == "onboarding.watch");
    ensure!(
        watched.len() == 1 && watched[0]["onboarding_id"] == id,
        "{watched:#?}"
    );
    let seen: Vec<(&str, &str)> = added
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["phase"].as_str().unwrap_or(""),
            )
        })
        .collect();
    ensure!(
        seen == [
            ("store.migrate", "intent"),
            ("store.migrate", "succeeded"),
            ("onboarding.finish", "failed"),
        ],
        "{added:#?}"
    );
    ensure!(added[2]["onboarding_id"] == id && added[2]["actor"] == "system");

    // A second start: nothing to resume, nothing to migrate.
    let server = server.restart().await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    ensure!(server.app.engine().events(id)?.len() as u64 == stored + 1);
    let grown = server.app.audit().size();
    ensure!(
        grown == size + 4,
        "{:#?}",
        server.raw_entries()?.split_off(usize::try_from(size)?)
    );
    server.stop().await?;

    // The log extends the checkpoint 0.1 signed.
    let note = str_of(&manifest["audit"], "checkpoint_note")?;
    let report = verify_since(&data, &fixture, note.as_bytes(), dir.path())?;
    ensure!(
        report.contains(&format!("{grown}/{grown} entries valid")),
        "{report}"
    );
    Ok(())
}
