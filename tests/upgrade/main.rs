//! Upgrades: a data directory written by release 0.1 (`testdata/release-0.1`, made by that
//! release's `onboard demo`) opens with this build. The audit log passes the full start-up
//! check and keeps growing consistently from the 0.1 checkpoint; every stored entry, of either
//! schema version, reads back through the one typed definition; the onboarding record, its
//! sealed secret, its progress events, the invitation, the admin session and the sealing key
//! 0.1 stored stay readable, before and after the records' migration; day-two import
//! takes the registration over. A second directory 0.1 wrote (`testdata/release-0.1-records`)
//! holds every other kind of record 0.1 stored; each reads back as 0.1's manifest says, and
//! served, the run 0.1 left in flight resumes and ends asking for a new sign-in (`records.rs`).

mod keys;
mod records;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use onboard_core::audit::{Action, AuditEntry, Phase, SCHEMA_VERSION, TargetKind};
use onboard_core::provisioned::Provisioned;
use onboard_server::{App, Config};
use secrecy::ExposeSecret;
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
    configured(data, fixture, sim)?.without_tokens().build()
}

/// [`config`]'s settings, before its callers are chosen.
fn configured(data: &Path, fixture: &Path, sim: &entra_sim::Sim) -> Result<ServerConfigBuilder> {
    let dir = data.parent().context("data has a parent")?;
    // The server refuses keys others may read; git checks the fixture's out 0644.
    let key = dir.join("audit.key");
    testkit::keys::write_key_file(&key, &std::fs::read(fixture.join("audit.key"))?)?;
    Ok(ServerConfigBuilder::new(dir)?
        .data_dir(data)
        .signing_key(&key)
        .raw("audit", "origin", toml::Value::String(ORIGIN.into()))
        .entra_sim(sim)?
        .token_app("00000000-0000-0000-0000-0000000000aa")
        .activation_base_url("https://wizard.demo.invalid/activate"))
}

/// A copy of `fixture`'s data directory under `dir`, opened with this build; the emulator its
/// configuration names (keep it while the app is used) and the copy's path.
async fn open_copy(fixture: &Path, dir: &Path) -> Result<(App, entra_sim::Sim, PathBuf)> {
    let (data, sim) = copy_with_emulator(fixture, dir).await?;
    let cfg = config(&data, fixture, &sim)?;
    let app = tokio::task::spawn_blocking(move || App::open(cfg)).await??;
    Ok((app, sim, data))
}

/// A copy of `fixture`'s data directory under `dir` (its path), and an emulator that knows
/// nothing of it.
async fn copy_with_emulator(fixture: &Path, dir: &Path) -> Result<(PathBuf, entra_sim::Sim)> {
    let data = dir.join("data");
    copy_dir(&fixture.join("data"), &data)?;
    let sim = entra_sim::Sim::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        entra_sim::SimConfig::default(),
    )
    .await?;
    Ok((data, sim))
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

/// `onboard audit export` of `data`'s log, then `onboard audit verify` of the export with
/// `fixture`'s verifier key against `checkpoint` (a note 0.1 signed), in `dir`: its report,
/// with nothing INVALID.
fn verify_since(data: &Path, fixture: &Path, checkpoint: &[u8], dir: &Path) -> Result<String> {
    let saved = dir.join("release-0.1.checkpoint");
    std::fs::write(&saved, checkpoint)?;
    let export = dir.join("export");
    let path = |p: &Path| p.to_str().map(str::to_owned).context("path");
    let audit = path(&data.join("audit"))?;
    onboard(&[
        "audit",
        "export",
        "--data-dir",
        &audit,
        "--out",
        &path(&export)?,
    ])?;
    let vkey = path(&fixture.join("audit.vkey"))?;
    let (export, saved) = (path(&export)?, path(&saved)?);
    let report = onboard(&[
        "audit",
        "verify",
        &export,
        "--vkey",
        &vkey,
        "--since-checkpoint",
        &saved,
    ])?;
    ensure!(!report.contains("INVALID"), "{report}");
    Ok(report)
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
    let report = verify_since(&data, &fixture(), &old_head, dir.path())?;
    ensure!(report.contains("33/33 entries valid"), "{report}");
    Ok(())
}
