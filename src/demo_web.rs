//! `onboard demo --web`: the emulator and the server on loopback, one invitation, and its
//! activation link printed for a person to open in a browser. The wizard's "Copy code and open
//! page in new tab" opens the emulator's device-login page, where they sign in as one of the
//! seeded admins (the emulator's HTTPS certificate is its own CA's, so the browser warns once).
//! Runs until Ctrl-C.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use entra_sim::Sim;
use onboard_server::App;
use tonic::transport::Endpoint;

use crate::demo::{demo_invitation, server_config};

/// Serves the wizard until Ctrl-C and prints where to start.
pub async fn run(dir: &Path, sim: Sim, listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}/activate");
    let config = server_config(dir, &sim, &sim.info().token_app_client_id, &base)?;
    let app = tokio::task::spawn_blocking(move || App::open(config)).await??;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(onboard_server::serve(listener, app.clone(), async {
        let _ = stopped.await;
    }));
    let channel = Endpoint::try_from(format!("http://{addr}"))?
        .timeout(Duration::from_secs(30))
        .connect()
        .await?;
    let created = demo_invitation(channel).await?;
    let domain = sim.info().tenant_domain;
    println!("Onboard server (gRPC and the wizard) on {addr}");
    println!();
    println!("Open the invitation link in a browser:");
    println!();
    println!("  {}", created.activation_url);
    println!();
    println!("Sign in on the emulator's device-login page as one of the seeded users:");
    println!("  globaladmin@{domain}   Global Administrator (can do everything)");
    println!("  appadmin@{domain}      Application Administrator (lacks rights: see the page)");
    println!(
        "The emulator's page is HTTPS with its own CA ({dir}/entra-sim-ca.pem): accept the",
        dir = dir.display()
    );
    println!("browser's warning once. Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    let _ = stop.send(());
    server.await??;
    sim.shutdown().await;
    tokio::task::spawn_blocking(move || app.close()).await?;
    Ok(())
}
