//! An axum router served on `127.0.0.1:0` for as long as the test runs: the stand-in servers
//! tests talk to (a platform's status page, a bucket website, a hostile tiles server).

use std::net::SocketAddr;

use anyhow::Result;
use tokio::task::JoinHandle;

/// Serves `app` on a free loopback port: its address, and the serving task (abort it to stop
/// early; it ends with the runtime otherwise).
pub async fn serve(app: axum::Router) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}
