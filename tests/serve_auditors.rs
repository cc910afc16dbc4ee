//! `onboard serve` with everything auditors at scale need, run as a supervisor would: the live
//! tiles API (`[audit_http]`), publication to a directory through a `file://` target
//! (`[publish]`), and two `onboard witness` processes (`[witnessing]` + `[[witness]]`, quorum
//! 2). After an onboarding, `onboard audit verify <tiles API URL>` and `onboard audit verify
//! <publication dir> --witness … --witness-quorum 2` both succeed and print the same report as
//! the verification of a local export of the stopped server. A restart resumes publication,
//! and a data directory rolled back behind what the witnesses cosigned is refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use testkit::config::ServerConfigBuilder;
use testkit::copy_dir;
use testkit::keys::ORIGIN;
use testkit::onboard_binary;
use testkit::process::{Onboard, ServerFiles, log_tail};
use testkit::sim::calm;
use testkit::wizard::onboard_timed;

/// A loopback port nobody listens on right now (for `[audit_http] listen`, which the server
/// does not report on standard output).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The report lines after the first (which names where the log was read).
fn report(out: &str) -> Vec<String> {
    out.lines().skip(1).map(str::to_owned).collect()
}

/// The size line 2 of a checkpoint note says.
fn size_of(note: &str) -> Option<u64> {
    note.lines().nth(1)?.parse().ok()
}

/// Waits until the tiles API's checkpoint carries two cosignatures, has not changed for a
/// second, and the publication target holds the same note: everything the log signed has
/// been cosigned, served and published. Returns that note.
async fn settled(api: &str, published: &Path) -> Result<String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last: Option<(String, Instant)> = None;
    loop {
        ensure!(Instant::now() < deadline, "not settled: {last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(r) = client.get(format!("{api}checkpoint")).send().await else {
            continue;
        };
        if !r.status().is_success() {
            continue;
        }
        let note = r.text().await?;
        let cosignatures = note.lines().filter(|l| l.starts_with("— w")).count();
        let on_disk = std::fs::read_to_string(published.join("checkpoint")).unwrap_or_default();
        match &last {
            Some((n, since)) if *n == note => {
                if cosignatures == 2 && on_disk == note && since.elapsed() > Duration::from_secs(1)
                {
                    return Ok(note);
                }
            }
            _ => last = Some((note, Instant::now())),
        }
    }
}

/// Runs `onboard ARGS` and returns its standard output; fails with both outputs unless it
/// exits 0.
async fn run_ok(onboard: &Onboard, args: &[&str]) -> Result<String> {
    let run = onboard.run(args, &[], None).await?;
    ensure!(run.code == Some(0), "onboard {args:?}:\n{run}");
    Ok(run.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiles_api_publication_and_witnesses_agree_with_a_local_export() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let onboard = onboard_binary!();
    let dir = tempfile::tempdir()?;
    let builder = ServerConfigBuilder::new(dir.path())?.entra_sim(&sim)?;
    let vkey = builder.vkey().context("log vkey")?.to_owned();
    let w1 = onboard
        .witness(&dir.path().join("w1"), "w1.test/witness", ORIGIN, &vkey)
        .await?;
    let w2 = onboard
        .witness(&dir.path().join("w2"), "w2.test/witness", ORIGIN, &vkey)
        .await?;
    let port = free_port()?;
    let api = format!("http://127.0.0.1:{port}/");
    let published: PathBuf = dir.path().join("published");
    let target = format!("file://{}", published.display());
    let store = dir.path().join("witness-store").join("cosignatures.json");
    std::fs::create_dir_all(store.parent().context("store dir")?)?;
    let builder = builder
        .telemetry("text")
        .audit_http_open(&format!("127.0.0.1:{port}"))
        .publish(&target)
        .witnessing(&store, 50, 2)
        .witness(&w1.url(), &w1.vkey, 2_000)
        .witness(&w2.url(), &w2.vkey, 2_000);
    let config = builder.write(&dir.path().join("onboard.toml"))?;
    let files = ServerFiles {
        log: dir.path().join("server.log"),
        dir,
        config,
        vkey: vkey.clone(),
    };
    let data = files.data_dir();

    // First run: one onboarding, then a clean stop; keep a copy of that data directory.
    let server = onboard.serve(&files).await?;
    onboard_timed(server.channel().await?, &sim, "dr-1", "Auditors-1")
        .await
        .with_context(|| server.log_tail())?;
    let first = settled(&api, &published).await?;
    // The publication and witness lags as /metrics shows them: none once settled.
    let size = size_of(&first).context("first size")? as f64;
    let addr = server.metrics.context("no metrics listener")?;
    let what =
        format!("/metrics to show the settled checkpoint's {size} entries published and witnessed");
    testkit::wait::until(&what, Duration::from_secs(10), async || {
        let m = testkit::metrics::scrape_parsed(addr).await?;
        let (p, w) = (
            m.sum("onboard_audit_published_entries", &[]),
            m.sum("onboard_audit_witnessed_entries", &[]),
        );
        Ok(testkit::wait::settled(
            p >= size && w >= size,
            (),
            (("published", p), ("witnessed", w)),
        ))
    })
    .await?;
    server.terminate()?;
    let old = files.dir.path().join("data-old");
    copy_dir(&data, &old)?;

    // Second run: publication resumes from the target, the witnesses continue.
    let server = onboard.serve(&files).await?;
    onboard_timed(server.channel().await?, &sim, "dr-2", "Auditors-2")
        .await
        .with_context(|| server.log_tail())?;
    let note = settled(&api, &published).await?;
    ensure!(size_of(&note) > size_of(&first), "{first}\n{note}");

    let by_url = run_ok(&onboard, &["audit", "verify", &api, "--vkey", &vkey]).await?;
    let pub_dir = published.display().to_string();
    let by_target = run_ok(
        &onboard,
        &[
            "audit",
            "verify",
            &pub_dir,
            "--vkey",
            &vkey,
            "--witness",
            &w1.vkey,
            "--witness",
            &w2.vkey,
            "--witness-quorum",
            "2",
        ],
    )
    .await?;
    ensure!(
        by_target.contains("2/2 trusted witnesses cosigned the checkpoint (quorum 2)"),
        "{by_target}"
    );
    server.terminate()?;
    let log = std::fs::read_to_string(&files.log)?;
    ensure!(
        !log.contains("audit publication stopped") && !log.contains("tiles API stopped"),
        "{}",
        log_tail(&files.log)
    );

    // The stopped server's own export verifies to the same report.
    let export = files.dir.path().join("export").display().to_string();
    let audit = data.join("audit").display().to_string();
    run_ok(
        &onboard,
        &["audit", "export", "--data-dir", &audit, "--out", &export],
    )
    .await?;
    let local = run_ok(&onboard, &["audit", "verify", &export, "--vkey", &vkey]).await?;
    let local = report(&local);
    ensure!(
        local.iter().any(|l| l
            == &format!(
                "Results requested for entries 0 to {} (checkpoint size {})",
                size_of(&note).unwrap_or(0) - 1,
                size_of(&note).unwrap_or(0)
            )),
        "the export is not at the served size:\n{local:#?}\n{note}"
    );
    ensure!(report(&by_url) == local, "{by_url}\nvs\n{local:#?}");
    let by_target: Vec<String> = report(&by_target)
        .into_iter()
        .filter(|l| !l.contains("trusted witnesses cosigned"))
        .collect();
    ensure!(by_target == local, "{by_target:#?}\nvs\n{local:#?}");

    // A data directory older than what the witnesses cosigned is refused at start-up.
    std::fs::rename(&data, files.dir.path().join("data-new"))?;
    std::fs::rename(&old, &data)?;
    match onboard.serve(&files).await {
        Ok(_) => bail!("a rolled-back data directory was served"),
        Err(_) => {
            let tail = log_tail(&files.log);
            ensure!(
                tail.contains("refusing to start") && tail.contains("rolled back or forked"),
                "{tail}"
            );
        }
    }
    Ok(())
}
