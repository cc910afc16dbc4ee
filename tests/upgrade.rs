//! Upgrades: a data directory written by release 0.1 (`testdata/release-0.1`, made by that
//! release's `onboard demo`) opens with this build. The audit log passes the full start-up
//! check and keeps growing consistently from the 0.1 checkpoint; every stored entry, of either
//! schema version, reads back through the one typed definition; the onboarding record, its
//! sealed secret, its progress events, the invitation, the admin session and the sealing key
//! 0.1 stored stay readable, before and after the records' migration; day-two import
//! takes the registration over. A second directory 0.1 wrote (`testdata/release-0.1-records`)
//! holds every other kind of record 0.1 stored; each reads back as 0.1's manifest says.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use onboard_core::audit::{Action, AuditEntry, Phase, SCHEMA_VERSION, TargetKind};
use onboard_core::provisioned::Provisioned;
use onboard_server::{App, Config};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use testkit::config::ServerConfigBuilder;
use testkit::copy_dir;

const ORIGIN: &str = "onboard.demo.invalid/audit";

/// The demo's data directory (`testdata/release-0.1`).
fn fixture() -> PathBuf {
    fixture_named("release-0.1")
}

fn fixture_named(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// A server configuration over `data` with the fixture's signing key. Entra is an emulator that
/// knows nothing of 0.1's tenant: nothing here may need Microsoft, and what tries (day-two
/// import probes whether the app rotates itself) is refused at once.
fn config(data: &Path, fixture: &Path, sim: &entra_sim::Sim) -> Result<Config> {
    let dir = data.parent().context("data has a parent")?;
    // The server refuses keys others may read; git checks the fixture's out 0644.
    let key = dir.join("audit.key");
    testkit::keys::write_key_file(&key, &std::fs::read(fixture.join("audit.key"))?)?;
    ServerConfigBuilder::new(dir)?
        .data_dir(data)
        .signing_key(&key)
        .raw("audit", "origin", toml::Value::String(ORIGIN.into()))
        .entra_sim(sim)?
        .token_app("00000000-0000-0000-0000-0000000000aa")
        .activation_base_url("https://wizard.demo.invalid/activate")
        .without_tokens()
        .build()
}

/// A copy of `fixture`'s data directory under `dir`, opened with this build; the emulator its
/// configuration names (keep it while the app is used) and the copy's path.
async fn open_copy(fixture: &Path, dir: &Path) -> Result<(App, entra_sim::Sim, PathBuf)> {
    let data = dir.join("data");
    copy_dir(&fixture.join("data"), &data)?;
    let sim = entra_sim::Sim::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        entra_sim::SimConfig::default(),
    )
    .await?;
    let cfg = config(&data, fixture, &sim)?;
    let app = tokio::task::spawn_blocking(move || App::open(cfg)).await??;
    Ok((app, sim, data))
}

/// Checks the `size` entries release 0.1 wrote: each of schema version 1, valid under the
/// published version 1 schema and read through the typed definition with 0.1's names mapped.
/// Their actions, in log order.
fn release_0_1_entries(app: &App, size: u64) -> Result<Vec<Action>> {
    let found = app.audit().size();
    ensure!(
        found == size,
        "the 0.1 log has {size} entries, found {found}"
    );
    testkit::audit::check_stored_schema(&testkit::audit::entries(app.audit())?)?;
    app.audit()
        .entries(0, size)
        .map(|e| {
            let (seq, leaf) = e?;
            let stored = AuditEntry::from_stored(&leaf)
                .with_context(|| format!("entry {seq}: {}", String::from_utf8_lossy(&leaf)))?;
            ensure!(stored.v == 1 && stored.seq == seq);
            Ok(stored.entry.action)
        })
        .collect()
}

fn onboard(args: &[&str]) -> Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(args)
        .output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "onboard {args:?} failed:\n{text}");
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_0_1_data_directory_opens_verifies_and_keeps_growing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let old_head = std::fs::read(fixture().join("data/audit/audit-head.note"))?;
    let (app, _sim, data) = open_copy(&fixture(), dir.path()).await?;
    let size_before = 29;
    release_0_1_entries(&app, size_before)?;

    // The onboarding 0.1 completed, and its secret sealed under the key 0.1 generated.
    let done = app.engine().completed()?;
    ensure!(done.len() == 1, "{done:?}");
    let o = &done[0];
    ensure!(
        o.secret.value.expose_secret().len() >= 30,
        "the secret opens"
    );
    let id = o.onboarding_id.clone();
    let rec = app.engine().get(&id)?.context("the onboarding record")?;
    ensure!(rec.app_name.starts_with("LP-Demo-"), "{rec:?}");
    // The invitation it came from.
    let (invitations, _) = app.invitations().list(None, 10, None)?;
    ensure!(invitations.len() == 1 && invitations[0].onboarding_id.as_deref() == Some(id.as_str()));
    // The other kinds of record 0.1 stored: the run's progress events and the tenant's day-two
    // admin session (read again after the migration below).
    let other_records = |when: &str| -> Result<()> {
        let events = app.engine().events(&id)?;
        let numbered = events
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as u64 + 1 && e.onboarding_id == id);
        ensure!(
            events.len() > 10
                && numbered
                && matches!(
                    events.last().map(|e| &e.kind),
                    Some(provision::EventKind::Completed(_))
                ),
            "{when}: the progress events: {events:?}"
        );
        let session = app
            .credentials()
            .admin_session(&o.tenant_id)?
            .with_context(|| format!("{when}: the admin session"))?;
        ensure!(
            session.upn.starts_with("globaladmin@"),
            "{when}: {session:?}"
        );
        Ok(())
    };
    other_records("as 0.1 stored them")?;

    // Day two takes the registration over (its secret re-sealed for the registry).
    let imported = app.credentials().import_provisioned(app.engine()).await?;
    ensure!(imported == 1);
    let view = app.credentials().find(&o.client_id)?.context("managed")?;
    ensure!(view.services == [o.service_id.clone()], "{view:?}");

    // 0.1's state records carry no MAC: the first start of this release gives each one, in an
    // audited step, once; then a record without a MAC is refused like a corrupted one.
    let before_migration = app.audit().size();
    let sealed = onboard_server::migrate_records(&app).await?;
    ensure!(sealed > 0, "nothing migrated");
    ensure!(app.audit().size() == before_migration + 2);
    let phases: Vec<Phase> = (before_migration..before_migration + 2)
        .map(|seq| {
            let e = AuditEntry::from_stored(&app.audit().entry(seq)?).context("entry")?;
            ensure!(e.entry.action == Action::StoreMigrate, "{e:?}");
            Ok(e.entry.phase)
        })
        .collect::<Result<_>>()?;
    ensure!(phases == [Phase::Intent, Phase::Succeeded], "{phases:?}");
    // Both entries as auditors read them: against the published schema.
    let migration = (before_migration..before_migration + 2)
        .map(|seq| Ok(serde_json::from_slice(&app.audit().entry(seq)?)?))
        .collect::<Result<Vec<serde_json::Value>>>()?;
    testkit::audit::check_schema(&migration)?;
    ensure!(
        onboard_server::migrate_records(&app).await? == 0,
        "migrated twice"
    );
    ensure!(app.engine().get(&id)?.is_some());
    ensure!(app.invitations().list(None, 10, None)?.0.len() == 1);
    other_records("after the migration")?;
    let tree = app.state_db().open_tree("provision")?;
    let key = format!("o/{id}");
    let stored = tree.get(&key)?.context("record")?;
    tree.insert(&key, &stored[33..])?;
    ensure!(
        app.engine().get(&id).is_err(),
        "a record without its MAC was used"
    );
    let mut flipped = stored.to_vec();
    let last = flipped.len() - 2;
    flipped[last] ^= 1;
    tree.insert(&key, flipped)?;
    ensure!(
        app.engine().get(&id).is_err(),
        "a corrupted record was used"
    );
    tree.insert(&key, stored)?;
    ensure!(app.engine().get(&id)?.is_some());
    let size_before = app.audit().size();

    // The log grows with entries of the current schema version.
    let created = app
        .invitations()
        .create(
            "upgrade-test",
            invitations::NewInvitation {
                customer: "Fabrikam".into(),
                service_id: "dr-upgrade".into(),
                profile: "direct-routing".into(),
                ..Default::default()
            },
        )
        .await?;
    let size_after = app.audit().size();
    ensure!(size_after == size_before + 2);
    let leaf = app.audit().entry(size_after - 1)?;
    let last = AuditEntry::from_stored(&leaf).context("new entry")?;
    ensure!(last.v == u64::from(SCHEMA_VERSION) && last.entry.action == Action::InvitationCreate);
    ensure!(last.entry.target.map(|t| t.kind) == Some(TargetKind::Invitation));
    ensure!(created.record.customer == "Fabrikam");
    let closing = app.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    drop(app);

    // The export verifies with 0.1's verifier key and extends 0.1's checkpoint.
    let saved = dir.path().join("release-0.1.checkpoint");
    std::fs::write(&saved, &old_head)?;
    let export = dir.path().join("export");
    let audit_dir = data.join("audit");
    onboard(&[
        "audit",
        "export",
        "--data-dir",
        audit_dir.to_str().context("path")?,
        "--out",
        export.to_str().context("path")?,
    ])?;
    let vkey = fixture().join("audit.vkey");
    let report = onboard(&[
        "audit",
        "verify",
        export.to_str().context("path")?,
        "--vkey",
        vkey.to_str().context("path")?,
        "--since-checkpoint",
        saved.to_str().context("path")?,
    ])?;
    ensure!(report.contains("33/33 entries valid"), "{report}");
    ensure!(!report.contains("INVALID"), "{report}");
    Ok(())
}

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
