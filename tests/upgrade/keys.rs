//! Release 0.1 kept its sealing and invitation token keys in the state store (its example
//! configuration left both key files unset). `onboard keys export` writes them out unchanged;
//! with the configuration naming the files, the next start removes the stored copies
//! (`store.move_key`, audited), everything stays readable, and `onboard backup` works.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use onboard_core::provisioned::Provisioned;
use secrecy::ExposeSecret;
use testkit::server::TestServer;
use testkit::server_helpers::backup;

use super::{configured, copy_with_emulator, fixture_named};

/// `onboard keys export --config CONFIG ARGS…`: whether it succeeded, and what it said.
fn export(config: &Path, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(["keys", "export", "--config"])
        .arg(config)
        .args(args)
        .output()?;
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), said))
}

/// A generated key as the state store keeps it, if it does.
type Stored = Option<Vec<u8>>;

/// The generated keys the state store under `data` keeps (sealing, token), read directly.
fn stored_keys(data: &Path) -> Result<(Stored, Stored)> {
    let db = sled::open(data.join("state"))?;
    let meta = db.open_tree("meta")?;
    let get = |k: &str| -> Result<Option<Vec<u8>>> { Ok(meta.get(k)?.map(|v| v.to_vec())) };
    Ok((
        get("provision_sealing_key")?,
        get(invitations::TOKEN_KEY_META)?,
    ))
}

/// A key file `export` wrote: 64 hex digits and a newline, readable by its owner only.
fn key_file(path: &Path) -> Result<Vec<u8>> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "{} has mode {mode:o}", path.display());
    let text = std::fs::read_to_string(path)?;
    let hex = text.strip_suffix('\n').context("a line")?;
    ensure!(hex.len() == 64, "{text:?}");
    Ok(hex::decode(hex)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_0_1s_generated_keys_move_out_to_key_files_and_backups_work() -> Result<()> {
    let fixture = fixture_named("release-0.1-records");
    let dir = tempfile::tempdir()?;
    let (data, sim) = copy_with_emulator(&fixture, dir.path()).await?;
    let (sealing, token) = stored_keys(&data)?;
    let (sealing, token) = (
        sealing.context("0.1's sealing key")?,
        token.context("token")?,
    );
    let plain = configured(&data, &fixture, &sim)?;
    let config = plain.write(&dir.path().join("onboard.toml"))?;
    let keys = tempfile::tempdir()?;
    let (sealing_file, token_file) = (
        keys.path().join("sealing.key"),
        keys.path().join("token.key"),
    );
    let (s, t) = (sealing_file.to_string_lossy(), token_file.to_string_lossy());

    // Refused, saying why, with nothing written: a file inside the data directory, and a
    // store a running server holds.
    // (`..` through the data directory is inside it too.)
    let inside = data.join("sealing.key");
    let beside = data.strip_prefix(keys.path().parent().context("/tmp")?)?;
    let dotted = keys.path().join("..").join(beside).join("k.key");
    for file in [&inside, &dotted] {
        let (ok, said) = export(&config, &["--sealing-key", &file.to_string_lossy()])?;
        ensure!(!ok && said.contains("inside storage.data_dir"), "{said}");
    }
    // While the keys are in the store, a backup is refused: it would not carry them.
    let running = TestServer::open(tempfile::tempdir()?, plain.build()?).await?;
    let refused = backup(&running, "keys inside").await?.err();
    ensure!(
        refused
            .as_ref()
            .is_some_and(|e| e.message().contains("onboard keys export")),
        "{refused:?}"
    );
    let (ok, said) = export(&config, &["--sealing-key", &s])?;
    ensure!(!ok && said.contains("stop the server first"), "{said}");
    running.stop().await?;
    ensure!(!sealing_file.exists() && !inside.exists() && !dotted.exists());

    // Exported, unchanged (once the stopped server let go of the store); the value is not
    // printed; a second export does not overwrite the files.
    let said = testkit::wait::until(
        "the export",
        std::time::Duration::from_secs(10),
        async || {
            let (ok, said) = export(&config, &["--sealing-key", &s, "--token-key", &t])?;
            Ok(match ok {
                true => std::ops::ControlFlow::Break(said),
                false if said.contains("in use") => std::ops::ControlFlow::Continue(said),
                false => anyhow::bail!("{said}"),
            })
        },
    )
    .await?;
    ensure!(said.contains("under [storage]") && said.contains("under [invitations]"));
    ensure!(!said.contains(&hex::encode(&sealing)) && !said.contains(&hex::encode(&token)));
    ensure!(key_file(&sealing_file)? == sealing && key_file(&token_file)? == token);
    let (ok, said) = export(&config, &["--token-key", &t])?;
    ensure!(!ok && said.contains("File exists"), "{said}");

    // A sealing key file other than the store's is refused before anything is read.
    let other = keys.path().join("other.key");
    testkit::keys::write_key_file(&other, &[7u8; 32])?;
    let wrong = plain.clone().sealing_key(Some(&other)).build()?;
    let refused = onboard_server::App::open(wrong).err().context("opened")?;
    ensure!(
        refused
            .to_string()
            .contains("not the key this state store was sealed with"),
        "{refused}"
    );
    // So is a token key file other than the generated one: invitations would end, and the
    // only copy of the generated key would go.
    let wrong = plain
        .clone()
        .sealing_key(Some(&sealing_file))
        .token_key(&other)
        .build()?;
    let refused = onboard_server::App::open(wrong).err().context("opened")?;
    ensure!(
        refused
            .to_string()
            .contains("is not the invitation token key this state store generated"),
        "{refused}"
    );

    // Named in the configuration: the stored copies go, audited; what 0.1 sealed opens.
    let moved = plain
        .sealing_key(Some(&sealing_file))
        .token_key(&token_file);
    let server = TestServer::open(tempfile::tempdir()?, moved.build()?).await?;
    // (The start-up's work runs beside the listener: wait for its last entry.)
    let limit = std::time::Duration::from_secs(30);
    testkit::wait::until_true("the keys moved out", limit, async || {
        Ok(server.raw_entries()?.iter().any(|e| {
            e["action"] == "store.move_key"
                && e["key"] == "invitations.token_key"
                && e["phase"] == "succeeded"
        }))
    })
    .await?;
    let written = server.entries_with_action("store.move_key")?;
    let seen: Vec<_> = written
        .iter()
        .map(|e| (e["key"].clone(), e["phase"].clone(), e["file"].clone()))
        .collect();
    let wanted: Vec<_> = [("storage.sealing_key", &s), ("invitations.token_key", &t)]
        .into_iter()
        .flat_map(|(key, file)| {
            ["intent", "succeeded"].map(|phase| (key.into(), phase.into(), file.as_ref().into()))
        })
        .collect::<Vec<(serde_json::Value, serde_json::Value, serde_json::Value)>>();
    ensure!(seen == wanted, "{seen:?}");
    let done = server.app.engine().completed()?;
    ensure!(
        !done.is_empty()
            && done
                .iter()
                .all(|o| !o.secret.value.expose_secret().is_empty())
    );
    let archive = backup(&server, "keys moved out").await?;
    ensure!(matches!(archive, Ok(n) if n > 0), "{archive:?}");

    // Started again over a store without the copies: the key files are all it needs.
    let server = server.restart().await?;
    let data_dir = server.app.config().storage.data_dir.clone();
    server.stop().await?;
    ensure!(
        stored_keys(&data_dir)? == (None, None),
        "a copy stayed in the store"
    );
    Ok(())
}
