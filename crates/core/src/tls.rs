//! The one process-wide rustls crypto provider. tonic (server and the gRPC health client) and
//! reqwest (the Entra client) both use rustls built with aws-lc-rs; rustls panics on first use
//! unless exactly one provider is chosen for the process. Everything that sets up TLS calls
//! [`install_crypto_provider`] first (the tidy test allows no other install).

/// Installs aws-lc-rs as the process's rustls provider; a provider already installed (by an
/// earlier call) is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
