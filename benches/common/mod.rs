//! What the onboarding and wizard benches share: `onboard serve` on a slow Entra emulator.

use anyhow::Result;
use entra_sim::{Faults, Sim};
use testkit::bench::env_u64;
use testkit::process::{Onboard, ServerFiles, ServerProc};
use testkit::sim::calm;
use tonic::transport::Channel;

/// `onboard serve` (a child process) on the Entra emulator answering each call after
/// `BENCH_LATENCY_MS` (default 50), and the number of timed runs `BENCH_RUNS` (default 5).
pub struct SlowEntra {
    /// Milliseconds every emulator call takes.
    pub latency_ms: u64,
    /// How many runs to time (at least 1).
    pub runs: u64,
    /// The emulator; it lives as long as the server needs it.
    pub sim: Sim,
    /// The server's configuration and keys, only held: they live as long as the server.
    _files: ServerFiles,
    /// The server.
    pub server: ServerProc,
    /// A channel to the server.
    pub ch: Channel,
}

/// The knobs `BENCH_LATENCY_MS` (default 50) and `BENCH_RUNS` (default `default_runs`, at
/// least 1), and the Entra emulator answering each call after that latency.
pub async fn slow_sim(default_runs: u64) -> Result<(u64, u64, Sim)> {
    let latency_ms = env_u64("BENCH_LATENCY_MS", 50);
    let runs = env_u64("BENCH_RUNS", default_runs).max(1);
    let sim = testkit::sim::start(Faults {
        latency_ms,
        ..calm()
    })
    .await?;
    Ok((latency_ms, runs, sim))
}

impl SlowEntra {
    /// Starts the emulator ([`slow_sim`], 5 runs by default) and `bin serve` on it.
    pub async fn start(bin: Onboard) -> Result<Self> {
        let (latency_ms, runs, sim) = slow_sim(5).await?;
        let (_files, server) = bin.start(&sim).await?;
        let ch = server.channel().await?;
        Ok(Self {
            latency_ms,
            runs,
            sim,
            _files,
            server,
            ch,
        })
    }
}
