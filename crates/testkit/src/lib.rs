//! Onboard's test kit: the one harness every crate's integration tests and the benches share,
//! so a test says what it checks and not how to start an emulator, write a server
//! configuration or drive a sign-in. It is a dev-dependency only (never shipped) and its
//! modules sit behind cargo features, so a crate's tests build only what they use.
//!
//! | module | feature | what |
//! | --- | --- | --- |
//! | [`keys`], [`audit`], [`child`], [`strace`], [`wait`], [`copy_dir`] | always | fixed test keys; a temporary audit log and its entries as JSON; intent/outcome checks; this test binary as a child process to kill, and the replayable kill plan; syscall traces of a child test; polling with a deadline for what a test is not told of; a directory copied (a data directory as it was) |
//! | [`sim`], [`snapshot`], [`portal`], [`wire`] | `sim` | the Entra emulator on `127.0.0.1:0`, the one `EntraConfig`, seeded users, sign-in; emulator state queries; changes "made in the portal"; the raw HTTPS wire client |
//! | [`logs`] | `logs` | captured tracing output |
//! | [`engine`] | `engine` | the provisioning engine over the emulator: `signed_in`, `onboarded` |
//! | [`creds`] | `credentials` | the credentials manager over the engine's store |
//! | [`platform`] | `verifier` | a platform service (gRPC health, status page) and the verifier's input |
//! | [`pki`] | `pki` | a CA and server/client certificates |
//! | [`config`], [`server`], [`wizard`], [`sim_server`], [`server_helpers`], [`metrics`] | `server` | the typed server configuration; the in-process server and its gRPC clients; the wizard's calls over any channel; a server pointed at the emulator; refused calls and the customer's plan; a `/metrics` scraped and parsed as Prometheus reads it |
//! | [`process`] | `process` | `onboard serve` and `onboard …` as child processes |
//! | [`tiles`] | `tiles` | concurrent appenders, the tiles API on loopback, fetched tiles, moto's S3 server |
//! | [`bench`] | `bench` | the benches' knobs, the ~400-byte entry, timed concurrent appenders, medians |
//! | [`browser`] | `browser` | headless Chromium over WebDriver; a proxy recording the browser's network exchanges |
//!
//! Do not use the kit from `#[cfg(test)]` unit tests inside the `src/` of a crate the kit
//! depends on: that links two copies of the crate. Integration tests (`tests/*.rs`) are fine.

pub mod audit;
pub mod child;
pub mod keys;
pub mod strace;
pub mod wait;

#[cfg(feature = "sim")]
pub mod portal;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub mod snapshot;
#[cfg(feature = "sim")]
pub mod wire;

#[cfg(feature = "http")]
pub mod http;

#[cfg(feature = "logs")]
pub mod logs;

#[cfg(feature = "engine")]
pub mod engine;

#[cfg(feature = "credentials")]
pub mod creds;

#[cfg(feature = "verifier")]
pub mod platform;

#[cfg(feature = "pki")]
pub mod pki;

#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod hand_off;
#[cfg(feature = "server")]
pub mod hold;
#[cfg(feature = "server")]
pub mod sealed;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod server_helpers;
#[cfg(feature = "server")]
pub mod sim_server;
#[cfg(feature = "server")]
pub mod wizard;

#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "process")]
pub mod process;

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "tiles")]
pub mod tiles;

/// Flips the bits `mask` of byte `at` of the file `path`: the smallest tampering, which every
/// check over the file must notice. Panics when the file cannot be read or written.
pub fn flip_byte(path: &std::path::Path, at: usize, mask: u8) {
    let mut data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    data[at] ^= mask;
    std::fs::write(path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Copies directory `from` into `to` (created), recursively; the bytes copied. Tests keep a data
/// directory as it was (a rollback, a fork, a fixture) with it.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut bytes = 0;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            bytes += copy_dir(&e.path(), &target)?;
        } else {
            bytes += std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(bytes)
}
