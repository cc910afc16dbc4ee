//! Files on disk: the data directory is the service user's alone (directories 0700, files
//! 0600) whatever umask the server was started with, and a key file others can read is
//! refused with the fix in the message.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Result, ensure};
use onboard_server::App;
use testkit::server::{OPERATOR, ServerConfigBuilder, TestServer};

/// Every directory under `dir` and `dir` itself with its mode, and every file with its mode.
fn modes(dir: &Path, out: &mut Vec<(String, u32, bool)>) -> Result<()> {
    out.push((
        dir.display().to_string(),
        std::fs::metadata(dir)?.permissions().mode() & 0o777,
        true,
    ));
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            modes(&e.path(), out)?;
        } else {
            out.push((
                e.path().display().to_string(),
                e.metadata()?.permissions().mode() & 0o777,
                false,
            ));
        }
    }
    Ok(())
}

#[tokio::test]
async fn data_directories_are_0700_and_files_0600_whatever_the_umask() -> Result<()> {
    // A permissive umask, and a data directory made open before the server starts.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("state"))?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))?;
    let config = ServerConfigBuilder::new(dir.path())?.build()?;
    let server = TestServer::open(dir, config).await?;
    // Some writes, so sled has made its files.
    testkit::wizard::invite(server.channel().await?, "dr-1", "direct-routing", None).await?;
    let mut all = Vec::new();
    modes(&data, &mut all)?;
    let wrong: Vec<_> = all
        .iter()
        .filter(|(_, m, is_dir)| *m != if *is_dir { 0o700 } else { 0o600 })
        .collect();
    ensure!(all.len() > 4, "too few files: {all:?}");
    ensure!(wrong.is_empty(), "modes not 0700/0600: {wrong:?}");
    let _ = OPERATOR;
    server.stop().await
}

#[tokio::test]
async fn a_key_others_can_read_is_refused_with_the_fix() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfigBuilder::new(dir.path())?.build()?;
    let key = config.audit.signing_key.clone();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
    let err = App::open(config.clone()).expect_err("an open key must be refused");
    let text = err.to_string();
    ensure!(
        text.contains(&format!("chmod 600 {}", key.display()))
            && text.contains("audit.signing_key"),
        "{text}"
    );
    // Group-writable: refused too; owner-only: accepted.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o620))?;
    ensure!(App::open(config.clone()).is_err());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    let app = App::open(config)?;
    app.close();

    // The tiles API's TLS key too.
    let dir = tempfile::tempdir()?;
    let tls_key = dir.path().join("tiles-key.pem");
    std::fs::write(&tls_key, "-----BEGIN PRIVATE KEY-----\n")?;
    std::fs::set_permissions(&tls_key, std::fs::Permissions::from_mode(0o644))?;
    let at = |p: &std::path::Path| p.display().to_string().into();
    let config = ServerConfigBuilder::new(dir.path())?
        .audit_http_open("127.0.0.1:0")
        .raw("audit_http", "tls_cert", at(&tls_key))
        .raw("audit_http", "tls_key", at(&tls_key))
        .build()?;
    let text = App::open(config).expect_err("an open key").to_string();
    ensure!(
        text.contains(&format!("chmod 600 {}", tls_key.display()))
            && text.contains("audit_http.tls_key"),
        "{text}"
    );
    Ok(())
}

/// Keys left unset are generated into the state store, next to what they protect: the server
/// says so at every start (docs/operations.md, "Keys: backup and rotation"), and says nothing
/// of the kind when both are key files.
#[tokio::test]
async fn keys_kept_in_the_state_store_are_warned_of_at_every_start() -> Result<()> {
    for files in [false, true] {
        let dir = tempfile::tempdir()?;
        let mut builder = ServerConfigBuilder::new(dir.path())?;
        if files {
            for name in ["sealing.key", "token.key"] {
                let path = dir.path().join(name);
                std::fs::write(&path, [7u8; 32])?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            builder = builder
                .sealing_key(Some(&dir.path().join("sealing.key")))
                .token_key(&dir.path().join("token.key"));
        }
        let config = builder.build()?;
        let (logs, guard) = testkit::logs::capture("warn");
        App::open(config)?.close();
        drop(guard);
        let text = logs.text();
        for key in ["storage.sealing_key", "invitations.token_key"] {
            let warned = text.contains(&format!("{key} is not set"));
            ensure!(
                warned != files,
                "key files: {files}; {key} warned: {warned}: {text}"
            );
        }
    }
    Ok(())
}
